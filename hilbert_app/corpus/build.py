"""Build HILBERT's corpus (a `datasets.DatasetDict`) from a folder of recordings and transcripts.

    python dataset_scripts/build_dataset.py --input DIR --output-dir DIR [--folds K] [--fold-seed N]
        [--skip-invalid] [--overlap {error,allow}] [--report PATH] [--push-to-hub REPO [--public] [--license ID]]
        [--transcribe MODEL [--language LANG]]

The input folder follows the AudioFolder convention: ``metadata.csv`` (or ``metadata.jsonl``) with
one row per recording and the columns

* ``file_name``  -- audio file, relative to the folder, in any format soundfile reads;
* ``transcript`` -- the transcript file, relative to the folder (.srt, .vtt, .json, DAIC-WOZ / E-DAIC .csv/.tsv,
  CHAT .cha, Praat .TextGrid, ELAN .eaf); empty for a recording without one (see below);
* ``label``      -- the class (also the stratification target); ``label_<task>`` adds a task;
* ``group``      -- optional cross-validation group (speaker, session); default: the recording;
* ``id``         -- optional; default: the audio file's stem.

The output is a single ``train`` split with ``id, audio, sampling_rate, duration, segments, label(s),
group, fold`` saved with ``save_to_disk``, plus ``build_report.json``. Every row is checked before
anything is written, and every problem is reported with its file and line: by default the build
stops (`DatasetBuildError`, exit code 2); with ``--skip-invalid`` the invalid rows are left out and
listed in the report. Nothing is dropped silently.

Audio is stored as the original file's bytes (``Audio(decode=False)``), so the saved dataset does not
depend on the input folder. Every recording is decoded once, to its end, when building
(`audio_hilbert.scan_audio`, the decoder extraction uses: soundfile block by block for WAV, FLAC, OGG,
MP3; torchcodec for M4A and other FFmpeg formats), because headers lie: a file that fails part way (a
truncated FLAC) is refused here, not in the extraction, and the *decoded* length is the duration the
segments are checked against (a truncated MP3 keeps its whole-file header; the report lists recordings
that decode more than 0.1 s shorter than their header claims). The same pass refuses NaN/inf samples.
A segment that starts at or after the last decoded sample has no audio at all and is refused whatever
``--tolerance`` is. Stereo and any sampling rate are kept as they are (the processor mixes to mono and
resamples; the report counts recordings per sampling rate and per channel count).

Labels: one class has one spelling. Numbers are written in their canonical form (``1.0``, ``01`` and
``1`` are the class ``1``: JSON and spreadsheets write them differently), true/false in lower case
(Excel writes ``TRUE``), surrounding whitespace is dropped; the report lists every spelling that was
changed (``normalised_values``). A label column that mixes numbers and true/false, or two spellings
that differ only in case (``Calm``, ``calm``), is refused with its lines; ``nan``/``inf`` is not a
class. Group values that are numbers are unified the same way (``1.0`` and ``1`` are one participant).
``metadata.csv`` may have a UTF-8 byte-order mark (Excel writes one) and Windows line endings; a
semicolon- or tab-separated export, or a UTF-16 file, is refused with what to export instead.

Overlapping segments (``--overlap``): by default a segment that starts before an earlier one ends is a
problem, as a sign of misaligned timestamps. Diarised transcripts with crosstalk overlap legitimately:
``--overlap allow`` keeps them (the processor encodes each segment's own audio, so overlapping speech is
in both), and the report and dataset card say so and count them per recording.

Recordings without a transcript (an empty ``transcript`` cell, a JSON line without the key, or no ``transcript``
column at all): with ``--transcribe MODEL`` (a Whisper Hub id, folder or ``offline:`` name; ``--language`` for a
multilingual one) they are transcribed into timestamped segments (`hilbert_app.corpus.transcribe`), which then get
the same checks as a parsed transcript; the report (``transcription``) and the dataset card list every transcribed
row with the model, its revision and weights' hash. Only rows that pass every other check are transcribed, each
audio file once, with a progress bar; segments are cached across builds. Without ``--transcribe`` such a row is a
problem (``transcript_missing``) that says to pass ``--transcribe MODEL`` or to give a transcript: a HILBERT document
is its transcript's timed segments (an audio-only model uses their times too), so a recording is never built as a
document without segments. With ``--skip-invalid`` these rows are left out and listed like any other.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import re
import shutil
import string
import tempfile
import uuid
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field, replace
from decimal import Decimal
from pathlib import Path, PurePath

import datasets
from tqdm.auto import tqdm

from hilbert_app.corpus.transcribe import CorpusTranscriber
from hilbert_app.errors import UserError
from hilbert_app.folds import FoldError, assign_folds
from hilbert_app.hub import check_push_visibility
from hilbert_app.model_cards import template
from hilbert_app.safe_write import TMP_PREFIX, atomic_write_text, describe_write_error, remove_stale_temporaries
from modeling_hilbert.audio_hilbert import CONVERT_ADVICE, AudioError, AudioScan, scan_audio
from modeling_hilbert.transcripts_hilbert import (
    Problem,
    Segment,
    TranscriptError,
    format_timestamp,
    load_transcript_with_lines,
    validate_segments,
)

__all__ = [
    "BuildReport",
    "DatasetBuildError",
    "FoldError",
    "SkippedRow",
    "assign_folds",
    "build_dataset",
    "push_dataset_to_hub",
    "read_metadata",
    "render_dataset_card",
]

logger = logging.getLogger(__name__)

REPORT_NAME = "build_report.json"
REQUIRED_COLUMNS = ("file_name", "transcript", "label")
OPTIONAL_COLUMNS = ("id", "group")
EXIT_INVALID_INPUT = 2
OVERLAP_POLICIES = ("error", "allow")


# --------------------------------------------------------------------------------------------------
# Errors and report
# --------------------------------------------------------------------------------------------------


class DatasetBuildError(UserError):
    """The corpus cannot be built; ``problems`` lists every `Problem` found (all of them, numbered in
    the message), ``skipped`` the invalid rows as `SkippedRow`s."""

    def __init__(self, intro: str, problems: list[Problem], advice: str = "", skipped: list[SkippedRow] | None = None):
        self.problems = list(problems)
        self.skipped = list(skipped or [])
        lines = [intro] + [f"  {i}. {problem}" for i, problem in enumerate(self.problems, 1)]
        super().__init__("\n".join(lines + ([advice] if advice else [])))


@dataclass
class SkippedRow:
    """A metadata row left out of the dataset, and why."""

    id: str | None
    line: int
    problems: list[Problem]

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "metadata_line": self.line,
            "problems": [str(p) for p in self.problems],
            "kinds": sorted({p.kind for p in self.problems}),
        }


# How an empty label cell is shown in the report's tables (it is stored as ClassLabel's -1, not as a class).
UNLABELLED_NAME = "(unlabelled)"


@dataclass
class BuildReport:
    """What a build read, wrote and left out (written to ``build_report.json`` and the dataset card)."""

    input_dir: str
    output_dir: str
    metadata: str
    command: str
    folds: int
    seed: int
    rows_read: int
    rows_built: int
    skipped: list[SkippedRow]
    label_names: dict[str, list[str]]
    # column -> fold ("0", "1", ... and "total") -> label name -> rows
    label_distribution: dict[str, dict[str, dict[str, int]]]
    rows_per_fold: dict[str, int]
    ignored_columns: list[str]
    total_duration_s: float
    segments: int
    sampling_rates: dict[str, int] = field(default_factory=dict)  # Hz -> recordings
    channels: dict[str, int] = field(default_factory=dict)  # channel count -> recordings (the processor mixes to mono)
    overlap_policy: str = "error"
    overlapping_segments: dict[str, int] = field(default_factory=dict)  # id -> segments overlapping an earlier one
    # column -> [{"from": "1.0", "to": "1", "rows": 3}]: the spellings unified so that one class stays one class
    normalised_values: dict[str, list[dict]] = field(default_factory=dict)
    # id -> {"header_s", "decoded_s"}: recordings whose header claims more than decodes (durations are decoded ones)
    decoded_shorter_than_header: dict[str, dict[str, float]] = field(default_factory=dict)
    # --transcribe: {"model": provenance (name_or_path, revision, sha256, language, ...), "rows": [{"id",
    # "metadata_line", "file_name", "segments", "cached"}]}; None when no row was transcribed
    transcription: dict | None = None
    # --allow-unlabelled: column -> rows with an empty cell (stored as ClassLabel's -1: alignment-only documents)
    unlabelled_rows: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["skipped"] = [row.to_dict() for row in self.skipped]
        return out

    def write(self, path: str | Path) -> None:
        """Write the report atomically (temporary file, then rename): never half a report."""
        try:
            atomic_write_text(path, json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n")
        except OSError as error:
            _raise_write_error(error, Path(path).parent)

    def summary(self) -> str:
        """A few lines for the terminal."""
        labels = "; ".join(f"{col}: {len(names)} classes" for col, names in self.label_names.items())
        lines = [
            f"Built {self.rows_built} of {self.rows_read} rows into {self.output_dir} "
            f"({self.total_duration_s / 3600:.2f} h, {self.segments} segments, {self.folds} folds; {labels}).",
        ]
        for column, n in self.unlabelled_rows.items():
            lines.append(
                f"{n} rows have no {column!r} (kept unlabelled, --allow-unlabelled): training uses them for the "
                "label-free alignment terms only."
            )
        if self.ignored_columns:
            lines.append(f"Ignored metadata columns (not part of the schema): {', '.join(self.ignored_columns)}.")
        for column, changes in self.normalised_values.items():
            lines.append(
                f"Normalised {column!r} spellings: "
                + ", ".join(f"{c['from']!r} -> {c['to']!r} ({c['rows']} rows)" for c in changes)
                + "."
            )
        if self.decoded_shorter_than_header:
            shown = ", ".join(
                f"{rid} ({d['header_s']:.2f} s claimed, {d['decoded_s']:.2f} s decoded)"
                for rid, d in list(self.decoded_shorter_than_header.items())[:5]
            )
            lines.append(
                f"{len(self.decoded_shorter_than_header)} recordings decode shorter than their headers claim "
                f"(truncated files?): {shown}; their decoded length is used."
            )
        if self.overlapping_segments:
            lines.append(
                f"Kept {sum(self.overlapping_segments.values())} overlapping segments in "
                f"{len(self.overlapping_segments)} recordings (--overlap allow)."
            )
        if self.transcription:
            model = self.transcription["model"]
            lines.append(
                f"Transcribed {len(self.transcription['rows'])} rows without a transcript with "
                f"{model['name_or_path']} (revision {model['revision'] or 'unknown'}, language "
                f"{model['language'] or 'detected'}): {', '.join(r['id'] for r in self.transcription['rows'][:10])}"
                + (" ..." if len(self.transcription["rows"]) > 10 else "")
                + "."
            )
        untranscribed = [row for row in self.skipped if "transcript_missing" in {p.kind for p in row.problems}]
        if untranscribed:
            lines.append(
                f"{len(untranscribed)} rows have no transcript and were left out; pass --transcribe MODEL (e.g. "
                "offline:whisper-tiny.en) to transcribe them."
            )
        if self.skipped:
            lines.append(f"Skipped {len(self.skipped)} invalid rows:")
            for row in self.skipped:
                more = f" (+{len(row.problems) - 1} more)" if len(row.problems) > 1 else ""
                lines.append(f"  - {row.problems[0]}{more}")
        lines.append(f"Report: {Path(self.output_dir) / REPORT_NAME}")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Reading the metadata
# --------------------------------------------------------------------------------------------------


@dataclass
class Row:
    """One metadata row: its 1-based line, its values as strings, or why it could not be read."""

    line: int
    values: dict[str, str]
    error: str | None = None


def _corpus_error(metadata: str, message: str, line: int | None = None, kind: str = "metadata") -> DatasetBuildError:
    return DatasetBuildError("Cannot build the corpus:", [Problem(metadata, line, kind, message)])


def _read_csv(path: Path) -> tuple[list[str], list[Row]]:
    rows: list[Row] = []
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            header = [name.strip() for name in next(reader, [])]
            _check_separator(path.name, header)
            next_line = reader.line_num + 1
            for values in reader:
                line, next_line = next_line, reader.line_num + 1  # a quoted field may span lines
                if not any(v.strip() for v in values):
                    continue  # blank line, not a row
                if len(values) != len(header):
                    rows.append(
                        Row(
                            line,
                            {},
                            f"row has {len(values)} fields but the header has {len(header)}; "
                            "quote fields that contain commas.",
                        )
                    )
                else:
                    rows.append(Row(line, dict(zip(header, values))))
    except UnicodeDecodeError:
        raise _corpus_error(
            path.name,
            f"{_encoding_name(path)}re-encode it as UTF-8 (spreadsheet programs: "
            "save as 'CSV UTF-8 (Comma delimited)').",
        ) from None
    except csv.Error as err:
        raise _corpus_error(path.name, f"malformed CSV ({err}); fix the quoting.", line=reader.line_num) from None
    return header, rows


def _check_separator(metadata: str, header: list[str]) -> None:
    """A header read as one or two fields holding ';' or tabs: a spreadsheet's semicolon- or tab-separated export
    saved as .csv (European Excel uses ';' where the decimal separator is a comma)."""
    if all(column in header for column in REQUIRED_COLUMNS):
        return
    for separator, name in ((";", "semicolons (';')"), ("\t", "tabs")):
        if any(separator in column for column in header):
            raise _corpus_error(
                metadata,
                f"the header is separated by {name}, not commas; export the sheet as "
                "comma-separated CSV (Excel: 'CSV UTF-8 (Comma delimited)'; LibreOffice: field "
                "delimiter ',') or replace the separators.",
                line=1,
            )


def _encoding_name(path: Path) -> str:
    """'not UTF-8 (UTF-16, ...); ' -- Excel's 'Unicode Text' and Windows tools write UTF-16 with a byte-order mark."""
    with path.open("rb") as f:
        start = f.read(4)
    if start[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return "not UTF-8 but UTF-16 (it starts with a UTF-16 byte-order mark); "
    return "not UTF-8; "


def _jsonl_value(value) -> str | None:
    """A JSON value as metadata text: strings as they are, true/false as 'true'/'false', numbers as JSON writes them
    (1, 1.0; label columns normalise them later), null as empty; None for arrays and objects."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    return None


def _read_jsonl(path: Path) -> tuple[list[str], list[Row]]:
    header: dict[str, None] = {}  # ordered set of keys, in order of first appearance
    rows: list[Row] = []
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise _corpus_error(path.name, f"{_encoding_name(path)}re-encode it as UTF-8.") from None
    for line, raw in enumerate(text.split("\n"), 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except ValueError as err:
            rows.append(Row(line, {}, f"invalid JSON ({err}); each line must be one JSON object."))
            continue
        if not isinstance(obj, dict):
            rows.append(Row(line, {}, f"expected a JSON object, got {type(obj).__name__}."))
            continue
        values = {str(k): _jsonl_value(v) for k, v in obj.items()}
        bad = [k for k, v in values.items() if v is None]
        if bad:
            rows.append(Row(line, {}, f"column(s) {', '.join(bad)} must be a string or a number."))
            continue
        header.update(dict.fromkeys(values))
        rows.append(Row(line, values))
    return list(header), rows


def read_metadata(input_dir: str | Path, *, transcribe: bool = False) -> tuple[str, list[str], list[Row]]:
    """Read ``metadata.csv`` or ``metadata.jsonl`` -> (file name, columns, rows).

    ``transcribe``: rows without a transcript will be transcribed, so the ``transcript`` column may be absent.

    Raises `DatasetBuildError` for problems of the whole file (missing, both present, not UTF-8,
    required columns absent); a malformed row becomes a `Row` with ``error`` set.
    """
    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        raise _corpus_error(str(input_dir), "the input folder does not exist; pass the corpus folder to --input.")
    candidates = [p for p in (input_dir / "metadata.csv", input_dir / "metadata.jsonl") if p.is_file()]
    if not candidates:
        raise _corpus_error(
            str(input_dir),
            "no metadata.csv or metadata.jsonl in the input folder; add one with the "
            "columns file_name, transcript, label (optional: group, id, label_<task>).",
        )
    if len(candidates) == 2:
        raise _corpus_error(str(input_dir), "both metadata.csv and metadata.jsonl exist; keep only one.")
    path = candidates[0]
    header, rows = (_read_csv if path.suffix == ".csv" else _read_jsonl)(path)
    duplicates = sorted(name for name, n in Counter(header).items() if n > 1)
    if duplicates:
        raise _corpus_error(path.name, f"duplicate column(s) {', '.join(duplicates)}; rename them.", line=1)
    required = [c for c in REQUIRED_COLUMNS if c != "transcript" or not transcribe]
    missing = [c for c in required if c not in header]
    if missing:
        raise _corpus_error(
            path.name,
            f"missing column(s) {', '.join(missing)} (found: {', '.join(header) or 'none'}); "
            "the required columns are file_name, transcript and label.",
            line=1,
        )
    if "label_" in header:
        raise _corpus_error(path.name, "column 'label_' has no task name; name it label_<task>.", line=1)
    if not rows:
        raise _corpus_error(path.name, "no rows; add one row per recording.")
    return path.name, header, rows


# --------------------------------------------------------------------------------------------------
# Checking rows
# --------------------------------------------------------------------------------------------------


@dataclass
class Recording:
    """A valid row, ready to be written."""

    id: str
    line: int
    file_name: str
    audio_path: Path
    sampling_rate: int
    duration: float
    segments: list[Segment]
    labels: dict[str, str]
    group: str
    channels: int = 1
    overlaps: int = 0  # segments overlapping an earlier one, kept under --overlap allow
    header_frames: int | None = None  # what the file's header claims (the duration is the decoded length, `frames`)
    frames: int = 0
    scan: AudioScan | None = None  # kept for a row still to be transcribed (its segments are checked against it)


@dataclass
class _Checker:
    """Checks one metadata row at a time; collects its problems with file and line."""

    input_dir: Path
    metadata: str
    label_columns: list[str]
    tolerance: float
    overlap: str = "error"
    transcribe: bool = False  # rows without a transcript are transcribed later (their segments are None until then)
    allow_unlabelled: bool = False  # an empty label cell is a document without that label, not a problem

    def check(self, row: Row) -> tuple[str | None, Recording | None, list[Problem]]:
        """-> (id, recording or None, problems)."""
        if row.error:
            return None, None, [Problem(self.metadata, row.line, "metadata_row", row.error)]
        values = {k: (v or "").strip() for k, v in row.values.items()}
        file_name = values.get("file_name", "")
        rid = values.get("id") or (PurePath(file_name).stem if file_name else None)
        found: list[Problem] = []

        def at_row(kind: str, message: str) -> None:
            found.append(Problem(self.metadata, row.line, kind, f"id {rid!r}: {message}" if rid else message))

        audio_path = self._inside(file_name, "file_name", at_row)
        scan = self._scan_audio(audio_path, file_name, at_row) if audio_path else None
        duration = scan.duration if scan else None
        transcript = values.get("transcript", "")
        transcript_path = self._inside(transcript, "transcript", at_row) if transcript else None
        segments, overlaps = None, 0
        if not transcript and not self.transcribe:
            at_row(
                "transcript_missing",
                f"no transcript (empty 'transcript' cell) for audio {file_name!r}; give the transcript file's path "
                "relative to the corpus folder, or pass --transcribe MODEL (e.g. --transcribe offline:whisper-tiny.en "
                "or openai/whisper-base; build_dataset(transcribe=...)) to transcribe the recording with Whisper. "
                "A recording is not built without timed segments (HILBERT's documents are made of them).",
            )
        if transcript_path:
            segments, transcript_problems = self._segments(
                transcript_path, transcript, scan, f"row {self.metadata}:{row.line}, id {rid!r}"
            )
            if self.overlap == "allow":  # legitimate crosstalk: counted for the report instead of refused
                overlaps = sum(p.kind == "overlap" for p in transcript_problems)
                transcript_problems = [p for p in transcript_problems if p.kind != "overlap"]
            found += transcript_problems
        labels = {column: values.get(column, "") for column in self.label_columns}
        for column, value in labels.items():
            if not value:
                if not self.allow_unlabelled:
                    at_row(
                        "label_empty",
                        f"empty {column!r}; every recording needs a value in each label column (or pass "
                        "--allow-unlabelled to keep unlabelled recordings for the label-free alignment terms).",
                    )
            elif _value_kind(value)[0] == "not_finite":
                at_row(
                    "label_invalid",
                    f"{column} {value!r} is not a class (a missing value written by a spreadsheet "
                    "or pandas?); fill in the label or remove the row.",
                )
        if found:
            return rid, None, found
        return (
            rid,
            Recording(
                id=rid,
                line=row.line,
                file_name=file_name,
                audio_path=audio_path,
                sampling_rate=scan.sampling_rate,
                duration=duration,
                segments=segments,
                labels=labels,
                group=values.get("group") or rid,
                channels=scan.channels,
                overlaps=overlaps,
                header_frames=scan.header_frames,
                frames=scan.frames,
                scan=scan if segments is None else None,
            ),
            [],
        )

    def _inside(self, name: str, column: str, at_row) -> Path | None:
        """The file ``name`` refers to, if it lies inside the corpus folder and exists.

        The check is lexical (no symlink resolution), so a folder symlinked to other storage is fine,
        while ``..`` or an absolute path elsewhere is refused: the dataset must be self-contained.
        """
        if not name:
            at_row("missing_value", f"empty {column!r}; give the file's path relative to the corpus folder.")
            return None
        root = os.path.abspath(self.input_dir)
        full = os.path.normpath(os.path.join(root, name))  # join keeps an absolute `name` as is
        if os.path.commonpath([root, full]) != root:
            at_row(
                "path_escapes",
                f"{column} {name!r} points outside the corpus folder; move the file into the "
                "folder and give its path relative to it (no '..', no absolute path elsewhere).",
            )
            return None
        if os.path.isdir(full):
            at_row(
                "file_missing",
                f"{column} {name!r} is a folder, not a file; give the file's path relative to the corpus folder.",
            )
            return None
        if not os.path.isfile(full):
            hint = " (Windows paths: write folders with '/', e.g. audio/r1.wav)" if "\\" in name else ""
            at_row(
                "file_missing",
                f"{column} {name!r}: no such file in the corpus folder; fix the path or add the file{hint}.",
            )
            return None
        return Path(full)

    @staticmethod
    def _scan_audio(path: Path, name: str, at_row) -> AudioScan | None:
        """Decode the whole recording once (`audio_hilbert.scan_audio`, the decoder extraction uses): its decoded
        length, not its header's, becomes the duration, and a file that fails part way is refused here rather than
        in the extraction. The same pass finds NaN/inf samples."""
        if path.stat().st_size == 0:
            at_row("audio_empty", f"audio {name!r} is an empty file (0 bytes); re-export the recording.")
            return None
        try:
            scan = scan_audio(path)
        except AudioError as err:
            detail = str(err).replace(str(path) + ": ", "").replace(CONVERT_ADVICE, "").strip()
            at_row(
                "audio_unreadable",
                f"audio {name!r} cannot be decoded to its end: {detail} Re-export the "
                "recording, or convert it to WAV or FLAC (e.g. `ffmpeg -i IN OUT.flac`) and check the result.",
            )
            return None
        if scan.frames <= 0 or scan.sampling_rate <= 0:
            at_row("audio_empty", f"audio {name!r} holds no samples (duration 0 s); re-export the recording.")
            return None
        if scan.first_non_finite is not None:
            at_row(
                "audio_not_finite",
                f"audio {name!r} holds NaN/inf samples (the first at "
                f"{scan.first_non_finite / scan.sampling_rate:.3f} s); repair the recording or re-export it (e.g. "
                "as 16-bit PCM).",
            )
            return None
        return scan

    def _segments(self, path: Path, name: str, scan: AudioScan | None, row_ref: str):
        """Parse and validate one transcript -> (segments or None, problems located in the transcript)."""
        try:
            segments, lines = load_transcript_with_lines(path)
        except TranscriptError as err:
            message = f"{err.reason} {err.fix} ({row_ref})".replace("  ", " ")
            return None, [Problem(name, err.line, "transcript_syntax", message)]
        if not segments:
            return segments, [
                Problem(
                    name,
                    None,
                    "transcript_empty",
                    f"no segments; a recording needs at least one transcript turn ({row_ref}).",
                )
            ]
        return segments, self.validate(segments, lines, name, scan, row_ref)

    def validate(
        self, segments: list[Segment], lines: list[int] | None, name: str, scan: AudioScan | None, row_ref: str
    ) -> list[Problem]:
        """The checks of a parsed or transcribed transcript's segments -> problems, each ending with ``row_ref``."""
        duration = scan.duration if scan else None
        problems = validate_segments(segments, duration, name, lines=lines, tolerance=self.tolerance)
        if scan is not None:
            problems += _segments_without_audio(
                segments, scan, name, lines or [], {p.index for p in problems if p.kind == "beyond_audio"}
            )
            problems.sort(key=lambda p: (p.index is None, p.index or 0))
        return [replace(p, message=f"{p.message} ({row_ref})") for p in problems]


def _segments_without_audio(
    segments: list[Segment], scan: AudioScan, name: str, lines: list[int], reported: set[int]
) -> list[Problem]:
    """Segments that start at or after the recording's last sample have no audio at all, whatever the tolerance
    (which only absorbs cue ends rounded up): the processor's rule, first sample round(start * rate) >= frames.
    A 1-sample recording with a cue at 0.1-0.4 s is such a case; `reported`: indices validate_segments already
    flagged as past the end."""
    out = []
    for i, segment in enumerate(segments):
        start = segment["start"]
        if i in reported or not math.isfinite(start) or round(start * scan.sampling_rate) < scan.frames:
            continue
        out.append(
            Problem(
                name,
                lines[i] if i < len(lines) else None,
                "beyond_audio",
                f"segment {i}: starts at {format_timestamp(start)}, when the audio has ended "
                f"({format_timestamp(scan.duration)} decoded), so it has no audio at all; fix its times, "
                "or is this the transcript of another recording?",
                index=i,
            )
        )
    return out


_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def _value_kind(value: str) -> tuple[str, str]:
    """A metadata value -> (kind, canonical spelling): ("number", "1") for 1, 1.0, 01, 1e0 or +1 (whole numbers
    lose their decimals, others their trailing zeros: 0.50 -> 0.5); ("boolean", "true") for TRUE, True, true
    (spreadsheets write TRUE); ("not_finite", v) for nan / inf; ("text", v) for anything else."""
    lowered = value.lower()
    if lowered in ("true", "false"):
        return "boolean", lowered
    if lowered.lstrip("+-") in ("nan", "inf", "infinity"):
        return "not_finite", value
    if not _NUMBER.fullmatch(value):
        return "text", value
    number = Decimal(value)  # exact: 12345678901234567890 stays itself (a float would not)
    if number.adjusted() > 60:  # 1e999999999: no int() of it (memory); its normal form is canonical enough
        return "number", str(number.normalize())
    if number == number.to_integral_value():
        return "number", str(int(number))
    return "number", format(number.normalize(), "f")


def _normalise_values(
    recordings: list[Recording], label_columns: list[str], metadata: str, groups_given: bool = True
) -> dict[str, list[dict]]:
    """Give every label (and group) one spelling, so that one class cannot become two: numbers in their canonical
    form (1.0 and 1 -> "1": JSON writes both, spreadsheets write 1.0 for a number cell with decimals), true/false in
    lower case. Changes `recordings` in place; returns {column: [{"from", "to", "rows"}]} of what changed.

    Refuses (`DatasetBuildError`, every case with its lines) a label column that mixes numbers and true/false (is
    TRUE the class 1?) or holds two spellings of a word that differ only in case ("Calm" and "calm").
    `groups_given`: the metadata has a group column (default groups are the ids, which are never merged).
    """
    changed: dict[str, Counter] = {}
    problems = []
    for column in [*label_columns, *(["group"] if groups_given else [])]:
        spellings: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))  # kind -> value -> lines
        for rec in recordings:
            raw = rec.group if column == "group" else rec.labels[column]
            if column != "group" and not raw:  # unlabelled (--allow-unlabelled): not a spelling of anything
                continue
            kind, canonical = _value_kind(raw)
            if column == "group" and kind != "number":  # group names are names: only number spellings are unified
                kind, canonical = "text", raw
            spellings[kind][canonical].append(rec.line)
            if canonical != raw:
                changed.setdefault(column, Counter())[(raw, canonical)] += 1
                if column == "group":
                    rec.group = canonical
                else:
                    rec.labels[column] = canonical
        if column == "group":
            continue
        if spellings.get("number") and spellings.get("boolean"):
            number, lines = next(iter(spellings["number"].items()))
            boolean, other = next(iter(spellings["boolean"].items()))
            problems.append(
                Problem(
                    metadata,
                    other[0],
                    "label_ambiguous",
                    f"column {column!r} mixes numbers ({number!r} on line {lines[0]}) and true/false "
                    f"({boolean!r} on lines {_lines(other)}); write every label of the column one "
                    "way.",
                )
            )
        by_case: dict[str, list[str]] = defaultdict(list)
        for value in spellings.get("text", {}):
            by_case[value.casefold()].append(value)
        for values in by_case.values():
            if len(values) > 1:
                where = "; ".join(f"{v!r} on lines {_lines(spellings['text'][v])}" for v in sorted(values))
                first = min(line for v in values for line in spellings["text"][v])
                problems.append(
                    Problem(
                        metadata,
                        first,
                        "label_ambiguous",
                        f"column {column!r} spells one class in several ways that differ only in case "
                        f"({where}); write it one way (or rename one, if they are different classes).",
                    )
                )
    if problems:
        raise DatasetBuildError("Cannot build the corpus: the labels are ambiguous (nothing was written):", problems)
    return {
        column: [{"from": raw, "to": canonical, "rows": n} for (raw, canonical), n in sorted(counts.items())]
        for column, counts in changed.items()
    }


