"""Load a HILBERT features dataset (made by `extract_features.py`) and check it matches a model's encoders.

Features are only valid for the exact frozen encoders that made them. Training calls, in this order:

    from hilbert_app.features.store import collate_features, load_features

    features, metadata = load_features("out/features", expected_encoders=model)   # folder or Hub dataset repo
    batch = collate_features([features["train"][i] for i in range(8)], labels="label")
    model(**batch)   # audio_segment_embeds, text_segment_embeds, audio/text_segment_mask, segment_times, labels

`expected_encoders` (a model, its config, or `config.encoder_sources`) makes `load_features` refuse features from
other encoders with a `FeatureFingerprintError` that names both sides; `check_fingerprint` is the same check alone.

A features dataset is a `datasets.DatasetDict` whose rows are documents:

    id                   string
    audio_features       Array2D (S, D_audio) float16   masked mean of the audio encoder's last hidden state
    text_features        Array2D (S, D_text) float16    masked mean of the text encoder's last hidden state
    audio_segment_mask   List(bool) (S,)                False: the segment has no audio (its features are zeros)
    text_segment_mask    List(bool) (S,)                False: the segment has no text
    segment_times        Array2D (S, 2) float32         (start, end) in seconds
    label, label_<task>  ClassLabel (as in the source dataset)
    group, fold          as in the source dataset

plus `hilbert_features.json` (the fingerprint: encoders, processor options, widths, source, extraction report),
also stored as JSON in each split's `info.description`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from hilbert_app.errors import UserError, looks_like_local_path

__all__ = [
    "FEATURE_COLUMNS",
    "FeatureFingerprintError",
    "METADATA_NAME",
    "check_fingerprint",
    "collate_features",
    "encoder_sources_of",
    "load_features",
    "read_metadata",
]

METADATA_NAME = "hilbert_features.json"
FORMAT = "hilbert-features"
FORMAT_VERSION = 1
SEGMENT_POOLING = "masked_mean"
FEATURE_COLUMNS = ("audio_features", "text_features", "audio_segment_mask", "text_segment_mask", "segment_times")
# feature column -> model input name
MODEL_INPUTS = {
    "audio_features": "audio_segment_embeds",
    "text_features": "text_segment_embeds",
    "audio_segment_mask": "audio_segment_mask",
    "text_segment_mask": "text_segment_mask",
    "segment_times": "segment_times",
}


class FeatureFingerprintError(UserError, ValueError):
    """Features were made by other encoders (or with no record of them) than the model that is to use them."""


class NotFeaturesError(UserError, FileNotFoundError):
    """A folder or Hub repository that holds no finished HILBERT features dataset (the message says what it is)."""


def _short(sha: str | None) -> str:
    return sha[:12] if sha else "no sha256"


def _describe(source: Mapping | None) -> str:
    if not source:
        return "nothing recorded"
    revision = f" @ {source['revision']}" if source.get("revision") else ""
    kind, sha = source.get("model_type", "?"), _short(source.get("sha256"))
    return f"{source.get('name_or_path')!s}{revision} ({kind}, sha256 {sha})"


def encoder_sources_of(expected: Any) -> dict:
    """`config.encoder_sources` of a model, a config, or the dict itself."""
    if isinstance(expected, Mapping):
        return dict(expected)
    config = getattr(expected, "config", expected)
    sources = getattr(config, "encoder_sources", None)
    if sources is None:
        raise FeatureFingerprintError(
            f"{type(expected).__name__} records no encoder_sources, so its encoders cannot be matched to features: "
            "build the model with HilbertModel.from_encoders_pretrained (which records them), or pass the "
            "encoder_sources dict yourself."
        )
    return dict(sources)


def check_fingerprint(metadata: Mapping, encoder_sources: Any) -> None:
    """Raise `FeatureFingerprintError` unless the features were made by exactly these encoders.

    Args:
        metadata: the features' fingerprint (`hilbert_features.json`, as `load_features` returns it).
        encoder_sources: `model.config.encoder_sources` (`{"audio": {...}, "text": {...}}`), or a model/config.

    Encoders are compared by the sha256 of their weights (`weights_sha256`); when either side has none, by
    name_or_path and revision. Every modality the model uses must be in the features. When both sides record the
    dtype the encoder ran in (`dtype`, written by extract_features.py and carried into a trained head's
    encoder_sources), it must be the same: a head trained on float32 features is not fed bfloat16 ones silently.
    """
    expected = encoder_sources_of(encoder_sources)
    made_by = dict(metadata.get("encoders") or {})
    problems = []
    for modality, want in sorted(expected.items()):
        have = made_by.get(modality)
        if have is None:
            problems.append(
                f"{modality}: the model uses {_describe(want)}, but the features have no {modality} encoder"
            )
            continue
        if want.get("sha256") and have.get("sha256"):
            same = want["sha256"] == have["sha256"]
        else:
            same = (str(want.get("name_or_path")), want.get("revision")) == (
                str(have.get("name_or_path")),
                have.get("revision"),
            )
        if not same:
            problems.append(f"{modality}: features made by {_describe(have)}, the model uses {_describe(want)}")
        elif want.get("dtype") and have.get("dtype") and want["dtype"] != have["dtype"]:
            problems.append(
                f"{modality}: features made with the encoder in {have['dtype']}, the model expects "
                f"{want['dtype']} features (re-extract with --encoder-dtype {want['dtype']})"
            )
    if problems:
        command = "python dataset_scripts/extract_features.py --dataset DATASET --output-dir NEW_DIR --model CHECKPOINT"
        audio, text = (expected.get(k, {}).get("name_or_path") for k in ("audio", "text"))
        if audio and text:
            command += f"   (or --audio-encoder {audio} --text-encoder {text})"
        raise FeatureFingerprintError(
            "These features were extracted with other encoders (or encoder dtypes) than the model's:\n  - "
            + "\n  - ".join(problems)
            + f"\nFeatures from other encoders are meaningless to this model's head. Re-extract them with the "
            f"model's encoders:\n  {command}"
        )


def read_metadata(path: str | os.PathLike) -> dict:
    """The fingerprint of a features dataset saved in folder `path` (`hilbert_features.json`)."""
    folder = Path(path)
    file = folder / METADATA_NAME
    if not folder.is_dir():
        raise NotFeaturesError(
            f"{path}: no such folder. Give the --output-dir folder of extract_features.py, or the Hub "
            "dataset id it was pushed to."
        )
    if not file.is_file():
        if (folder / "build_report.json").is_file():
            raise NotFeaturesError(
                f"{path} is a corpus dataset made by build_dataset.py, not cached features: run "
                f"`python dataset_scripts/extract_features.py --dataset {path} --output-dir FEATURES_DIR ...` "
                "first and "
                "pass FEATURES_DIR, or train on it directly with --end-to-end --dataset (slow)."
            )
        if (folder / "_shards").is_dir():
            raise NotFeaturesError(
                f"{path} holds an unfinished extraction (its work is in _shards/): re-run extract_features.py with "
                "the same arguments to finish it."
            )
        raise NotFeaturesError(
            f"{path} has no {METADATA_NAME}: it is not a HILBERT features dataset. Make one with "
            "dataset_scripts/extract_features.py."
        )
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise NotFeaturesError(f"{file} is damaged ({error}); re-run extract_features.py with --overwrite.") from None


def _metadata_from_description(dataset) -> dict | None:
    for split in dataset.values():
        try:
            metadata = json.loads(split.info.description or "")
        except ValueError:
            continue
        if isinstance(metadata, dict) and metadata.get("format") == FORMAT:
            return metadata
    return None


def load_features(
    path_or_repo_id: str | os.PathLike,
    expected_encoders: Any = None,
    *,
    revision: str | None = None,
    token: str | bool | None = None,
):
    """Load a features dataset and its fingerprint from a folder (`save_to_disk`) or a Hub dataset repo.

    Args:
        path_or_repo_id: the `--output-dir` folder of `extract_features.py`, or the repo it was pushed to.
        expected_encoders: a model, its config, or `config.encoder_sources`: checked with `check_fingerprint`
            (raises `FeatureFingerprintError` if the features come from other encoders). None: no check.
        revision, token: for a Hub repo.

    Returns:
        `(DatasetDict, metadata)`; the dataset is in "torch" format for the feature columns (float32 tensors, the
        float16 storage upcast), other columns as Python values.
    """
    import datasets

    local = Path(path_or_repo_id)
    if local.is_dir():
        metadata = read_metadata(local)
        dataset = datasets.load_from_disk(str(local))
        if isinstance(dataset, datasets.Dataset):
            dataset = datasets.DatasetDict({"train": dataset})
    else:
        repo_id = str(path_or_repo_id)
        if looks_like_local_path(repo_id) or local.exists():
            read_metadata(local)  # raises with what the path is (or that it does not exist)
        try:
            dataset = datasets.load_dataset(repo_id, revision=revision, token=token)
        except Exception as error:  # offline, no such repository, no access: all end here
            raise NotFeaturesError(
                f"{repo_id}: no such folder here, and it could not be loaded as a Hub dataset "
                f"({type(error).__name__}: {str(error).splitlines()[0][:200]}). Give the --output-dir folder of "
                "extract_features.py, or a Hub dataset id (org/name) you can read."
            ) from None
        try:
            from huggingface_hub import hf_hub_download

            file = hf_hub_download(repo_id, METADATA_NAME, repo_type="dataset", revision=revision, token=token)
            metadata = json.loads(Path(file).read_text(encoding="utf-8"))
        except Exception as error:  # noqa: BLE001 - fall back to the copy in info.description
            metadata = _metadata_from_description(dataset)
            if metadata is None:
                raise FileNotFoundError(
                    f"The Hub dataset {repo_id!r} has no readable {METADATA_NAME} ({error}) and no fingerprint in its "
                    "info.description: it was not made by extract_features.py, or the upload was interrupted."
                ) from error
    if metadata.get("format") != FORMAT:
        raise NotFeaturesError(
            f"{path_or_repo_id}: {METADATA_NAME} is not a HILBERT features fingerprint (format "
            f"{metadata.get('format')!r})."
        )
    missing = {
        split: [c for c in FEATURE_COLUMNS + ("id",) if c not in ds.column_names] for split, ds in dataset.items()
    }
    missing = {split: cols for split, cols in missing.items() if cols}
    if missing:
        raise NotFeaturesError(f"{path_or_repo_id}: not a features dataset, columns missing: {missing}.")
    if expected_encoders is not None:
        check_fingerprint(metadata, expected_encoders)
    for split in dataset.values():
        split.set_format("torch", columns=list(FEATURE_COLUMNS), output_all_columns=True)
    return dataset, metadata


def _as_tensor(value, dtype) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.to(dtype)
    return torch.as_tensor(value, dtype=dtype)


def _row_name(row: Mapping, index: int) -> str:
    return f"document id {row['id']!r}" if "id" in row else f"row {index} of the batch"


def _check_finite(batch: dict, names: list[str]) -> None:
    """Refuse NaN/inf in REAL segments (mask True), naming the document; padded segments may hold anything.

    A NaN feature would otherwise make the document's embedding, its loss and then every weight NaN, with
    nothing pointing at the document that caused it.
    """
    checks = [
        ("audio_segment_embeds", "audio_features", "audio_segment_mask"),
        ("text_segment_embeds", "text_features", "text_segment_mask"),
    ]
    for name, column, mask_name in checks:
        if name not in batch:
            continue
        mask = batch.get(mask_name)
        real = torch.ones(batch[name].shape[:2], dtype=torch.bool) if mask is None else mask
        bad = (~torch.isfinite(batch[name])).any(-1) & real  # (B, S)
        if bool(bad.any()):
            b, s = (int(i) for i in bad.nonzero()[0])
            raise ValueError(
                f"{names[b]}: {column} holds NaN/inf in {int(bad[b].sum())} real segment(s) (the first is segment "
                f"{s}). The encoder produced non-finite values for it (NaN/inf audio, or float16 overflow): check that "
                "recording, then re-extract its features with extract_features.py, or leave the document out."
            )
    if "segment_times" in batch:
        real = batch.get("audio_segment_mask", torch.zeros(1, dtype=torch.bool)) | batch.get(
            "text_segment_mask", torch.zeros(1, dtype=torch.bool)
        )
        bad = (~torch.isfinite(batch["segment_times"])).any(-1) & real
        if bool(bad.any()):
            b, s = (int(i) for i in bad.nonzero()[0])
            raise ValueError(
                f"{names[b]}: segment_times of segment {s} are not finite; fix the transcript's times "
                "and rebuild the dataset and its features."
            )


def collate_features(rows: Sequence[Mapping], labels: str | Mapping[str, str] | None = None) -> dict:
    """Rows of a features dataset -> keyword arguments of `HilbertModel` / `HilbertForSequenceClassification`.

    Pads every document to the batch's largest number of segments S (padded segments: mask False, zeros).

    Args:
        rows: documents, as `dataset[i]` gives them (tensors or lists).
        labels: None (no labels); a column name (`"label"`) -> `labels` `(B,)`; or `{task_name: column}` ->
            `labels` as a dict of `(B,)` tensors (multi-task models).

    Returns:
        `audio_segment_embeds` `(B, S, D_audio)` and `text_segment_embeds` `(B, S, D_text)` float32,
        `audio_segment_mask`, `text_segment_mask` `(B, S)` bool, `segment_times` `(B, S, 2)` float32, and `labels`.

    Raises `ValueError` naming the document id when a row's shape disagrees with its mask or with the batch's
    widths, or when a real segment (mask True) holds NaN/inf features or times.
    """
    if not rows:
        raise ValueError("collate_features needs at least one row.")
    names = [_row_name(row, b) for b, row in enumerate(rows)]
    counts = [len(row["audio_segment_mask"]) for row in rows]
    batch, slots = len(rows), max(counts + [1])
    out = {}
    for column, name in MODEL_INPUTS.items():
        if column not in rows[0]:
            continue
        is_mask = column.endswith("_mask")
        values = [_as_tensor(row[column], torch.bool if is_mask else torch.float32) for row in rows]
        shape = (batch, slots) + tuple(values[0].shape[1:]) if values[0].dim() > 1 else (batch, slots)
        if not is_mask and values[0].dim() == 1:  # an empty (0,) row read back without its width
            width = next((v.shape[1] for v in values if v.dim() == 2), 0)
            shape = (batch, slots, width)
        padded = torch.zeros(shape, dtype=torch.bool if is_mask else torch.float32)
        for b, (value, count) in enumerate(zip(values, counts)):
            if count:
                if tuple(value.shape) != (count, *shape[2:]):
                    raise ValueError(
                        f"{names[b]}: {column} has shape {tuple(value.shape)}, expected {(count, *shape[2:])} "
                        f"({count} segments as in its audio_segment_mask, width as in {names[0]}). Rows of one "
                        f"features "
                        "dataset share their widths: was this row made by other encoders? Re-extract the features "
                        "with extract_features.py."
                    )
                padded[b, :count] = value
        out[name] = padded
    _check_finite(out, names)
    if labels is not None:
        if isinstance(labels, str):
            out["labels"] = torch.tensor([int(row[labels]) for row in rows], dtype=torch.long)
        else:
            out["labels"] = {
                task: torch.tensor([int(row[c]) for row in rows], dtype=torch.long) for task, c in labels.items()
            }
    return out
