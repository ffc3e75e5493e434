"""Run HILBERT's frozen encoders once over every segment of a corpus and save the segment features.

    python dataset_scripts/extract_features.py --dataset DIR_OR_REPO --output DIR
        (--audio-encoder NAME_OR_PATH --text-encoder NAME_OR_PATH | --model CHECKPOINT_DIR)
        [--fast | --exact] [--speakers A,B] [--max-segments N] [--batch-documents 8] [--shard-size 64]
        [--encoder-batch-size N] [--num-workers N] [--overwrite] [--push-to-hub REPO [--public]]

    accelerate launch --num_processes 4 dataset_scripts/extract_features.py ...   # one process per GPU

Input: the DatasetDict of `build_dataset.py` (columns id, audio = Audio(decode=False), segments, label(s), group,
fold), from a folder or a Hub repo. Encoder names go through `offline_encoders.resolve_encoder`, so
`offline:whisper-tiny.en` and `offline:all-MiniLM-L6-v2` work without a hub. With `--model`, the encoders and the
processor of a HILBERT checkpoint are used (processor options may still be overridden).

Output (`save_to_disk`, same splits): one row per document with `id`, `audio_features` (S, D_audio) and
`text_features` (S, D_text) float16 -- exactly what `HilbertModel.get_audio_segment_features` /
`get_text_segment_features` give for the `HilbertProcessor`'s output --, `audio_segment_mask`, `text_segment_mask`,
`segment_times` (S, 2), the label columns, `group` and `fold`; plus `hilbert_features.json`, the fingerprint
(encoders with the sha256 of their weights, processor options, widths, source dataset, extraction report), also
kept in each split's `info.description`. Load it with `dataset_scripts.features.load_features`.

Speed: documents are sorted by number of segments and duration, longest first, and batched (`--batch-documents`)
so that padding is small; the model buckets segments by length within each call; CUDA and float16 encoders are
used when available; `--num-workers` decodes audio and computes log-mels in DataLoader workers.

Resuming: the documents are cut into shards of `--shard-size` in a fixed order. Each finished shard is written
atomically to `OUTPUT/_shards/<split>/shard-NNNNN.arrow` (temporary file, then `os.replace`); `_shards/args.json`
records every argument that shapes the output. A restart with the same arguments skips the finished shards (other
arguments are refused), and the merge (rows back in source order) is deterministic: an interrupted and restarted
run writes the same rows and the same feature bytes as an uninterrupted one (also after SIGKILL: tests/test_faults.py).
The merged dataset is written last, its fingerprint `hilbert_features.json` (the "finished" marker) after every
other file, then `_shards` is removed. With `--overwrite`, a finished dataset stays whole and loadable until the
new one replaces it. A read-only or full output folder stops the run with one paragraph (exit code 2).

Several processes (`accelerate launch`, `torchrun`, or independent jobs with RANK / WORLD_SIZE set and no
MASTER_ADDR): process r takes the shards i with i % world == r; the main process waits for all of them and merges.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from tqdm.auto import tqdm

# Run as a script, sys.path[0] is dataset_scripts/: make the repository root importable.
_REPO_ROOT = Path(__file__).resolve().parents[1]
if str(_REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(_REPO_ROOT))

import datasets  # noqa: E402

import modeling_hilbert  # noqa: E402
from dataset_scripts.features import (  # noqa: E402
    FORMAT,
    FORMAT_VERSION,
    METADATA_NAME,
    SEGMENT_POOLING,
    FeatureFingerprintError,
    check_fingerprint,
    load_features,
)
from dataset_scripts.hub_visibility import PublicRepositoryError, check_push_visibility  # noqa: E402
from dataset_scripts.offline_encoders import encoder_revision, is_offline_name, resolve_encoder  # noqa: E402
from dataset_scripts.safe_write import (  # noqa: E402
    TMP_PREFIX,
    atomic_path,
    atomic_write_text,
    describe_write_error,
    move_into,
    remove_stale_temporaries,
)
from modeling_hilbert import HilbertModel, HilbertProcessor  # noqa: E402
from modeling_hilbert.encoders_hilbert import (  # noqa: E402
    auto_encoder_batch_size,
    encoder_hidden_size,
    is_whisper,
    resolve_encoder_dtype,
)
from modeling_hilbert.modeling_hilbert import weights_sha256  # noqa: E402

__all__ = [
    "ExtractionError",
    "FeatureFingerprintError",
    "Extractor",
    "check_fingerprint",
    "extract_features",
    "load_extractor",
    "load_features",
    "main",
    "push_features_to_hub",
    "render_features_card",
]

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("id", "audio", "segments")
SHARDS_DIR = "_shards"
ARGS_NAME = "args.json"
INDEX_COLUMN = "_index"  # source row, kept in the shards only: the merge sorts on it
MERGED_DIR = "_merged"
EXIT_ERROR = 2


class ExtractionError(Exception):
    """The features cannot be extracted (bad input, unreadable audio, output folder in use, changed arguments)."""


# --------------------------------------------------------------------------------------------------
# Encoders and processor
# --------------------------------------------------------------------------------------------------


@dataclass
class Extractor:
    """The frozen encoders (inside a `HilbertModel`, whose head is unused) and the processor that feeds them."""

    model: HilbertModel
    processor: HilbertProcessor
    sources: dict  # modality -> {name_or_path, model_type, revision, sha256, ...}
    device: torch.device
    dtype: torch.dtype

    @property
    def widths(self) -> dict[str, int]:
        return {"audio": encoder_hidden_size(self.model.config.audio_config),
                "text": encoder_hidden_size(self.model.config.text_config)}

    def processor_options(self) -> dict:
        """The processor's policies, exactly its `__init__` options: `HilbertProcessor.from_encoders_pretrained(audio,
        text, **options)` rebuilds the processor that made the features."""
        return json.loads(json.dumps({name: getattr(self.processor, name) for name in HilbertProcessor.option_names()}))

    def processor_components(self) -> dict:
        """What the processor's feature extractor and tokenizer are (their settings decide the inputs too)."""
        extractor = self.processor.feature_extractor.to_dict()
        extractor.pop("mel_filters", None)
        tokenizer = self.processor.tokenizer
        return json.loads(json.dumps({
            "feature_extractor": extractor,
            "tokenizer": {"class": type(tokenizer).__name__, "name_or_path": str(tokenizer.name_or_path),
                          "vocab_size": len(tokenizer)},
        }, default=str))

    @torch.inference_mode()
    def encode(self, inputs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Processor output -> audio (B, S, D_a), text (B, S, D_t) float32 on CPU and both segment masks (B, S).

        The same calls, with the same arguments, as `HilbertModel.forward`'s raw-input path.
        """
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        audio, audio_mask = self.model.get_audio_segment_features(
            inputs.get("input_features"), inputs.get("input_values"), inputs.get("audio_attention_mask"),
            inputs.get("audio_segment_mask"))
        text, text_mask = self.model.get_text_segment_features(
            inputs["input_ids"], inputs.get("attention_mask"), inputs.get("text_segment_mask"))
        return audio.float().cpu(), text.float().cpu(), audio_mask.cpu(), text_mask.cpu()


def load_extractor(
    audio_encoder: str | None = None,
    text_encoder: str | None = None,
    *,
    model: str | os.PathLike | None = None,
    fast: bool | None = None,
    speakers: list[str] | None = None,
    max_segments: int | None = None,
    encoder_batch_size: int | str | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
) -> Extractor:
    """Load the frozen encoders and the processor, from two encoder names/folders or from a HILBERT checkpoint.

    Args:
        audio_encoder, text_encoder: Hub ids, folders or `offline:` names (see `offline_encoders.py`).
        model: a HILBERT checkpoint folder instead: its encoders and its saved processor are used.
        fast: Whisper's fast mode (only the real mel frames are encoded) or, False, the exact 30-s window. None:
            exact, or the checkpoint processor's mode.
        speakers, max_segments: processor policies (None: the default, or the checkpoint processor's).
        encoder_batch_size: segments per encoder call. None or "auto": by device, 4 on CPU (fastest there in
            benchmarks/README.md), 64 on CUDA (`auto_encoder_batch_size`).
        device: default CUDA when available, else CPU.
        dtype: of the frozen encoders ("float32", "float16", "bfloat16" or a torch dtype). None or "auto": float16 on
            CUDA, float32 on CPU (where half precision is slower). The head is unused here; features are pooled in
            float32 and stored as float16 whatever the encoders ran in. The dtype is recorded in the fingerprint
            (`encoder_dtype`, and `dtype` in each encoder's source) so features of different dtypes are not mixed.
    """
    if (model is None) == (audio_encoder is None or text_encoder is None):
        if model is not None:
            raise ExtractionError("Give either --model or --audio-encoder/--text-encoder, not both.")
        raise ExtractionError("Give both --audio-encoder and --text-encoder (or --model CHECKPOINT_DIR).")
    device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        dtype = resolve_encoder_dtype(dtype, device)
    except ValueError as error:
        raise ExtractionError(f"--encoder-dtype: {error}") from error
    if encoder_batch_size is None or encoder_batch_size == "auto":
        encoder_batch_size = auto_encoder_batch_size(device)
    elif not isinstance(encoder_batch_size, int) or isinstance(encoder_batch_size, bool) or encoder_batch_size < 1:
        raise ExtractionError(f"--encoder-batch-size must be a positive integer or 'auto', got {encoder_batch_size!r}.")

    options = {}
    if fast is not None:
        options["audio_mode"] = "fast" if fast else "exact"
    if speakers is not None:
        options["speakers"] = list(speakers)
    if max_segments is not None:
        options["max_segments"] = max_segments
    head = {"encoder_batch_size": encoder_batch_size}

    if model is not None:
        folder = Path(model)
        if not (folder / "config.json").is_file():
            raise ExtractionError(f"--model {model}: no config.json there; give a folder saved by save_pretrained.")
        hilbert = HilbertModel.from_pretrained(str(folder), **head)
        if not getattr(hilbert.config, "with_encoders", True):
            names = {k: v.get("requested") or v.get("name_or_path") for k, v in (hilbert.config.encoder_sources or {}).items()}
            raise ExtractionError(f"--model {model} is a head-only checkpoint (with_encoders=False): it holds no encoders. "
                                  f"Pass the encoders it was trained with instead: --audio-encoder {names.get('audio', '?')} "
                                  f"--text-encoder {names.get('text', '?')}.")
        if not hilbert.config.is_multimodal:
            raise ExtractionError(f"--model {model} uses modalities={hilbert.config.modalities!r}; feature extraction "
                                  "needs both an audio and a text encoder.")
        try:
            saved = HilbertProcessor.from_pretrained(str(folder))
        except (OSError, ValueError, TypeError) as error:
            raise ExtractionError(f"--model {model} holds no usable HilbertProcessor ({error}); save the processor with "
                                  "the checkpoint, or pass --audio-encoder and --text-encoder.") from error
        kept = {name: getattr(saved, name) for name in HilbertProcessor.option_names() if hasattr(saved, name)}
        processor = HilbertProcessor(saved.feature_extractor, saved.tokenizer, **{**kept, **options})
        recorded = dict(hilbert.config.encoder_sources or {})
        sources = {}
        for key in ("audio", "text"):
            encoder = getattr(hilbert, f"{key}_encoder")
            sha = weights_sha256(encoder)
            source = dict(recorded.get(key) or {"name_or_path": f"{folder}#{key}_encoder", "revision": None})
            source["model_type"] = encoder.config.model_type
            if source.get("sha256") and source["sha256"] != sha:
                logger.warning("The %s encoder of %s does not match the sha256 its config records (%s, weights %s); "
                               "recording the weights' own.", key, model, source["sha256"][:12], sha[:12])
            source["sha256"] = sha
            source["checkpoint"] = str(folder)
            sources[key] = source
    else:
        resolved = {"audio": resolve_encoder(audio_encoder), "text": resolve_encoder(text_encoder)}
        hilbert = HilbertModel.from_encoders_pretrained(resolved["audio"], resolved["text"], **head)
        processor = HilbertProcessor.from_encoders_pretrained(resolved["audio"], resolved["text"], **options)
        sources = {}
        for key, requested in (("audio", audio_encoder), ("text", text_encoder)):
            source = dict(hilbert.config.encoder_sources[key])
            if source.get("revision") is None:
                source["revision"] = encoder_revision(str(requested))
            if is_offline_name(str(requested)):  # portable: resolve_encoder() finds it on any machine
                source["name_or_path"], source["resolved_path"] = str(requested), source["name_or_path"]
            sources[key] = source

    if is_whisper(hilbert.config.audio_config):  # the model's Whisper mode must be the processor's
        hilbert.config.audio_mode = processor.audio_mode
    hilbert.eval()
    hilbert.to(device)
    hilbert.audio_encoder.to(dtype)  # the encoders only: get_*_segment_features cast their inputs to match
    hilbert.text_encoder.to(dtype)
    for source in sources.values():  # travels with the features into a trained head's config.encoder_sources
        source["dtype"] = str(dtype).replace("torch.", "")
    return Extractor(hilbert, processor, sources, device, dtype)


# --------------------------------------------------------------------------------------------------
# Input dataset
# --------------------------------------------------------------------------------------------------


def _load_source(dataset) -> tuple[datasets.DatasetDict, str]:
    """A DatasetDict from a DatasetDict, a Dataset, a folder (`save_to_disk`) or a Hub repo id; and its name."""
    if isinstance(dataset, datasets.DatasetDict):
        return dataset, "<in-memory DatasetDict>"
    if isinstance(dataset, datasets.Dataset):
        return datasets.DatasetDict({"train": dataset}), "<in-memory Dataset>"
    name = str(dataset)
    if Path(name).is_dir():
        try:
            loaded = datasets.load_from_disk(name)
        except FileNotFoundError as error:
            raise ExtractionError(f"--dataset {name}: not a dataset saved with save_to_disk ({error}).") from error
        name = os.path.abspath(name)
    else:
        loaded = datasets.load_dataset(name)
    if isinstance(loaded, datasets.Dataset):
        loaded = datasets.DatasetDict({"train": loaded})
    return loaded, name


def _label_columns(ds: datasets.Dataset) -> list[str]:
    return [c for c in ds.column_names if c == "label" or c.startswith("label_")]


def _check_source(source: datasets.DatasetDict, name: str) -> datasets.DatasetDict:
    """Check the columns; make sure the audio is read as bytes (no torchcodec decoding)."""
    out = {}
    for split, ds in source.items():
        missing = [c for c in REQUIRED_COLUMNS if c not in ds.column_names]
        if missing:
            raise ExtractionError(
                f"{name} [{split}] lacks column(s) {', '.join(missing)} (has: {', '.join(ds.column_names)}). "
                "extract_features.py takes the dataset of build_dataset.py: id, audio (bytes), segments "
                "[{start, end, text, speaker}], label(s), group, fold.")
        if isinstance(ds.features["audio"], datasets.Audio) and ds.features["audio"].decode:
            ds = ds.cast_column("audio", datasets.Audio(decode=False))
        out[split] = ds
    return datasets.DatasetDict(out)


def _source_identity(source: datasets.DatasetDict, name: str) -> dict:
    is_repo = not name.startswith("<") and not os.path.isabs(name)
    return {"path": name, "repo_id": name if is_repo else None,
            "splits": {split: {"fingerprint": ds._fingerprint, "num_rows": ds.num_rows} for split, ds in source.items()}}


def _document_order(ds: datasets.Dataset) -> list[int]:
    """Rows sorted by number of segments, then duration, longest first (ties: row order): batches of similar size."""
    table = ds.select_columns(["segments"] + (["duration"] if "duration" in ds.column_names else [])).with_format("arrow")[:]
    import pyarrow.compute as pc

    counts = pc.list_value_length(table.column("segments")).fill_null(0).to_numpy(zero_copy_only=False)
    duration = (table.column("duration").fill_null(0).to_numpy(zero_copy_only=False) if "duration" in table.column_names
                else np.zeros(len(counts)))
    index = np.arange(len(counts))
    return np.lexsort((index, -duration.astype(np.float64), -counts.astype(np.int64))).tolist()


# --------------------------------------------------------------------------------------------------
# Output schema, shards and arguments
# --------------------------------------------------------------------------------------------------


def _output_features(ds: datasets.Dataset, widths: dict[str, int], with_index: bool) -> datasets.Features:
    features = {
        "id": datasets.Value("string"),
        "audio_features": datasets.Array2D(shape=(None, widths["audio"]), dtype="float16"),
        "text_features": datasets.Array2D(shape=(None, widths["text"]), dtype="float16"),
        "audio_segment_mask": datasets.List(datasets.Value("bool")),
        "text_segment_mask": datasets.List(datasets.Value("bool")),
        "segment_times": datasets.Array2D(shape=(None, 2), dtype="float32"),
    }
    for column in _label_columns(ds) + [c for c in ("group", "fold") if c in ds.column_names]:
        features[column] = ds.features[column]
    if with_index:
        features[INDEX_COLUMN] = datasets.Value("int64")
    return datasets.Features(features)


@dataclass(frozen=True)
class Shard:
    split: str
    number: int  # within the split
    rows: tuple[int, ...]  # source rows, in processing order

    def path(self, shards_dir: Path) -> Path:
        return shards_dir / self.split / f"shard-{self.number:05d}.arrow"

    def report_path(self, shards_dir: Path) -> Path:
        return shards_dir / self.split / f"shard-{self.number:05d}.json"


def _plan_shards(source: datasets.DatasetDict, shard_size: int) -> list[Shard]:
    shards = []
    for split, ds in source.items():
        order = _document_order(ds)
        for number, lo in enumerate(range(0, len(order), shard_size)):
            shards.append(Shard(split, number, tuple(order[lo : lo + shard_size])))
    return shards


def _diff(saved: Any, now: Any, prefix: str = "") -> list[str]:
    if isinstance(saved, Mapping) and isinstance(now, Mapping):
        out = []
        for key in sorted(set(saved) | set(now)):
            out += _diff(saved.get(key), now.get(key), f"{prefix}{key}.")
        return out
    return [] if saved == now else [f"{prefix.rstrip('.')}: {json.dumps(saved)} (saved) vs {json.dumps(now)} (now)"]


def _check_args(shards_dir: Path, args: dict, output_dir: Path) -> None:
    saved = json.loads((shards_dir / ARGS_NAME).read_text(encoding="utf-8"))
    differences = _diff(saved, args)
    if differences:
        raise ExtractionError(
            f"{output_dir} holds an unfinished extraction made with other arguments:\n  - " + "\n  - ".join(differences)
            + f"\nRe-run with the saved arguments to finish it, or start over: delete {shards_dir} or choose another "
            "--output.")


def _prepare_output(output_dir: Path, overwrite: bool) -> None:
    """Refuse an output folder that holds something else; accept a finished extraction to replace when `overwrite`.

    A finished dataset being replaced stays in place, whole and loadable, until the new one is complete: `_finish`
    swaps them. Temporary entries (`.tmp-*`) that a killed run left at the top of the folder are removed.
    """
    if output_dir.exists() and not output_dir.is_dir():
        raise ExtractionError(f"--output {output_dir} is a file; choose a folder.")
    if not output_dir.is_dir():
        return
    remove_stale_temporaries(output_dir)  # only the main process writes at this level
    entries = list(output_dir.iterdir())
    if not entries or (output_dir / SHARDS_DIR / ARGS_NAME).is_file():
        return  # new, or an unfinished extraction to resume (its arguments are checked later)
    if (output_dir / METADATA_NAME).is_file():
        if not overwrite:
            raise ExtractionError(f"--output {output_dir} already holds a finished features dataset; pass --overwrite "
                                  "(overwrite=True) to replace it, or choose another folder.")
        return
    names = ", ".join(sorted(p.name for p in entries)[:5])
    raise ExtractionError(f"--output {output_dir} is not empty and holds no features extraction ({names}...); choose a "
                          "new or empty folder.")


def _start_shards_dir(output_dir: Path, args: dict) -> Path:
    """Create `_shards/` with `args.json` atomically (a staging folder renamed), or check the saved arguments."""
    shards_dir = output_dir / SHARDS_DIR
    if not (shards_dir / ARGS_NAME).is_file():
        output_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".tmp-shards-", dir=output_dir))
        (staging / ARGS_NAME).write_text(json.dumps(args, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        try:
            staging.rename(shards_dir)
        except OSError:  # another process made it first (or a _shards without args.json is in the way)
            shutil.rmtree(staging, ignore_errors=True)
            if not (shards_dir / ARGS_NAME).is_file():
                raise ExtractionError(f"{shards_dir} exists without {ARGS_NAME}; delete it to start over.") from None
    _check_args(shards_dir, args, output_dir)
    return shards_dir


# --------------------------------------------------------------------------------------------------
# Reading documents and encoding a batch
# --------------------------------------------------------------------------------------------------


def decode_audio(audio: Mapping | None, doc_id: str, split: str = "train", row: int | None = None) -> tuple[np.ndarray, int]:
    """`{"bytes", "path"}` -> ((channels, samples) float32, sampling rate); names the document on failure."""
    where = f"document id {doc_id!r} ([{split}] row {row})"
    data = None if audio is None else audio.get("bytes")
    if data is None:
        path = None if audio is None else audio.get("path")
        if not path or not os.path.isfile(path):
            raise ExtractionError(f"{where} has no audio bytes (path {path!r} is not a readable file); rebuild the "
                                  "dataset with build_dataset.py, which stores the bytes.")
        data = Path(path).read_bytes()
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as error:
        reason = getattr(error, "error_string", None) or str(error)
        raise ExtractionError(f"{where}: its audio bytes cannot be decoded by soundfile ({reason}); re-export the "
                              "recording as WAV or FLAC and rebuild the dataset.") from None
    if samples.shape[0] == 0:
        raise ExtractionError(f"{where}: its audio holds no samples; re-export the recording and rebuild the dataset.")
    return np.ascontiguousarray(samples.T), int(rate)


class _Batches(torch.utils.data.Dataset):
    """Batch k of a shard -> processor inputs (decoding and log-mels can run in DataLoader workers)."""

    def __init__(self, ds: datasets.Dataset, split: str, batches: list[list[int]], processor: HilbertProcessor):
        self.ds, self.split, self.batches, self.processor = ds, split, batches, processor

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, k: int):
        rows = self.batches[k]
        records = self.ds.select_columns(list(REQUIRED_COLUMNS))[rows]  # columns -> lists
        ids = [str(i) for i in records["id"]]
        documents = []
        for doc_id, row, audio, segments in zip(ids, rows, records["audio"], records["segments"]):
            waveform, rate = decode_audio(audio, doc_id, self.split, row)
            documents.append({"audio": waveform, "sampling_rate": rate, "segments": list(segments or [])})
        try:
            inputs, reports = self.processor(documents, return_report=True)
        except ValueError as error:
            message = re.sub(r"document (\d+)", lambda m: f"document id {ids[int(m.group(1))]!r}", str(error))
            raise ExtractionError(f"[{self.split}] {message}") from error
        return rows, ids, dict(inputs), reports


def _identity(item):
    return item


def _shard_rows(extractor: Extractor, ds: datasets.Dataset, shard: Shard, batch_documents: int, num_workers: int,
                passthrough: list[str], bar) -> tuple[list[dict], dict]:
    """Encode one shard -> (output rows in processing order, summed report)."""
    batches = [list(shard.rows[lo : lo + batch_documents]) for lo in range(0, len(shard.rows), batch_documents)]
    loader = torch.utils.data.DataLoader(_Batches(ds, shard.split, batches, extractor.processor), batch_size=None,
                                         num_workers=num_workers, collate_fn=_identity)
    extra = ds.select_columns(passthrough)[list(shard.rows)] if passthrough else {}
    extra_of = {row: {c: extra[c][i] for c in passthrough} for i, row in enumerate(shard.rows)}
    out, report = [], _new_shard_report()
    for rows, ids, inputs, reports in loader:
        audio, text, audio_mask, text_mask = extractor.encode(inputs)
        times = inputs["segment_times"]
        for b, (row, doc_id, doc_report) in enumerate(zip(rows, ids, reports)):
            _add_report(report, doc_report)
            count = doc_report["segments_out"]
            if count == 0:
                report["documents_without_segments"].append(doc_id)
                continue
            audio_features = audio[b, :count].to(torch.float16)
            text_features = text[b, :count].to(torch.float16)
            if not (torch.isfinite(audio_features).all() and torch.isfinite(text_features).all()):
                raise ExtractionError(f"document id {doc_id!r}: non-finite segment features (float16 overflow or a "
                                      "broken encoder); check the encoders in float32 (--dtype float32).")
            out.append({
                "id": doc_id,
                "audio_features": audio_features.numpy(),
                "text_features": text_features.numpy(),
                "audio_segment_mask": audio_mask[b, :count].tolist(),
                "text_segment_mask": text_mask[b, :count].tolist(),
                "segment_times": times[b, :count].to(torch.float32).numpy(),
                **extra_of[row],
                INDEX_COLUMN: row,
            })
        if bar is not None:
            bar.update(sum(r["segments_in"] for r in reports))
    report["documents_out"] = len(out)
    return out, report


def _write_shard(rows: list[dict], report: dict, features: datasets.Features, shard: Shard, shards_dir: Path) -> None:
    """Report first, then the Arrow file, each written to a temporary file and renamed: a shard exists whole or not.

    The Arrow file is the shard's done marker (resuming and the other processes trust it), hence written last.
    """
    from datasets.arrow_writer import ArrowWriter

    atomic_write_text(shard.report_path(shards_dir), json.dumps(report, sort_keys=True) + "\n")
    with atomic_path(shard.path(shards_dir)) as tmp:
        writer = ArrowWriter(path=str(tmp), features=features)
        try:
            for row in rows:
                writer.write(row)
            writer.finalize()
        finally:
            writer.close()


# --------------------------------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------------------------------


def _new_shard_report() -> dict:
    return {"documents_in": 0, "documents_out": 0, "documents_without_segments": [], "resampled_documents": 0}


def _sum_into(total: dict, part: Mapping, skip=("segment_sources", "resampled_from")) -> None:
    for key, value in part.items():
        if key in skip:
            continue
        if isinstance(value, Mapping):
            _sum_into(total.setdefault(key, {}), value, skip)
        elif isinstance(value, list):
            total.setdefault(key, []).extend(value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            total[key] = total.get(key, 0) + value


def _add_report(total: dict, document: Mapping) -> None:
    """Add one document's processor report to a shard's report."""
    total["documents_in"] += 1
    total["resampled_documents"] += document.get("resampled_from") is not None
    _sum_into(total, document)


def _round_floats(value):
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {k: _round_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_round_floats(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------------


@dataclass
class _Processes:
    rank: int
    world: int
    state: Any = None  # accelerate.PartialState when a process group exists

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.state is not None:
            self.state.wait_for_everyone()


def _processes(rank: int | None, world_size: int | None) -> _Processes:
    """Explicit rank/world, or accelerate/torchrun (a process group), or RANK/WORLD_SIZE alone (independent jobs)."""
    if rank is not None or world_size is not None:
        world = world_size or 1
        rank = rank or 0
    else:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        if world > 1 and os.environ.get("MASTER_ADDR"):
            from accelerate import PartialState

            # Without a GPU, only cpu=True makes accelerate form a (gloo) process group.
            state = PartialState(cpu=not torch.cuda.is_available())
            return _Processes(state.process_index, state.num_processes, state)
    if not 0 <= rank < world:
        raise ExtractionError(f"rank {rank} is outside the world of {world} processes.")
    return _Processes(rank, world)


def _wait_for(predicate: Callable[[], bool], what: Callable[[], str], poll: float = 2.0) -> None:
    """Poll until `predicate()`; say what is awaited every minute (independent jobs have no barrier)."""
    last = time.monotonic()
    while not predicate():
        if time.monotonic() - last > 60:
            logger.warning("Still waiting for %s.", what())
            last = time.monotonic()
        time.sleep(poll)


# --------------------------------------------------------------------------------------------------
# Merge and metadata
# --------------------------------------------------------------------------------------------------


def _merge_reports(shards: list[Shard], shards_dir: Path, source: datasets.DatasetDict) -> dict:
    splits = {split: _new_shard_report() for split in source}
    for shard in shards:
        _sum_into(splits[shard.split], json.loads(shard.report_path(shards_dir).read_text(encoding="utf-8")))
    total = _new_shard_report()
    for report in splits.values():
        _sum_into(total, report)
    for report in (*splits.values(), total):
        report["documents_without_segments"].sort()
    return _round_floats({"splits": splits, "total": total})


def _merge_split(shards: list[Shard], shards_dir: Path, features: datasets.Features) -> datasets.Dataset:
    parts = [datasets.Dataset.from_file(str(s.path(shards_dir))) for s in shards]
    parts = [p for p in parts if p.num_rows]
    if not parts:
        empty = datasets.Dataset.from_dict({name: [] for name in features}, features=features)
        return empty.remove_columns(INDEX_COLUMN)
    merged = datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    order = np.argsort(merged.data.column(INDEX_COLUMN).to_numpy(), kind="stable")  # back to source order
    return merged.select(order.tolist()).remove_columns(INDEX_COLUMN)


def _metadata(extractor: Extractor, source_identity: dict, report: dict, shard_size: int, batch_documents: int) -> dict:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "package_version": modeling_hilbert.__version__,
        "encoders": extractor.sources,
        "segment_pooling": SEGMENT_POOLING,
        "feature_dtype": "float16",
        "feature_widths": extractor.widths,
        "encoder_dtype": str(extractor.dtype).replace("torch.", ""),
        "encoder_batch_size": extractor.model.config.encoder_batch_size,
        "device_type": extractor.device.type,
        "processor": extractor.processor_options(),
        "processor_components": extractor.processor_components(),
        "source_dataset": source_identity,
        "source_dataset_repo": source_identity.get("repo_id"),
        "extraction": {"shard_size": shard_size, "batch_documents": batch_documents},
        "report": report,
    }


def _finish(output_dir: Path, shards_dir: Path, dataset: datasets.DatasetDict, metadata: dict) -> None:
    """Write the merged dataset beside the shards, move it into place, then drop the shards.

    The fingerprint (`hilbert_features.json`) is what marks a finished dataset. The old one (of a dataset replaced
    with --overwrite) is removed before anything moves, and `dataset_dict.json` then the new fingerprint move last,
    so a kill part way never leaves a folder that looks finished: `_shards/args.json` is still there and a re-run
    merges again. The shards go (one rename, then deletion) only once the fingerprint is in place.
    """
    staging = shards_dir / MERGED_DIR
    if staging.exists():
        shutil.rmtree(staging)
    description = json.dumps(metadata, sort_keys=True)
    for split in dataset.values():
        split.info.description = description
    # an empty split must still get one (empty) shard file, or load_from_disk fails on it
    dataset.save_to_disk(str(staging), num_shards={name: 1 for name, split in dataset.items() if split.num_rows == 0})
    (staging / "README.md").write_text(render_features_card(metadata), encoding="utf-8")
    (staging / METADATA_NAME).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (output_dir / METADATA_NAME).unlink(missing_ok=True)  # from here on the folder is not a finished dataset
    old_splits = output_dir / "dataset_dict.json"
    if old_splits.is_file():  # splits of a replaced dataset that the new one does not have
        for split in json.loads(old_splits.read_text(encoding="utf-8")).get("splits", []):
            if split not in dataset and (output_dir / split).is_dir():
                shutil.rmtree(output_dir / split)
    move_into(staging, output_dir, last=["dataset_dict.json", METADATA_NAME])
    trash = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}shards-", dir=output_dir))
    os.replace(shards_dir, trash)  # args.json disappears at once: the folder is now simply a finished dataset
    shutil.rmtree(trash)


# --------------------------------------------------------------------------------------------------
# The extraction
# --------------------------------------------------------------------------------------------------


def extract_features(
    dataset,
    output_dir: str | os.PathLike,
    audio_encoder: str | None = None,
    text_encoder: str | None = None,
    *,
    model: str | os.PathLike | None = None,
    fast: bool | None = None,
    speakers: list[str] | None = None,
    max_segments: int | None = None,
    batch_documents: int = 8,
    shard_size: int = 64,
    encoder_batch_size: int | str | None = None,
    num_workers: int = 0,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    rank: int | None = None,
    world_size: int | None = None,
    on_shard_done: Callable[[str, int], None] | None = None,
) -> tuple[datasets.DatasetDict | None, dict | None]:
    """Extract the segment features of every document of `dataset` into `output_dir` (see the module docstring).

    Args:
        dataset: a `DatasetDict`/`Dataset` of `build_dataset.py`, its folder, or a Hub repo id.
        output_dir: new or empty folder, an unfinished extraction (resumed), or a finished one (`overwrite`).
        audio_encoder, text_encoder, model, fast, speakers, max_segments, encoder_batch_size, device, dtype: see
            `load_extractor`.
        batch_documents: documents per processor + encoder call. shard_size: documents per resumable shard.
        num_workers: DataLoader workers that decode audio and run the processor (0: in this process).
        rank, world_size: this process's share (shards i with i % world_size == rank); default: from accelerate /
            torchrun, else the RANK / WORLD_SIZE variables, else one process.
        on_shard_done: called with (split, shard number) after each shard is written (progress hooks, tests).

    Returns:
        `(features DatasetDict, metadata)` in the main process; `(None, None)` in the others.
    """
    started = time.perf_counter()
    if batch_documents < 1 or shard_size < 1:
        raise ExtractionError("--batch-documents and --shard-size must be at least 1.")
    output_dir = Path(output_dir)
    procs = _processes(rank, world_size)
    if procs.is_main:
        _prepare_output(output_dir, overwrite)
    source, source_name = _load_source(dataset)
    source = _check_source(source, source_name)
    if device is None and procs.state is not None:
        device = procs.state.device
    extractor = load_extractor(audio_encoder, text_encoder, model=model, fast=fast, speakers=speakers,
                               max_segments=max_segments, encoder_batch_size=encoder_batch_size, device=device, dtype=dtype)
    identity = _source_identity(source, source_name)
    args = {
        "format_version": FORMAT_VERSION,
        "dataset": identity,
        "encoders": {k: {"name_or_path": v["name_or_path"], "sha256": v["sha256"]} for k, v in extractor.sources.items()},
        "processor": extractor.processor_options(),
        "processor_components": extractor.processor_components(),
        "batch_documents": batch_documents,
        "shard_size": shard_size,
        "encoder_batch_size": extractor.model.config.encoder_batch_size,
        "device_type": extractor.device.type,
        "encoder_dtype": str(extractor.dtype).replace("torch.", ""),
    }
    shards_dir = output_dir / SHARDS_DIR
    if procs.is_main:
        _start_shards_dir(output_dir, args)
    elif procs.state is None:
        _wait_for(lambda: (shards_dir / ARGS_NAME).is_file(), lambda: f"rank 0 to create {shards_dir / ARGS_NAME}")
    procs.barrier()
    if not procs.is_main:
        _check_args(shards_dir, args, output_dir)

    shards = _plan_shards(source, shard_size)
    mine = [s for i, s in enumerate(shards) if i % procs.world == procs.rank]
    todo = [s for s in mine if not (s.path(shards_dir).is_file() and s.report_path(shards_dir).is_file())]
    features = {split: _output_features(ds, extractor.widths, with_index=True) for split, ds in source.items()}
    passthrough = {split: [c for c in feats if c in source[split].column_names and c not in ("id",)]
                   for split, feats in features.items()}
    for split in source:
        (shards_dir / split).mkdir(parents=True, exist_ok=True)
    segments_todo = sum(_count_segments(source[s.split], s.rows) for s in todo)
    if len(todo) < len(mine):
        logger.info("Resuming: %d of this process's %d shards are already done.", len(mine) - len(todo), len(mine))
    bar = tqdm(total=segments_todo, unit="seg", desc=f"Extracting features{f' (rank {procs.rank})' if procs.world > 1 else ''}",
               disable=not progress, dynamic_ncols=True)
    encode_started = time.perf_counter()
    for shard in todo:
        rows, report = _shard_rows(extractor, source[shard.split], shard, batch_documents, num_workers,
                                   passthrough[shard.split], bar)
        _write_shard(rows, report, features[shard.split], shard, shards_dir)
        if on_shard_done is not None:
            on_shard_done(shard.split, shard.number)
    bar.close()
    encode_seconds = time.perf_counter() - encode_started
    segments_done = _all_reduce_sum(procs, segments_todo)

    procs.barrier()
    if not procs.is_main:
        return None, None
    if procs.state is None and procs.world > 1:
        _wait_for(lambda: all(s.path(shards_dir).is_file() for s in shards),
                  lambda: f"shards of other processes: {[str(s.path(shards_dir)) for s in shards if not s.path(shards_dir).is_file()][:5]}")

    report = _merge_reports(shards, shards_dir, source)
    merged = datasets.DatasetDict({
        split: _merge_split([s for s in shards if s.split == split], shards_dir, features[split]) for split in source
    })
    metadata = _metadata(extractor, identity, report, shard_size, batch_documents)
    _finish(output_dir, shards_dir, merged, metadata)
    wall = time.perf_counter() - started
    total = report["total"]
    if total["documents_without_segments"]:
        logger.warning("%d documents have no segment left after the processor's policies and are left out: %s",
                       len(total["documents_without_segments"]), total["documents_without_segments"][:10])
    rate = segments_done / encode_seconds if encode_seconds > 0 and segments_done else 0.0
    print(f"Extracted {total['documents_out']} documents, {total.get('segments_out', 0)} segments "
          f"(of {total.get('segments_in', 0)} in), {total.get('audio_seconds', 0.0):.1f} s of audio in {wall:.1f} s wall "
          f"({segments_done} segments encoded this run in {encode_seconds:.1f} s: {rate:.1f} segments/s, "
          f"{procs.world} process(es), {extractor.device.type}, audio_mode={extractor.processor.audio_mode}) "
          f"-> {output_dir}", flush=True)
    return load_features(output_dir)


def _count_segments(ds: datasets.Dataset, rows) -> int:
    import pyarrow.compute as pc

    table = ds.select_columns(["segments"]).with_format("arrow")[list(rows)]
    return int(pc.sum(pc.list_value_length(table.column("segments")).fill_null(0)).as_py() or 0)


def _all_reduce_sum(procs: _Processes, value: int) -> int:
    if procs.state is None or not torch.distributed.is_initialized():
        return value
    tensor = torch.tensor([value], dtype=torch.long, device=procs.state.device)
    torch.distributed.all_reduce(tensor)
    return int(tensor.item())


# --------------------------------------------------------------------------------------------------
# Dataset card and Hub
# --------------------------------------------------------------------------------------------------


def render_features_card(metadata: dict, repo_id: str | None = None) -> str:
    """A short dataset card (README.md): what the features are and the fingerprint that identifies them."""
    encoders = "\n".join(
        f"| {modality} | `{s.get('requested') or s.get('name_or_path')}` | {s.get('model_type')} | {s.get('revision') or '-'} "
        f"| `{(s.get('sha256') or '')[:16]}` | {metadata['feature_widths'][modality]} |"
        for modality, s in sorted(metadata["encoders"].items()))
    processor = metadata["processor"]
    total = metadata["report"]["total"]
    splits = ", ".join(f"{split}: {r['documents_out']} documents, {r.get('segments_out', 0)} segments"
                       for split, r in metadata["report"]["splits"].items())
    dropped = ", ".join(f"{k} {v}" for k, v in (total.get("dropped") or {}).items() if v) or "none"
    load_name = repo_id or "PATH_OR_REPO"
    return f"""---
tags: [hilbert, audio-text, precomputed-features]
---

# HILBERT segment features

Frozen-encoder features of every segment of `{metadata['source_dataset']['path']}`, made once by
`dataset_scripts/extract_features.py` (HILBERT {metadata['package_version']}) so that training the head is fast.
Each row is a document: `audio_features` (S, D_audio) and `text_features` (S, D_text) float16 are the masked mean
of each encoder's last hidden state over the segment's real frames / tokens; `audio_segment_mask` and
`text_segment_mask` say which segments have audio / text; `segment_times` (S, 2) are (start, end) seconds; the
label columns, `group` and `fold` come from the source dataset.

## Fingerprint

Features are valid only for these exact encoders (sha256 of the weights):

| modality | encoder | type | revision | sha256 | width |
|---|---|---|---|---|---|
{encoders}

Processor: audio_mode `{processor.get('audio_mode')}`, max_segment_seconds {processor.get('max_segment_seconds')},
max_segments {processor.get('max_segments')}, speakers {processor.get('speakers')}, max_text_tokens
{processor.get('max_text_tokens')}; encoders run in {metadata['encoder_dtype']} on {metadata['device_type']}.
Segments: {total.get('segments_in', 0)} in, {total.get('segments_out', 0)} out (dropped: {dropped}); {splits}.
The full fingerprint is in `{METADATA_NAME}`.

## Use

```python
from dataset_scripts.features import load_features, collate_features
features, metadata = load_features("{load_name}", expected_encoders=model)  # refuses features of other encoders
batch = collate_features([features["train"][i] for i in range(8)], labels="label")
outputs = model(**batch)
```
"""


def push_features_to_hub(dataset: datasets.DatasetDict, metadata: dict, repo_id: str, *, public: bool = False,
                         token: str | None = None) -> None:
    """Push the features (private unless `public`), `hilbert_features.json` and the card to the Hub dataset `repo_id`."""
    from huggingface_hub import DatasetCard, HfApi

    check_push_visibility(repo_id, "dataset", public, token)
    for split in dataset.values():
        split.reset_format()
    dataset.push_to_hub(repo_id, private=not public, token=token)
    api = HfApi(token=token)
    api.upload_file(path_or_fileobj=(json.dumps(metadata, indent=2, sort_keys=True) + "\n").encode(),
                    path_in_repo=METADATA_NAME, repo_id=repo_id, repo_type="dataset",
                    commit_message="Add the HILBERT features fingerprint")
    card = DatasetCard(render_features_card(metadata, repo_id))
    pushed = DatasetCard.load(repo_id, repo_type="dataset", token=token)
    if pushed.data.get("dataset_info") is not None:  # keep the schema push_to_hub wrote into the README
        card.data["dataset_info"] = pushed.data.get("dataset_info")
    if pushed.data.get("configs") is not None:
        card.data["configs"] = pushed.data.get("configs")
    card.push_to_hub(repo_id, repo_type="dataset", token=token, commit_message="Add the HILBERT features card")


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


def _batch_size_arg(text: str) -> int | str:
    """`--encoder-batch-size`: a positive integer or "auto"."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, help="dataset folder (build_dataset.py --output) or Hub dataset repo")
    p.add_argument("--output", required=True, type=Path, help="folder for the features (new, empty, or unfinished: resumed)")
    p.add_argument("--audio-encoder", help="audio encoder: Hub id, folder or offline: name")
    p.add_argument("--text-encoder", help="text encoder: Hub id, folder or offline: name")
    p.add_argument("--model", help="a HILBERT checkpoint folder whose encoders and processor are used instead")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--fast", dest="fast", action="store_const", const=True, default=None,
                      help="Whisper fast mode: encode only the real mel frames of each segment")
    mode.add_argument("--exact", dest="fast", action="store_const", const=False,
                      help="Whisper exact mode: the full 30-s window (default, unless --model's processor says fast)")
    p.add_argument("--speakers", help="comma-separated speakers whose segments are kept (default: all)")
    p.add_argument("--max-segments", type=int, help="keep at most the first N segments of each document")
    p.add_argument("--batch-documents", type=int, default=8, help="documents per encoder batch (default 8)")
    p.add_argument("--shard-size", type=int, default=64, help="documents per resumable shard (default 64)")
    p.add_argument("--encoder-batch-size", type=_batch_size_arg, default="auto",
                   help="segments per encoder call, or auto (default): 4 on CPU, where small batches are fastest, 64 on CUDA")
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader workers decoding audio and computing log-mels")
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--encoder-dtype", "--dtype", dest="dtype", choices=["auto", "float32", "float16", "bfloat16"],
                   default="auto", help="dtype of the frozen encoders (default auto: float16 on CUDA, float32 on CPU, where "
                   "half precision is slower); recorded in the fingerprint")
    p.add_argument("--overwrite", action="store_true", help="replace a finished features dataset in --output")
    p.add_argument("--push-to-hub", metavar="REPO", help="push the features, fingerprint and card to this dataset repo")
    p.add_argument("--public", action="store_true", help="make the pushed dataset public (default: private)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 2 invalid input or refused output folder)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    speakers = [s.strip() for s in args.speakers.split(",") if s.strip()] if args.speakers else None
    if args.push_to_hub:  # before encoding: a refused push should not cost the whole extraction first
        try:
            check_push_visibility(args.push_to_hub, "dataset", args.public)
        except PublicRepositoryError as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_ERROR
    try:
        dataset, metadata = extract_features(
            args.dataset, args.output, args.audio_encoder, args.text_encoder, model=args.model, fast=args.fast,
            speakers=speakers, max_segments=args.max_segments, batch_documents=args.batch_documents,
            shard_size=args.shard_size, encoder_batch_size=args.encoder_batch_size, num_workers=args.num_workers,
            device=args.device, dtype=args.dtype, overwrite=args.overwrite, progress=not args.no_progress)
    except (ExtractionError, FeatureFingerprintError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as error:  # a read-only folder or a full disk: one paragraph rather than a library's traceback
        message = describe_write_error(error, args.output, "re-run the same command: the shards finished so far are kept")
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return EXIT_ERROR
    if dataset is not None and args.push_to_hub:
        push_features_to_hub(dataset, metadata, args.push_to_hub, public=args.public)
        print(f"Pushed to https://huggingface.co/datasets/{args.push_to_hub} ({'public' if args.public else 'private'}).")
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