def _lines(lines: list[int], most: int = 5) -> str:
    shown = ", ".join(str(n) for n in lines[:most])
    return shown + (f" and {len(lines) - most} more" if len(lines) > most else "")


def _duplicate_id_problems(ids: list[tuple[Row, str | None]], metadata: str) -> dict[int, Problem]:
    """Row line -> problem, for every row whose id is also used by another row (all of them are
    flagged: which of them is right cannot be guessed)."""
    lines_by_id: dict[str, list[int]] = defaultdict(list)
    for row, rid in ids:
        if rid:
            lines_by_id[rid].append(row.line)
    out = {}
    for rid, lines in lines_by_id.items():
        for line in lines if len(lines) > 1 else []:
            others = ", ".join(str(n) for n in lines if n != line)
            out[line] = Problem(
                metadata,
                line,
                "duplicate_id",
                f"id {rid!r} is also used on line(s) {others}; ids must be unique: add an `id` column "
                "or rename the files (the default id is the file name without extension).",
            )
    return out


# --------------------------------------------------------------------------------------------------
# Folds
# --------------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------


def _features(label_names: dict[str, list[str]]) -> datasets.Features:
    # `audio` is written as a plain {bytes, path} struct and cast to Audio afterwards: writing through
    # the Audio feature would call its encoder, which imports torchcodec.
    segment = {
        "start": datasets.Value("float64"),
        "end": datasets.Value("float64"),
        "text": datasets.Value("string"),
        "speaker": datasets.Value("string"),
    }
    return datasets.Features(
        {
            "id": datasets.Value("string"),
            "audio": {"bytes": datasets.Value("binary"), "path": datasets.Value("string")},
            "sampling_rate": datasets.Value("int32"),
            "duration": datasets.Value("float64"),
            "segments": datasets.List(segment),
            **{column: datasets.ClassLabel(names=names) for column, names in label_names.items()},
            "group": datasets.Value("string"),
            "fold": datasets.Value("int32"),
        }
    )


