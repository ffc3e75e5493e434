"""The resumable, multi-process machinery of feature extraction: shards, their saved arguments, reports, processes.

A features extraction is cut into shards (`Shard`: a split's source rows in processing order). Each finished shard is
written atomically under `OUTPUT/_shards/<split>/` (a report, then its Arrow file, which is its done marker);
`_shards/args.json` records every argument that shapes the output, so a restart with the same arguments resumes and
a restart with other arguments is refused (`check_saved_arguments`). Several processes split the shards by rank
(`processes`). What is encoded, and how the shards are merged, is `extract.py`'s business.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import torch

from hilbert_app.errors import ExtractionError
from hilbert_app.features.store import METADATA_NAME
from hilbert_app.output_lock import LOCK_NAME
from hilbert_app.safe_write import atomic_path, atomic_write_text, remove_stale_temporaries

logger = logging.getLogger(__name__)

SHARDS_DIR = "_shards"
ARGS_NAME = "args.json"


@dataclass(frozen=True)
class Shard:
    split: str
    number: int  # within the split
    rows: tuple[int, ...]  # source rows, in processing order

    def path(self, shards_dir: Path) -> Path:
        return shards_dir / self.split / f"shard-{self.number:05d}.arrow"

    def report_path(self, shards_dir: Path) -> Path:
        return shards_dir / self.split / f"shard-{self.number:05d}.json"


def diff_settings(saved: Any, now: Any, prefix: str = "") -> list[str]:
    if isinstance(saved, Mapping) and isinstance(now, Mapping):
        out = []
        for key in sorted(set(saved) | set(now)):
            out += diff_settings(saved.get(key), now.get(key), f"{prefix}{key}.")
        return out
    return [] if saved == now else [f"{prefix.rstrip('.')}: {json.dumps(saved)} (saved) vs {json.dumps(now)} (now)"]


def check_saved_arguments(shards_dir: Path, args: dict, output_dir: Path) -> None:
    saved = json.loads((shards_dir / ARGS_NAME).read_text(encoding="utf-8"))
    differences = diff_settings(saved, args)
    if differences:
        raise ExtractionError(
            f"{output_dir} holds an unfinished extraction made with other arguments:\n  - "
            + "\n  - ".join(differences)
            + f"\nRe-run with the saved arguments to finish it, or start over: delete {shards_dir} or choose another "
            "--output-dir."
        )


def prepare_output(output_dir: Path, overwrite: bool) -> None:
    """Refuse an output folder that holds something else; accept a finished extraction to replace when `overwrite`.

    Called by the main process under the folder's lock (`hilbert_app.output_lock`), whose file it ignores.

    A finished dataset being replaced stays in place, whole and loadable, until the new one is complete: `_finish`
    swaps them. Temporary entries (`.tmp-*`) that a killed run left at the top of the folder are removed.
    """
    if output_dir.exists() and not output_dir.is_dir():
        raise ExtractionError(f"--output-dir {output_dir} is a file; choose a folder.")
    if not output_dir.is_dir():
        return
    remove_stale_temporaries(output_dir)  # only the main process writes at this level, and it holds the lock
    entries = [entry for entry in output_dir.iterdir() if entry.name != LOCK_NAME]
    if not entries or (output_dir / SHARDS_DIR / ARGS_NAME).is_file():
        return  # new, or an unfinished extraction to resume (its arguments are checked later)
    if (output_dir / METADATA_NAME).is_file():
        if not overwrite:
            raise ExtractionError(
                f"--output-dir {output_dir} already holds a finished features dataset; pass --overwrite "
                "(overwrite=True) to replace it, or choose another folder."
            )
        return
    names = ", ".join(sorted(p.name for p in entries)[:5])
    raise ExtractionError(
        f"--output-dir {output_dir} is not empty and holds no features extraction ({names}...); choose a "
        "new or empty folder."
    )


def start_shards_dir(output_dir: Path, args: dict) -> Path:
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
    check_saved_arguments(shards_dir, args, output_dir)
    return shards_dir


def write_shard(rows: list[dict], report: dict, features: datasets.Features, shard: Shard, shards_dir: Path) -> None:
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


def new_shard_report() -> dict:
    return {"documents_in": 0, "documents_out": 0, "documents_without_segments": [], "resampled_documents": 0}


def sum_reports_into(total: dict, part: Mapping, skip=("segment_sources", "resampled_from")) -> None:
    for key, value in part.items():
        if key in skip:
            continue
        if isinstance(value, Mapping):
            sum_reports_into(total.setdefault(key, {}), value, skip)
        elif isinstance(value, list):
            total.setdefault(key, []).extend(value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            total[key] = total.get(key, 0) + value


def add_document_report(total: dict, document: Mapping) -> None:
    """Add one document's processor report to a shard's report."""
    total["documents_in"] += 1
    total["resampled_documents"] += document.get("resampled_from") is not None
    sum_reports_into(total, document)


def round_floats(value):
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {k: round_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [round_floats(v) for v in value]
    return value


@dataclass
class Processes:
    rank: int
    world: int
    state: Any = None  # accelerate.PartialState when a process group exists

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.state is not None:
            self.state.wait_for_everyone()


def processes(rank: int | None, world_size: int | None) -> Processes:
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
            return Processes(state.process_index, state.num_processes, state)
    if not 0 <= rank < world:
        raise ExtractionError(f"rank {rank} is outside the world of {world} processes.")
    return Processes(rank, world)


def wait_for(predicate: Callable[[], bool], what: Callable[[], str], poll: float = 2.0) -> None:
    """Poll until `predicate()`; say what is awaited every minute (independent jobs have no barrier)."""
    last = time.monotonic()
    while not predicate():
        if time.monotonic() - last > 60:
            logger.warning("Still waiting for %s.", what())
            last = time.monotonic()
        time.sleep(poll)
