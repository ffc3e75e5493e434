"""Run HILBERT's frozen encoders once over every segment of a corpus and save the segment features.

    python dataset_scripts/extract_features.py --dataset DIR_OR_REPO --output-dir DIR
        (--audio-encoder NAME_OR_PATH --text-encoder NAME_OR_PATH | --model CHECKPOINT_DIR)
        [--fast | --exact] [--speakers A,B] [--max-segments N] [--batch-documents 8] [--shard-size 64]
        [--encoder-batch-size N] [--num-workers N] [--overwrite] [--push-to-hub REPO [--public]]

    accelerate launch --num_processes 4 dataset_scripts/extract_features.py ...   # one process per GPU

Input: the DatasetDict of `build_dataset.py` (columns id, audio = Audio(decode=False), segments, label(s), group,
fold), from a folder or a Hub repo. Encoder names go through `hilbert_app.encoders.resolve_encoder`, so
`offline:whisper-tiny.en` and `offline:all-MiniLM-L6-v2` work without a hub. With `--model`, the encoders and the
processor of a HILBERT checkpoint are used (processor options may still be overridden).

Output (`save_to_disk`, same splits): one row per document with `id`, `audio_features` (S, D_audio) and
`text_features` (S, D_text) float16 -- exactly what `HilbertModel.get_audio_segment_features` /
`get_text_segment_features` give for the `HilbertProcessor`'s output --, `audio_segment_mask`, `text_segment_mask`,
`segment_times` (S, 2), the label columns, `group` and `fold`; plus `hilbert_features.json`, the fingerprint
(encoders with the sha256 of their weights, processor options, widths, source dataset, extraction report), also
kept in each split's `info.description`. Load it with `hilbert_app.features.store.load_features`.

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

One run per output folder: the main process holds `OUTPUT/.hilbert-lock` while it works (`hilbert_app.output_lock`),
so a second, independent run into the same folder stops at once with one paragraph naming the process, host and
start time of the first; the other ranks of a multi-process run work under rank 0's lock. A lock left by a killed
run is taken over (the kernel released it), with a warning. The merge stages in a folder of the run's own.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import datasets
import numpy as np
import torch
from tqdm.auto import tqdm

import modeling_hilbert
from hilbert_app.errors import ExtractionError
from hilbert_app.features.extractor import Extractor, decode_audio, load_extractor
from hilbert_app.features.shards import (
    ARGS_NAME,
    SHARDS_DIR,
    Processes,
    Shard,
    add_document_report,
    check_saved_arguments,
    new_shard_report,
    prepare_output,
    processes,
    round_floats,
    start_shards_dir,
    sum_reports_into,
    wait_for,
    write_shard,
)
from hilbert_app.features.store import (
    FORMAT,
    FORMAT_VERSION,
    METADATA_NAME,
    SEGMENT_POOLING,
    FeatureFingerprintError,
    check_fingerprint,
    load_features,
)
from hilbert_app.hub import check_push_visibility
from hilbert_app.output_lock import lock_output
from hilbert_app.safe_write import TMP_PREFIX, move_into, remove_stale_temporaries
from modeling_hilbert import HilbertProcessor

__all__ = [
    "ExtractionError",
    "FeatureFingerprintError",
    "Extractor",
    "check_fingerprint",
    "decode_audio",
    "extract_features",
    "load_extractor",
    "load_features",
    "push_features_to_hub",
    "render_features_card",
]

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("id", "audio", "segments")
INDEX_COLUMN = "_index"  # source row, kept in the shards only: the merge sorts on it
MERGED_DIR = "_merged"  # the merge's staging folder before each run had its own (removed when found)


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
                "[{start, end, text, speaker}], label(s), group, fold."
            )
        if isinstance(ds.features["audio"], datasets.Audio) and ds.features["audio"].decode:
            ds = ds.cast_column("audio", datasets.Audio(decode=False))
        out[split] = ds
    return datasets.DatasetDict(out)


def _source_identity(source: datasets.DatasetDict, name: str) -> dict:
    is_repo = not name.startswith("<") and not os.path.isabs(name)
    return {
        "path": name,
        "repo_id": name if is_repo else None,
        "splits": {split: {"fingerprint": ds._fingerprint, "num_rows": ds.num_rows} for split, ds in source.items()},
    }


def _document_order(ds: datasets.Dataset) -> list[int]:
    """Rows sorted by number of segments, then duration, longest first (ties: row order): batches of similar size."""
    table = ds.select_columns(["segments"] + (["duration"] if "duration" in ds.column_names else [])).with_format(
        "arrow"
    )[:]
    import pyarrow.compute as pc

    counts = pc.list_value_length(table.column("segments")).fill_null(0).to_numpy(zero_copy_only=False)
    duration = (
        table.column("duration").fill_null(0).to_numpy(zero_copy_only=False)
        if "duration" in table.column_names
        else np.zeros(len(counts))
    )
    index = np.arange(len(counts))
    return np.lexsort((index, -duration.astype(np.float64), -counts.astype(np.int64))).tolist()


# --------------------------------------------------------------------------------------------------
# Output schema, shards and arguments
# --------------------------------------------------------------------------------------------------


def _plan_shards(source: datasets.DatasetDict, shard_size: int) -> list[Shard]:
    shards = []
    for split, ds in source.items():
        order = _document_order(ds)
        for number, lo in enumerate(range(0, len(order), shard_size)):
            shards.append(Shard(split, number, tuple(order[lo : lo + shard_size])))
    return shards


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


# --------------------------------------------------------------------------------------------------
# Reading documents and encoding a batch
# --------------------------------------------------------------------------------------------------


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


def _shard_rows(
    extractor: Extractor,
    ds: datasets.Dataset,
    shard: Shard,
    batch_documents: int,
    num_workers: int,
    passthrough: list[str],
    bar,
) -> tuple[list[dict], dict]:
    """Encode one shard -> (output rows in processing order, summed report)."""
    batches = [list(shard.rows[lo : lo + batch_documents]) for lo in range(0, len(shard.rows), batch_documents)]
    loader = torch.utils.data.DataLoader(
        _Batches(ds, shard.split, batches, extractor.processor),
        batch_size=None,
        num_workers=num_workers,
        collate_fn=_identity,
    )
    extra = ds.select_columns(passthrough)[list(shard.rows)] if passthrough else {}
    extra_of = {row: {c: extra[c][i] for c in passthrough} for i, row in enumerate(shard.rows)}
    out, report = [], new_shard_report()
    for rows, ids, inputs, reports in loader:
        audio, text, audio_mask, text_mask = extractor.encode(inputs)
        times = inputs["segment_times"]
        for b, (row, doc_id, doc_report) in enumerate(zip(rows, ids, reports)):
            add_document_report(report, doc_report)
            count = doc_report["segments_out"]
            if count == 0:
                report["documents_without_segments"].append(doc_id)
                continue
            audio_features = audio[b, :count].to(torch.float16)
            text_features = text[b, :count].to(torch.float16)
            if not (torch.isfinite(audio_features).all() and torch.isfinite(text_features).all()):
                raise ExtractionError(
                    f"document id {doc_id!r}: non-finite segment features (float16 overflow or a "
                    "broken encoder); check the encoders in float32 (--dtype float32)."
                )
            out.append(
                {
                    "id": doc_id,
                    "audio_features": audio_features.numpy(),
                    "text_features": text_features.numpy(),
                    "audio_segment_mask": audio_mask[b, :count].tolist(),
                    "text_segment_mask": text_mask[b, :count].tolist(),
                    "segment_times": times[b, :count].to(torch.float32).numpy(),
                    **extra_of[row],
                    INDEX_COLUMN: row,
                }
            )
        if bar is not None:
            bar.update(sum(r["segments_in"] for r in reports))
    report["documents_out"] = len(out)
    return out, report


# --------------------------------------------------------------------------------------------------
# Merge and metadata
# --------------------------------------------------------------------------------------------------


def _merge_reports(shards: list[Shard], shards_dir: Path, source: datasets.DatasetDict) -> dict:
    splits = {split: new_shard_report() for split in source}
    for shard in shards:
        sum_reports_into(splits[shard.split], json.loads(shard.report_path(shards_dir).read_text(encoding="utf-8")))
    total = new_shard_report()
    for report in splits.values():
        sum_reports_into(total, report)
    for report in (*splits.values(), total):
        report["documents_without_segments"].sort()
    return round_floats({"splits": splits, "total": total})


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
    # A staging folder of this run's own: what a killed run left (the old fixed name too) is removed first.
    shutil.rmtree(shards_dir / MERGED_DIR, ignore_errors=True)
    remove_stale_temporaries(shards_dir)
    staging = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}merged-", dir=shards_dir))
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
    procs = processes(rank, world_size)
    # One run at a time per folder: the main process holds the lock until the end; the other ranks work under it.
    lock = lock_output(output_dir, "--output-dir") if procs.is_main else None
    try:
        return _extract(
            dataset,
            output_dir,
            procs,
            started,
            audio_encoder,
            text_encoder,
            model=model,
            fast=fast,
            speakers=speakers,
            max_segments=max_segments,
            batch_documents=batch_documents,
            shard_size=shard_size,
            encoder_batch_size=encoder_batch_size,
            num_workers=num_workers,
            device=device,
            dtype=dtype,
            overwrite=overwrite,
            progress=progress,
            on_shard_done=on_shard_done,
        )
    finally:
        if lock is not None:
            lock.release()


def _extract(
    dataset,
    output_dir: Path,
    procs: Processes,
    started: float,
    audio_encoder,
    text_encoder,
    *,
    model,
    fast,
    speakers,
    max_segments,
    batch_documents,
    shard_size,
    encoder_batch_size,
    num_workers,
    device,
    dtype,
    overwrite,
    progress,
    on_shard_done,
):
    """`extract_features`' work, under the output folder's lock (held by the main process)."""
    if procs.is_main:
        prepare_output(output_dir, overwrite)
    source, source_name = _load_source(dataset)
    source = _check_source(source, source_name)
    if device is None and procs.state is not None:
        device = procs.state.device
    extractor = load_extractor(
        audio_encoder,
        text_encoder,
        model=model,
        fast=fast,
        speakers=speakers,
        max_segments=max_segments,
        encoder_batch_size=encoder_batch_size,
        device=device,
        dtype=dtype,
    )
    identity = _source_identity(source, source_name)
    args = {
        "format_version": FORMAT_VERSION,
        "dataset": identity,
        "encoders": {
            k: {"name_or_path": v["name_or_path"], "sha256": v["sha256"]} for k, v in extractor.sources.items()
        },
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
        start_shards_dir(output_dir, args)
    elif procs.state is None:
        wait_for(lambda: (shards_dir / ARGS_NAME).is_file(), lambda: f"rank 0 to create {shards_dir / ARGS_NAME}")
    procs.barrier()
    if not procs.is_main:
        check_saved_arguments(shards_dir, args, output_dir)

    shards = _plan_shards(source, shard_size)
    mine = [s for i, s in enumerate(shards) if i % procs.world == procs.rank]
    todo = [s for s in mine if not (s.path(shards_dir).is_file() and s.report_path(shards_dir).is_file())]
    features = {split: _output_features(ds, extractor.widths, with_index=True) for split, ds in source.items()}
    passthrough = {
        split: [c for c in feats if c in source[split].column_names and c not in ("id",)]
        for split, feats in features.items()
    }
    for split in source:
        (shards_dir / split).mkdir(parents=True, exist_ok=True)
    segments_todo = sum(_count_segments(source[s.split], s.rows) for s in todo)
    if len(todo) < len(mine):
        logger.info("Resuming: %d of this process's %d shards are already done.", len(mine) - len(todo), len(mine))
    bar = tqdm(
        total=segments_todo,
        unit="seg",
        desc=f"Extracting features{f' (rank {procs.rank})' if procs.world > 1 else ''}",
        disable=not progress,
        dynamic_ncols=True,
    )
    encode_started = time.perf_counter()
    for shard in todo:
        rows, report = _shard_rows(
            extractor, source[shard.split], shard, batch_documents, num_workers, passthrough[shard.split], bar
        )
        write_shard(rows, report, features[shard.split], shard, shards_dir)
        if on_shard_done is not None:
            on_shard_done(shard.split, shard.number)
    bar.close()
    encode_seconds = time.perf_counter() - encode_started
    segments_done = _all_reduce_sum(procs, segments_todo)

    procs.barrier()
    if not procs.is_main:
        return None, None
    if procs.state is None and procs.world > 1:
        wait_for(
            lambda: all(s.path(shards_dir).is_file() for s in shards),
            lambda: (
                f"shards of other processes: "
                f"{[str(s.path(shards_dir)) for s in shards if not s.path(shards_dir).is_file()][:5]}"
            ),
        )

    report = _merge_reports(shards, shards_dir, source)
    merged = datasets.DatasetDict(
        {split: _merge_split([s for s in shards if s.split == split], shards_dir, features[split]) for split in source}
    )
    metadata = _metadata(extractor, identity, report, shard_size, batch_documents)
    _finish(output_dir, shards_dir, merged, metadata)
    wall = time.perf_counter() - started
    total = report["total"]
    if total["documents_without_segments"]:
        logger.warning(
            "%d documents have no segment left after the processor's policies and are left out: %s",
            len(total["documents_without_segments"]),
            total["documents_without_segments"][:10],
        )
    rate = segments_done / encode_seconds if encode_seconds > 0 and segments_done else 0.0
    print(
        f"Extracted {total['documents_out']} documents, {total.get('segments_out', 0)} segments "
        f"(of {total.get('segments_in', 0)} in{split_note(total)}), {total.get('audio_seconds', 0.0):.1f} s of audio "
        f"in {wall:.1f} s wall "
        f"({segments_done} segments encoded this run in {encode_seconds:.1f} s: {rate:.1f} segments/s, "
        f"{procs.world} process(es), {extractor.device.type}, audio_mode={extractor.processor.audio_mode}) "
        f"-> {output_dir}",
        flush=True,
    )
    return load_features(output_dir)


def split_note(total: dict) -> str:
    """`"; 1 longer than max_segment_seconds split into 2 pieces"` when the processor split segments (which is why
    more segments can come out than went in), else ``."""
    count, pieces = total.get("split_segments", 0), total.get("split_pieces", 0)
    if not count:
        return ""
    return f"; {count} longer than max_segment_seconds split into {pieces} pieces"


def _count_segments(ds: datasets.Dataset, rows) -> int:
    import pyarrow.compute as pc

    table = ds.select_columns(["segments"]).with_format("arrow")[list(rows)]
    return int(pc.sum(pc.list_value_length(table.column("segments")).fill_null(0)).as_py() or 0)


def _all_reduce_sum(procs: Processes, value: int) -> int:
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
        f"| {modality} | `{s.get('requested') or s.get('name_or_path')}` | {s.get('model_type')} | "
        f"{s.get('revision') or '-'} "
        f"| `{(s.get('sha256') or '')[:16]}` | {metadata['feature_widths'][modality]} |"
        for modality, s in sorted(metadata["encoders"].items())
    )
    processor = metadata["processor"]
    total = metadata["report"]["total"]
    splits = ", ".join(
        f"{split}: {r['documents_out']} documents, {r.get('segments_out', 0)} segments"
        for split, r in metadata["report"]["splits"].items()
    )
    dropped = ", ".join(f"{k} {v}" for k, v in (total.get("dropped") or {}).items() if v) or "none"
    load_name = repo_id or "PATH_OR_REPO"
    return f"""---