def _examples(recordings: list[Recording], folds: list[int], label_names: dict[str, list[str]]):
    """Rows for `Dataset.from_generator`; audio files are read one at a time (large corpora)."""
    index = {column: {name: i for i, name in enumerate(names)} for column, names in label_names.items()}
    for rec, fold in zip(recordings, folds):
        yield {
            "id": rec.id,
            "audio": {"bytes": rec.audio_path.read_bytes(), "path": rec.file_name},
            "sampling_rate": rec.sampling_rate,
            "duration": rec.duration,
            "segments": rec.segments,
            **{column: index[column][value] if value else -1 for column, value in rec.labels.items()},
            "group": rec.group,
            "fold": fold,
        }


def _check_output_dir(output_dir: Path, input_dir: Path) -> None:
    """Refuse an output folder that holds anything but a previous build (which is replaced)."""
    out, inp = os.path.abspath(output_dir), os.path.abspath(input_dir)
    if os.path.commonpath([out, inp]) == out:
        raise _corpus_error(
            str(output_dir), "the output folder is (or contains) the input folder; choose another one.", kind="output"
        )
    if output_dir.exists() and not output_dir.is_dir():
        raise _corpus_error(str(output_dir), "the output path is a file; choose a folder.", kind="output")
    # `_save` moves a build into place whole, so dataset_dict.json marks one (its report may be missing if the
    # build was killed just after the move: the report is written next).
    previous_build = (output_dir / "dataset_dict.json").is_file()
    if output_dir.is_dir() and any(output_dir.iterdir()) and not previous_build:
        raise _corpus_error(
            str(output_dir),
            "the output folder is not empty and holds no previous build; choose a new or empty folder.",
            kind="output",
        )


def _save(dataset: datasets.DatasetDict, output_dir: Path, report: "BuildReport | None" = None) -> None:
    """Write the dataset (and its build report) to a staging folder beside `output_dir`, then swap it in.

    A kill or a failed write (read-only folder, full disk) therefore leaves the previous build whole, never half a
    dataset; a write failure raises a `DatasetBuildError` that names the folder and the OS's reason.
    """
    parent = output_dir.parent
    prefix = f"{TMP_PREFIX}{output_dir.name}-"
    try:
        parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(parent, prefix)  # what a killed build left beside the output
        staging = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        try:
            dataset.save_to_disk(str(staging))
            if report is not None:
                report.write(staging / REPORT_NAME)
            if output_dir.exists():  # a previous build (checked by _check_output_dir): moved aside, then deleted
                old = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
                os.replace(output_dir, old)
                os.replace(staging, output_dir)
                shutil.rmtree(old)
            else:
                os.replace(staging, output_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    except OSError as error:
        _raise_write_error(error, output_dir)


def _raise_write_error(error: OSError, output_dir: Path) -> None:
    """A read-only folder or a full disk -> `DatasetBuildError` (one paragraph); anything else is re-raised."""
    message = describe_write_error(error, output_dir, "run the build again")
    if message is None:
        raise error
    raise _corpus_error(str(output_dir), message, kind="output") from None


HEADER_SLACK_S = 0.1  # MP3/AAC headers estimate the length (encoder delay, padding): only a larger shortfall counts


def _shorter_than_header(recordings: list[Recording]) -> dict[str, dict[str, float]]:
    out = {}
    for rec in recordings:
        if rec.header_frames is not None and rec.header_frames - rec.frames > HEADER_SLACK_S * rec.sampling_rate:
            out[rec.id] = {
                "header_s": round(rec.header_frames / rec.sampling_rate, 3),
                "decoded_s": round(rec.duration, 3),
            }
    return out


def _label_distribution(recordings: list[Recording], folds: list[int], label_names) -> dict:
    out = {}
    for column, names in label_names.items():
        shown = names + ([UNLABELLED_NAME] if any(not rec.labels[column] for rec in recordings) else [])
        table = {str(f): dict.fromkeys(shown, 0) for f in sorted(set(folds))}
        table["total"] = dict.fromkeys(shown, 0)
        for rec, fold in zip(recordings, folds):
            name = rec.labels[column] or UNLABELLED_NAME
            table[str(fold)][name] += 1
            table["total"][name] += 1
        out[column] = table
    return out


# --------------------------------------------------------------------------------------------------
# The build
# --------------------------------------------------------------------------------------------------


def _check_rows(rows: list[Row], checker: _Checker, progress: bool):
    """-> (valid recordings, skipped rows), in metadata order."""
    checked = [(row, *checker.check(row)) for row in tqdm(rows, desc="Checking rows", unit="row", disable=not progress)]
    duplicates = _duplicate_id_problems([(row, rid) for row, rid, _, _ in checked], checker.metadata)
    valid, skipped = [], []
    for row, rid, recording, problems in checked:
        if row.line in duplicates:
            problems = [duplicates[row.line], *problems]
        if problems:
            skipped.append(SkippedRow(rid, row.line, problems))
        else:
            valid.append(recording)
    return valid, skipped


def _transcribe_rows(
    recordings: list[Recording], checker: _Checker, asr: CorpusTranscriber, progress: bool
) -> tuple[list[Recording], list[SkippedRow], list[dict]]:
    """Transcribe the valid rows that have no transcript -> (recordings, newly skipped rows, transcribed rows).

    The segments get the checks of a parsed transcript (order, overlaps under the overlap policy, within the audio,
    non-empty text); a recording in which Whisper hears nothing is a problem, not an empty document.
    """
    pending = [rec for rec in recordings if rec.segments is None]
    if not pending:
        return recordings, [], []
    asr.transcriber()  # load once, before the progress bar
    skipped, transcribed = [], []
    for rec in tqdm(pending, desc=f"Transcribing ({asr.name})", unit="recording", disable=not progress):
        segments, cached = asr(rec.audio_path)
        name = f"{rec.file_name} (transcribed by {asr.name})"
        row_ref = f"row {checker.metadata}:{rec.line}, id {rec.id!r}"
        if not segments:
            problems = [
                Problem(
                    name,
                    None,
                    "transcript_empty",
                    f"Whisper heard no speech in it (no segments); give a transcript, or leave the row out "
                    f"({row_ref}).",
                )
            ]
        else:
            problems = checker.validate(segments, None, name, rec.scan, row_ref)
        if checker.overlap == "allow":
            rec.overlaps = sum(p.kind == "overlap" for p in problems)
            problems = [p for p in problems if p.kind != "overlap"]
        if problems:
            skipped.append(SkippedRow(rec.id, rec.line, problems))
            continue
        rec.segments, rec.scan = segments, None
        transcribed.append(
            {
                "id": rec.id,
                "metadata_line": rec.line,
                "file_name": rec.file_name,
                "segments": len(segments),
                "duration_s": round(rec.duration, 3),
                "cached": cached,
            }
        )
    return [rec for rec in recordings if rec.segments is not None], skipped, transcribed


def _refuse_invalid(skipped: list[SkippedRow], valid: int, rows: int, input_dir: Path, metadata: str) -> None:
    problems = [p for row in skipped for p in row.problems]
    raise DatasetBuildError(
        f"{len(problems)} problem(s) in {len(skipped)} of {rows} rows of {input_dir / metadata} "
        f"(paths relative to {input_dir}); nothing was written:",
        problems,
        f"Fix them, or re-run with --skip-invalid (skip_invalid=True) to build from the {valid} valid "
        f"rows; the skipped rows and why are then listed in {REPORT_NAME}.",
        skipped,
    )


def build_dataset(
    input_dir: str | Path,
    output_dir: str | Path,
    folds: int = 5,
    seed: int = 0,
    skip_invalid: bool = False,
    *,
    tolerance: float = 0.5,
    overlap: str = "error",
    command: str | None = None,
    progress: bool = True,
    transcribe=None,
    language: str | None = None,
    transcript_cache: str | Path | None | bool = None,
    allow_unlabelled: bool = False,
) -> tuple[datasets.DatasetDict, BuildReport]:
    """Check every row of ``input_dir``, then write the DatasetDict and ``build_report.json`` to ``output_dir``.

    ``tolerance``: seconds a segment may run past the end of its audio. ``overlap``: "error" (a segment that
    overlaps an earlier one is a problem) or "allow" (kept, counted in ``report.overlapping_segments``
    and the card). ``command``: how the build was
    invoked, for the report and card. Returns the dataset (loaded back from ``output_dir``) and the
    report. Raises `DatasetBuildError` listing every problem (nothing written) unless
    ``skip_invalid``, in which case invalid rows are left out and listed in ``report.skipped``;
    `FoldError` when the valid rows cannot be split into ``folds`` grouped, stratified folds.

    ``transcribe``: rows without a transcript are transcribed by this Whisper model (a Hub id, a folder, an
    ``offline:`` name, or an `asr_hilbert.WhisperTranscriber`), ``language`` its language (None: detected);
    ``transcript_cache``: folder of the cross-build cache of transcriptions (None: ``$HILBERT_CACHE/transcripts``,
    False: none). Without ``transcribe`` such rows are problems (``transcript_missing``). Rows that fail other checks
    are reported (or skipped) before anything is transcribed.

    ``allow_unlabelled``: a row with an empty label cell is kept as a document without that label (ClassLabel's
    -1; counted in ``report.unlabelled_rows`` and the card) instead of being a problem (``label_empty``). Training
    uses such documents for the label-free alignment terms only; they are spread over the folds like a class.
    """
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    if overlap not in OVERLAP_POLICIES:
        raise ValueError(f"overlap={overlap!r} must be one of {OVERLAP_POLICIES} (--overlap).")
    if language is not None and transcribe is None:
        raise UserError(f"--language {language} is the language of --transcribe MODEL; pass --transcribe too.")
    asr = None if transcribe is None else CorpusTranscriber(transcribe, language, transcript_cache)
    if asr is not None:
        asr.check()  # a wrong model name fails here, not after the rows were checked
    _check_output_dir(output_dir, input_dir)
    metadata, header, rows = read_metadata(input_dir, transcribe=asr is not None)
    label_columns = ["label"] + [c for c in header if c.startswith("label_")]
    ignored = [c for c in header if c not in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS, *label_columns)]
    checker = _Checker(
        input_dir,
        metadata,
        label_columns,
        tolerance,
        overlap,
        transcribe=asr is not None,
        allow_unlabelled=allow_unlabelled,
    )
    recordings, skipped = _check_rows(rows, checker, progress)
    if skipped and not skip_invalid:  # before transcribing: a bad label should not cost an hour of Whisper first
        _refuse_invalid(skipped, len(recordings), len(rows), input_dir, metadata)
    transcribed = []
    if asr is not None:
        recordings, more, transcribed = _transcribe_rows(recordings, checker, asr, progress)
        if more and not skip_invalid:
            _refuse_invalid(more, len(recordings), len(rows), input_dir, metadata)
        skipped = sorted(skipped + more, key=lambda row: row.line)
    problems = [p for row in skipped for p in row.problems]
    if not recordings:
        raise DatasetBuildError(
            f"All {len(rows)} rows of {input_dir / metadata} are invalid; nothing to build:", problems, skipped=skipped
        )
    if skipped:
        logger.warning("Skipping %d invalid rows of %s (listed in %s).", len(skipped), metadata, REPORT_NAME)

    normalised = _normalise_values(recordings, label_columns, metadata, groups_given="group" in header)
    label_names = {c: sorted({r.labels[c] for r in recordings} - {""}) for c in label_columns}
    without_class = [c for c, names in label_names.items() if not names]
    if without_class:
        raise _corpus_error(
            metadata,
            f"no row has a value in {', '.join(map(repr, without_class))}; a label column needs labelled rows "
            "(remove the column, or fill in some labels).",
            kind="label_empty",
        )
    fold_of = assign_folds([r.labels["label"] or None for r in recordings], [r.group for r in recordings], folds, seed)
    with tempfile.TemporaryDirectory(prefix="hilbert-build-") as cache_dir:
        train = datasets.Dataset.from_generator(
            _examples,
            features=_features(label_names),
            cache_dir=cache_dir,
            gen_kwargs={"recordings": recordings, "folds": fold_of, "label_names": label_names},
            fingerprint=uuid.uuid4().hex,  # a fresh build every time, never a stale cache entry
        ).cast_column("audio", datasets.Audio(decode=False))
        # the report travels inside the staging folder: a dataset never appears without its build report
        report = BuildReport(
            input_dir=str(input_dir),
            output_dir=str(output_dir),
            metadata=metadata,
            command=command
            or f"build_dataset({str(input_dir)!r}, {str(output_dir)!r}, folds={folds}, seed={seed}, "
            f"skip_invalid={skip_invalid}, overlap={overlap!r}"
            + (f", transcribe={asr.name!r}, language={language!r})" if asr is not None else ")"),
            folds=folds,
            seed=seed,
            rows_read=len(rows),
            rows_built=len(recordings),
            skipped=skipped,
            label_names=label_names,
            label_distribution=_label_distribution(recordings, fold_of, label_names),
            rows_per_fold={str(f): n for f, n in sorted(Counter(fold_of).items())},
            ignored_columns=ignored,
            total_duration_s=sum(r.duration for r in recordings),
            segments=sum(len(r.segments) for r in recordings),
            sampling_rates={str(sr): n for sr, n in sorted(Counter(r.sampling_rate for r in recordings).items())},
            channels={str(c): n for c, n in sorted(Counter(r.channels for r in recordings).items())},
            overlap_policy=overlap,
            overlapping_segments={r.id: r.overlaps for r in recordings if r.overlaps},
            normalised_values=normalised,
            decoded_shorter_than_header=_shorter_than_header(recordings),
            transcription={"model": asr.provenance, "rows": transcribed} if transcribed else None,
            unlabelled_rows={c: n for c in label_columns if (n := sum(not r.labels[c] for r in recordings))},
        )
        _save(datasets.DatasetDict({"train": train}), output_dir, report)
    return datasets.load_from_disk(str(output_dir)), report