tags: [hilbert, audio-text, precomputed-features]
---

# HILBERT segment features

Frozen-encoder features of every segment of `{metadata["source_dataset"]["path"]}`, made once by
`dataset_scripts/extract_features.py` (HILBERT {metadata["package_version"]}) so that training the head is fast.
Each row is a document: `audio_features` (S, D_audio) and `text_features` (S, D_text) float16 are the masked mean
of each encoder's last hidden state over the segment's real frames / tokens; `audio_segment_mask` and
`text_segment_mask` say which segments have audio / text; `segment_times` (S, 2) are (start, end) seconds; the
label columns, `group` and `fold` come from the source dataset.

## Fingerprint

Features are valid only for these exact encoders (sha256 of the weights):

| modality | encoder | type | revision | sha256 | width |
|---|---|---|---|---|---|
{encoders}

Processor: audio_mode `{processor.get("audio_mode")}`, max_segment_seconds {processor.get("max_segment_seconds")},
max_segments {processor.get("max_segments")}, speakers {processor.get("speakers")}, max_text_tokens
{processor.get("max_text_tokens")}; encoders run in {metadata["encoder_dtype"]} on {metadata["device_type"]}.
Segments: {total.get("segments_in", 0)} in, {total.get("segments_out", 0)} out (dropped: {dropped}{split_note(total)});
{splits}.
The full fingerprint is in `{METADATA_NAME}`.