# --------------------------------------------------------------------------------------------------
# Dataset card and Hub
# --------------------------------------------------------------------------------------------------


def _md(text: str) -> str:
    """Escape a value for a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _size_category(n: int) -> str:
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")]
    return next((name for bound, name in bounds if n < bound), "1M<n<10M")


def _label_tables(report: BuildReport) -> str:
    folds = [f for f in next(iter(report.label_distribution.values())) if f != "total"]
    parts = []
    for column, table in report.label_distribution.items():
        head = f"| `{column}` | " + " | ".join(f"fold {f}" for f in folds) + " | total |"
        rule = "|---" * (len(folds) + 2) + "|"
        body = [
            f"| {_md(name)} | " + " | ".join(str(table[f][name]) for f in folds) + f" | {table['total'][name]} |"
            for name in report.label_names[column] + ([UNLABELLED_NAME] if UNLABELLED_NAME in table["total"] else [])
        ]
        parts.append("\n".join([head, rule, *body]))
    return "\n\n".join(parts)


def _transcripts_section(report: BuildReport) -> str:
    """The card's account of where the transcripts came from: which rows a speech recogniser transcribed, with what."""
    given = report.rows_built - len((report.transcription or {}).get("rows", []))
    if not report.transcription:
        return f"All {report.rows_built} transcripts came with the source corpus (none was transcribed automatically)."
    model, rows = report.transcription["model"], report.transcription["rows"]
    sha = f", weights sha256 `{model['sha256'][:16]}…`" if model.get("sha256") else ""
    listed = "\n".join(
        f"- `{_md(row['id'])}` (metadata line {row['metadata_line']}, {row['segments']} segments)" for row in rows
    )
    return (
        f"{given} transcripts came with the source corpus; {len(rows)} recordings had none and were transcribed "
        f"automatically by the Whisper speech recogniser `{_md(model['name_or_path'])}` (revision "
        f"`{_md(model['revision'] or 'unknown')}`{sha}; language {_md(model['language'] or 'detected')}, task "
        f"{model['task']}). Their segments carry Whisper's timestamps, no speaker, and its recognition errors:\n\n"
        + listed
    )


def render_dataset_card(report: BuildReport, repo_id: str, license: str = "unknown") -> str:
    """The dataset card (README.md) for ``report``'s build, from ``model_cards/dataset_card_template.md``."""
    label_rows = "".join(
        f"| `{column}` | ClassLabel | {'the class' if column == 'label' else f'task {column[6:]!r}'}: "
        f"{_md(', '.join(names))}"
        + (
            f"; {report.unlabelled_rows[column]} rows unlabelled (-1: used for label-free alignment only)"
            if report.unlabelled_rows.get(column)
            else ""
        )
        + " |\n"
        for column, names in report.label_names.items()
    )
    if report.skipped:
        skipped = f"{len(report.skipped)} of {report.rows_read} source rows were left out:\n\n" + "\n".join(
            f"- `{_md(row.id)}` (metadata line {row.line}): " + "; ".join(_md(p) for p in row.problems)
            for row in report.skipped
        )
    else:
        skipped = f"None: all {report.rows_read} source rows passed the checks."
    if report.overlap_policy == "allow":  # the template's build notes promise non-overlapping segments: say otherwise
        skipped += (
            f"\n\nOverlapping segments were allowed (`--overlap allow`, e.g. crosstalk in diarised transcripts): "
            f"{sum(report.overlapping_segments.values())} segments in {len(report.overlapping_segments)} "
            "recordings start before an earlier segment ends."
        )
    values = {
        "transcripts": _transcripts_section(report),
        "license": license,
        "pretty_name": repo_id.split("/")[-1],
        "size_category": _size_category(report.rows_built),
        "rows_built": report.rows_built,
        "hours": f"{report.total_duration_s / 3600:.2f}",
        "segments": report.segments,
        "sampling_rates": ", ".join(f"{n} at {sr} Hz" for sr, n in report.sampling_rates.items()),
        "label_rows": label_rows,
        "last_fold": report.folds - 1,
        "label_tables": _label_tables(report),
        "folds": report.folds,
        "seed": report.seed,
        "skipped": skipped,
        "command": report.command,
    }
    return string.Template(template("dataset_card_template.md")).substitute(values)


def push_dataset_to_hub(
    dataset: datasets.DatasetDict,
    report: BuildReport,
    repo_id: str,
    *,
    public: bool = False,
    license: str = "unknown",
    token: str | None = None,
) -> None:
    """Push the dataset (private unless ``public``) and its card to the Hub as ``repo_id``.

    ``push_to_hub`` writes a README whose YAML holds the schema (``dataset_info``); our card replaces
    that README, so the schema is copied over first.
    """
    from huggingface_hub import DatasetCard

    check_push_visibility(repo_id, "dataset", public, token)
    dataset.push_to_hub(repo_id, private=not public, token=token)
    card = DatasetCard(render_dataset_card(report, repo_id, license))
    pushed = DatasetCard.load(repo_id, repo_type="dataset", token=token)
    if pushed.data.get("dataset_info") is not None:
        card.data["dataset_info"] = pushed.data.get("dataset_info")
    card.push_to_hub(repo_id, repo_type="dataset", token=token, commit_message="Add HILBERT dataset card")