## Use

```python
from hilbert_app.features.store import load_features, collate_features
features, metadata = load_features("{load_name}", expected_encoders=model)  # refuses features of other encoders
batch = collate_features([features["train"][i] for i in range(8)], labels="label")
outputs = model(**batch)
```
"""


def push_features_to_hub(
    dataset: datasets.DatasetDict, metadata: dict, repo_id: str, *, public: bool = False, token: str | None = None
) -> None:
    """Push the features (private unless `public`), `hilbert_features.json` and the card to the Hub dataset
    `repo_id`."""
    from huggingface_hub import DatasetCard, HfApi

    check_push_visibility(repo_id, "dataset", public, token)
    for split in dataset.values():
        split.reset_format()
    dataset.push_to_hub(repo_id, private=not public, token=token)
    api = HfApi(token=token)
    api.upload_file(
        path_or_fileobj=(json.dumps(metadata, indent=2, sort_keys=True) + "\n").encode(),
        path_in_repo=METADATA_NAME,
        repo_id=repo_id,
        repo_type="dataset",
        commit_message="Add the HILBERT features fingerprint",
    )
    card = DatasetCard(render_features_card(metadata, repo_id))
    pushed = DatasetCard.load(repo_id, repo_type="dataset", token=token)
    if pushed.data.get("dataset_info") is not None:  # keep the schema push_to_hub wrote into the README
        card.data["dataset_info"] = pushed.data.get("dataset_info")
    if pushed.data.get("configs") is not None:
        card.data["configs"] = pushed.data.get("configs")
    card.push_to_hub(repo_id, repo_type="dataset", token=token, commit_message="Add the HILBERT features card")
