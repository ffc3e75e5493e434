"""Every foreseeable bad input to the three command lines ends in one clear paragraph and exit code 2, never a
traceback; checked as a table, one row per case: the tool, its arguments, the exit code, a phrase of the message.

Rows run in this process through each CLI's `main` (the code path a user's shell takes, minus the interpreter
start); the cases whose point is the process itself (Ctrl-C, a full disk) run as real subprocesses.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from synthetic import make_features_dataset, make_raw_dataset, save_tiny_encoders

from hilbert_app.cli import build_dataset as build_cli
from hilbert_app.cli import extract_features as extract_cli
from hilbert_app.cli import train as train_cli

REPO = Path(__file__).resolve().parents[1]
TINY_HEAD = [
    "--hidden-size",
    "16",
    "--num-attention-heads",
    "2",
    "--intermediate-size",
    "32",
    "--pooling-hidden-size",
    "8",
    "--projection-dim",
    "8",
    "--expert-hidden-size",
    "16",
]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Tiny encoders, a raw dataset, a features dataset, and broken variants of each."""
    root = tmp_path_factory.mktemp("cli-errors")
    audio, text = save_tiny_encoders(root)
    features = make_features_dataset(root / "features", audio, text)
    raw = make_raw_dataset(root / "raw")
    corrupt = root / "corrupt-bert"
    shutil.copytree(text, corrupt)
    weights = corrupt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated inside the header
    unknown = root / "unknown-type"
    shutil.copytree(text, unknown)
    config = json.loads((unknown / "config.json").read_text())
    (unknown / "config.json").write_text(json.dumps({**config, "model_type": "nonsense-encoder"}))
    moved = root / "features-moved-encoders"
    shutil.copytree(features, moved)
    metadata = json.loads((moved / "hilbert_features.json").read_text())
    metadata["encoders"]["audio"]["name_or_path"] = str(root / "gone" / "tiny-whisper")
    (moved / "hilbert_features.json").write_text(json.dumps(metadata))
    messy = make_messy_corpora(root / "messy")
    checkpoints = make_broken_checkpoints(root / "checkpoints")
    (root / "a-file").write_text("not a folder")
    (root / "tab.yaml").write_text("folds: 2\n\tseeds: 0\n")
    (root / "bad.yaml").write_text("folds: 2\nseeds: [0, 1\n")
    (root / "list.yaml").write_text("- folds\n- 2\n")
    (root / "typo.yaml").write_text("folds: 2\nlearnin_rate: 0.01\n")
    return {
        "root": root,
        "audio": audio,
        "text": text,
        "features": features,
        "raw": raw,
        "corrupt": corrupt,
        "unknown": unknown,
        "moved": moved,
        "messy": messy,
        **checkpoints,
    }


# ------------------------------------------------------------------------------------------- messy clinical data
SRT = "1\n00:00:00,100 --> 00:00:00,900\nP: good morning\n\n2\n00:00:01,000 --> 00:00:01,800\nI: how are you\n"
HEADER = "file_name,transcript,label,group"


def _wav(
    path: Path,
    seconds: float = 2.0,
    rate: int = 16000,
    channels: int = 1,
    subtype: str = "PCM_16",
    value: float | None = None,
) -> Path:
    import numpy as np
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    data = 0.1 * np.random.default_rng(len(path.name)).standard_normal((max(1, int(seconds * rate)), channels))
    if value is not None:
        data[len(data) // 2] = value
    sf.write(path, data.astype("float32"), rate, subtype=subtype)
    return path


def _corpus(
    root: Path,
    extra_rows: list[str] = (),
    header: str = HEADER,
    rows: list[str] | None = None,
    metadata: bytes | None = None,
) -> Path:
    """Four valid recordings (2 classes x 2 groups) + `extra_rows` (metadata lines 6, 7, ...), as metadata.csv."""
    for i in range(4):
        _wav(root / "audio" / f"r{i}.wav")
        (root / f"r{i}.srt").write_text(SRT, encoding="utf-8")
    base = [f"audio/r{i}.wav,r{i}.srt,{['calm', 'tense'][i % 2]},g{i}" for i in range(4)]
    text = "\n".join([header, *(base if rows is None else rows), *extra_rows]) + "\n"
    (root / "metadata.csv").write_bytes(metadata if metadata is not None else text.encode("utf-8"))
    return root


def make_messy_corpora(root: Path) -> dict[str, Path]:
    """What clinical corpora look like after exports from spreadsheets, ELAN, Praat and transcription services."""
    import subprocess as sp

    c = {}
    c["semicolons"] = _corpus(root / "semicolons")
    c["semicolons"].joinpath("metadata.csv").write_text(
        c["semicolons"].joinpath("metadata.csv").read_text().replace(",", ";")
    )
    c["utf16"] = _corpus(root / "utf16")
    c["utf16"].joinpath("metadata.csv").write_text(c["utf16"].joinpath("metadata.csv").read_text(), encoding="utf-16")
    excel = [
        f"audio/r{i}.wav,r{i}.srt,{['1', '1.0', ' 2 ', '2.0'][i]},{['TRUE', 'true', 'FALSE', 'False'][i]},g{i}"
        for i in range(4)
    ]
    c["excel"] = _corpus(
        root / "excel",
        rows=excel,
        header="file_name,transcript,label,label_flag,group",
        metadata=b"\xef\xbb\xbf"
        + ("\r\n".join(["file_name,transcript,label,label_flag,group", *excel]) + "\r\n").encode(),
    )
    c["jsonl"] = _corpus(root / "jsonl")
    c["jsonl"].joinpath("metadata.csv").unlink()
    c["jsonl"].joinpath("metadata.jsonl").write_text(
        "".join(
            json.dumps(
                {"file_name": f"audio/r{i}.wav", "transcript": f"r{i}.srt", "label": [1, 1.0, 2, 2.0][i], "group": i}
            )
            + "\n"
            for i in range(4)
        )
    )
    c["bool-and-number"] = _corpus(
        root / "bool-and-number", rows=[f"audio/r{i}.wav,r{i}.srt,{['1', 'TRUE', '0', '1'][i]},g{i}" for i in range(4)]
    )
    c["case"] = _corpus(
        root / "case",
        rows=[f"audio/r{i}.wav,r{i}.srt,{['Depressed', 'healthy', 'depressed', 'healthy'][i]},g{i}" for i in range(4)],
    )
    c["nan-label"] = _corpus(root / "nan-label", ["audio/n.wav,r0.srt,NaN,g9"])
    _wav(c["nan-label"] / "audio" / "n.wav")
    c["empty-label"] = _corpus(root / "empty-label", ["audio/n.wav,r0.srt,,g9"])
    _wav(c["empty-label"] / "audio" / "n.wav")
    c["unicode-names"] = _corpus(
        root / "unicode-names", ['"audio/Entretien été 1.wav","transcripts/séance 1.srt",calm,g9']
    )
    _wav(c["unicode-names"] / "audio" / "Entretien été 1.wav")
    (c["unicode-names"] / "transcripts").mkdir()
    (c["unicode-names"] / "transcripts" / "séance 1.srt").write_text(SRT, encoding="utf-8")
    c["sample-rates"] = _corpus(
        root / "sample-rates",
        ["audio/a.wav,r0.srt,calm,g7", "audio/b.wav,r1.srt,tense,g8", "audio/c.flac,r2.srt,calm,g9"],
    )
    _wav(c["sample-rates"] / "audio" / "a.wav", rate=8000)
    _wav(c["sample-rates"] / "audio" / "b.wav", rate=44100, channels=2)
    _wav(c["sample-rates"] / "audio" / "c.flac", rate=48000, subtype="PCM_24")
    if shutil.which("ffmpeg"):
        c["upper-mp3"] = _corpus(root / "upper-mp3", ["audio/X.MP3,r0.srt,calm,g9"])
        sp.run(
            [
                "ffmpeg",
                "-y",
                "-loglevel",
                "error",
                "-i",
                str(_wav(root / "src.wav")),
                "-f",
                "mp3",
                str(c["upper-mp3"] / "audio" / "X.MP3"),
            ],
            check=True,
            timeout=60,
        )
    c["folder-as-file"] = _corpus(root / "folder-as-file", ["audio/,r0.srt,calm,g9"])
    c["backslashes"] = _corpus(root / "backslashes", ["audio\\r1.wav,r0.srt,calm,g9"])
    c["zero-byte-transcript"] = _corpus(root / "zero-byte-transcript", ["audio/n.wav,empty.srt,calm,g9"])
    _wav(c["zero-byte-transcript"] / "audio" / "n.wav")
    (c["zero-byte-transcript"] / "empty.srt").write_bytes(b"")
    c["utf16-transcript"] = _corpus(root / "utf16-transcript", ["audio/n.wav,w.srt,calm,g9"])
    _wav(c["utf16-transcript"] / "audio" / "n.wav")
    (c["utf16-transcript"] / "w.srt").write_text(SRT, encoding="utf-16")
    c["elan-txt"] = _corpus(root / "elan-txt", ["audio/n.wav,n.txt,calm,g9"])
    _wav(c["elan-txt"] / "audio" / "n.wav")
    (c["elan-txt"] / "n.txt").write_text("P\t00:00:00.100\t00:00:00.900\tgood morning\n")
    c["praat"] = _corpus(root / "praat", ["audio/n.wav,n.TextGrid,calm,g9"])
    _wav(c["praat"] / "audio" / "n.wav")
    (c["praat"] / "n.TextGrid").write_text('File type = "ooTextFile"\nObject class = "TextGrid"\n')
    c["milliseconds"] = _corpus(root / "milliseconds", ["audio/n.wav,ms.json,calm,g9"])
    _wav(c["milliseconds"] / "audio" / "n.wav")
    (c["milliseconds"] / "ms.json").write_text(
        json.dumps(
            {
                "segments": [
                    {"start": 100, "end": 900, "text": "good morning"},
                    {"start": 1000, "end": 1800, "text": "hi"},
                ]
            }
        )
    )
    c["foreign-transcript"] = _corpus(root / "foreign-transcript", ["audio/short.wav,r0.srt,calm,g9"])
    _wav(c["foreign-transcript"] / "audio" / "short.wav", seconds=0.05)
    c["truncated-flac"] = _corpus(root / "truncated-flac", ["audio/cut.flac,r0.srt,calm,g9"])
    flac = _wav(c["truncated-flac"] / "audio" / "cut.flac")
    flac.write_bytes(flac.read_bytes()[: flac.stat().st_size // 2])
    c["nan-samples"] = _corpus(root / "nan-samples", ["audio/nan.wav,r0.srt,calm,g9"])
    _wav(c["nan-samples"] / "audio" / "nan.wav", rate=48000, channels=2, subtype="FLOAT", value=float("nan"))
    c["xlsx-only"] = _corpus(root / "xlsx-only")
    c["xlsx-only"].joinpath("metadata.csv").rename(c["xlsx-only"] / "metadata.xlsx")
    c["overlap"] = _corpus(root / "overlap", ["audio/n.wav,crosstalk.srt,calm,g9"])
    _wav(c["overlap"] / "audio" / "n.wav")
    (c["overlap"] / "crosstalk.srt").write_text(SRT.replace("00:00:01,000 -->", "00:00:00,500 -->"))
    return c


def make_broken_checkpoints(root: Path) -> dict[str, Path]:
    """A HILBERT checkpoint saved by save_pretrained, cut short, and with a head tensor removed."""
    import torch
    from safetensors.torch import load_file, save_file
    from tiny_models import hilbert_config

    from modeling_hilbert import HilbertForSequenceClassification

    torch.manual_seed(0)
    full = root / "full"
    HilbertForSequenceClassification(hilbert_config("whisper", "bert")).save_pretrained(full)
    cut = root / "cut"
    shutil.copytree(full, cut)
    (cut / "model.safetensors").write_bytes((full / "model.safetensors").read_bytes()[:-100])
    headless = root / "headless"
    shutil.copytree(full, headless)
    tensors = load_file(full / "model.safetensors")
    save_file(
        {k: v for k, v in tensors.items() if not k.startswith("hilbert.audio_projection.")},
        headless / "model.safetensors",
        metadata={"format": "pt"},
    )
    return {"ckpt_cut": cut, "ckpt_headless": headless}


def invoke(main, argv: list[str], capsys, with_stdout: bool = False) -> tuple[int, str]:
    """Run a CLI's main in this process: (exit code, stderr [+ stdout]). argparse's own errors exit through
    SystemExit."""
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.err + (captured.out if with_stdout else "")


def train_args(w, *extra, features=None):
    return [
        "--features",
        str(features or w["features"]),
        "--output-dir",
        str(w["root"] / "out-train"),
        "--folds",
        "2",
        "--seeds",
        "0",
        "--num-train-epochs",
        "1",
        "--report-to",
        "none",
        "--final-model",
        "false",
        *TINY_HEAD,
        *extra,
    ]


def extract_args(w, *extra, audio=None, text=None, dataset=None, output=None):
    output = output or w["root"] / "out-extract"
    return [
        "--dataset",
        str(dataset or w["raw"]),
        "--output-dir",
        str(output),
        "--audio-encoder",
        str(audio or w["audio"]),
        "--text-encoder",
        str(text or w["text"]),
        "--no-progress",
        *extra,
    ]


# (id, tool, argv(world), exit code, phrase)
CASES = [
    # ------------------------------------------------------------------ train.py
    (
        "train: YAML syntax error",
        "train",
        lambda w: ["--config", str(w["root"] / "bad.yaml"), *train_args(w)],
        2,
        "bad.yaml:2: not valid YAML",
    ),
    (
        "train: YAML not a mapping",
        "train",
        lambda w: ["--config", str(w["root"] / "list.yaml"), *train_args(w)],
        2,
        "expected `option: value` lines",
    ),
    (
        "train: YAML unknown key",
        "train",
        lambda w: ["--config", str(w["root"] / "typo.yaml"), *train_args(w)],
        2,
        "unknown keys ['learnin_rate']",
    ),
    (
        "train: missing --config file",
        "train",
        lambda w: ["--config", str(w["root"] / "nope.yaml"), *train_args(w)],
        2,
        "nope.yaml: no such file",
    ),
    (
        "train: --seeds a,b",
        "train",
        lambda w: train_args(w, "--seeds", "a,b"),
        2,
        "--seeds takes comma-separated integers",
    ),
    (
        "train: negative learning rate",
        "train",
        lambda w: train_args(w, "--learning-rate", "-0.1"),
        2,
        "--learning-rate must be a number > 0",
    ),
    (
        "train: zero epochs",
        "train",
        lambda w: train_args(w, "--num-train-epochs", "0"),
        2,
        "--num-train-epochs must be a number > 0",
    ),
    (
        "train: an EMA decay of 1",
        "train",
        lambda w: train_args(w, "--ema-decay", "1"),
        2,
        "--ema-decay must be at least 0 (off) and below 1",
    ),
    (
        "train: --folds larger than the groups",
        "train",
        lambda w: train_args(w, "--folds", "20"),
        2,
        "20 folds need at least 20 groups, but the documents have 12",
    ),
    ("train: --folds 1", "train", lambda w: train_args(w, "--folds", "1"), 2, "--folds must be at least 2"),
    (
        "train: --modalities typo",
        "train",
        lambda w: train_args(w, "--modalities", "audoi"),
        2,
        "invalid choice: 'audoi'",
    ),
    (
        "train: malformed --task-types",
        "train",
        lambda w: train_args(w, "--task-types", "risk"),
        2,
        "--task-types takes task=type pairs",
    ),
    (
        "train: unknown task type",
        "train",
        lambda w: train_args(w, "--task-types", "risk=binry"),
        2,
        "type one of multiclass, binary, multilabel",
    ),
    (
        "train: unknown --variants",
        "train",
        lambda w: train_args(w, "--variants", "HILBERT,audio-olny"),
        2,
        "unknown variant(s) ['audio-olny']",
    ),
    (
        "train: impossible head size",
        "train",
        lambda w: train_args(w, "--hidden-size", "0"),
        2,
        "hidden_size must be a positive integer",
    ),
    (
        "train: heads not dividing the width",
        "train",
        lambda w: train_args(w, "--num-attention-heads", "3"),
        2,
        "must be divisible by num_attention_heads",
    ),
    (
        "train: raw dataset as --features",
        "train",
        lambda w: train_args(w, features=w["raw"]),
        2,
        "is a corpus dataset made by build_dataset.py, not cached features",
    ),
    (
        "train: missing features folder",
        "train",
        lambda w: train_args(w, features=w["root"] / "no-features"),
        2,
        "no such folder",
    ),
    (
        "train: features whose encoders are gone",
        "train",
        lambda w: train_args(w, features=w["moved"]),
        2,
        "the features' audio encoder",
    ),
    ("train: missing --output-dir", "train", lambda w: ["--features", str(w["features"])], 2, "missing --output-dir"),
    # ------------------------------------------------------------------ extract_features.py
    (
        "extract: missing dataset folder",
        "extract",
        lambda w: extract_args(w, dataset=w["root"] / "no-dataset"),
        2,
        "--dataset",
    ),
    (
        "extract: corrupt model.safetensors",
        "extract",
        lambda w: extract_args(w, text=w["corrupt"]),
        2,
        "model.safetensors is damaged",
    ),
    ("extract: unknown model_type", "extract", lambda w: extract_args(w, text=w["unknown"]), 2, "--text-encoder"),
    (
        "extract: typo in an encoder folder",
        "extract",
        lambda w: extract_args(w, audio=str(w["audio"]) + "x"),
        2,
        "no such folder",
    ),
    (
        "extract: unknown offline name",
        "extract",
        lambda w: extract_args(w, text="offline:all-MiniLM-L7"),
        2,
        "Unknown offline encoder",
    ),
    ("extract: --device typo", "extract", lambda w: extract_args(w, "--device", "cdua"), 2, "is not a torch device"),
    (
        "extract: --max-segments 0",
        "extract",
        lambda w: extract_args(w, "--max-segments", "0"),
        2,
        "--max-segments must be an integer > 0",
    ),
    (
        "extract: --encoder-batch-size 0",
        "extract",
        lambda w: extract_args(w, "--encoder-batch-size", "0"),
        2,
        "expected a positive integer or 'auto'",
    ),
    (
        "extract: --model folder missing",
        "extract",
        lambda w: [
            "--dataset",
            str(w["raw"]),
            "--output-dir",
            str(w["root"] / "o"),
            "--model",
            str(w["root"] / "nomodel"),
        ],
        2,
        "no such folder",
    ),
    # ------------------------------------------------------------------ build_dataset.py
    (
        "build: missing input folder",
        "build",
        lambda w: ["--input", str(w["root"] / "no-corpus"), "--output-dir", str(w["root"] / "b1"), "--no-progress"],
        2,
        "the input folder does not exist",
    ),
    (
        "build: --folds 1",
        "build",
        lambda w: [
            "--input",
            str(w["root"] / "raw" / "corpus"),
            "--output-dir",
            str(w["root"] / "b2"),
            "--folds",
            "1",
            "--no-progress",
        ],
        2,
        "at least 2 folds",
    ),
    (
        "build: negative --tolerance",
        "build",
        lambda w: [
            "--input",
            str(w["root"] / "raw" / "corpus"),
            "--output-dir",
            str(w["root"] / "b3"),
            "--tolerance",
            "-1",
            "--no-progress",
        ],
        2,
        "--tolerance must be a number >= 0",
    ),
]


def build_args(w, corpus: str, *extra):
    return [
        "--input",
        str(w["messy"][corpus]),
        "--output-dir",
        str(w["root"] / "built" / corpus),
        "--folds",
        "2",
        "--no-progress",
        *extra,
    ]


# Messy data, as clinical corpora arrive: one row per case (built in make_messy_corpora). Exit 0 rows check that
# what is handled is also said (the build summary).
CASES += [
    (
        "build: semicolon-separated metadata.csv (European Excel)",
        "build",
        lambda w: build_args(w, "semicolons"),
        2,
        "metadata.csv:1: the header is separated by semicolons (';'), not commas; export the sheet as comma-separated",
    ),
    (
        "build: UTF-16 metadata.csv (Excel 'Unicode Text')",
        "build",
        lambda w: build_args(w, "utf16"),
        2,
        "not UTF-8 but UTF-16",
    ),
    (
        "build: Excel CSV with BOM, CRLF, 1.0 and TRUE/true",
        "build",
        lambda w: build_args(w, "excel"),
        0,
        "Normalised 'label' spellings: '1.0' -> '1' (1 rows), '2.0' -> '2' (1 rows). "
        "Normalised 'label_flag' spellings:",
    ),
    (
        "build: JSONL labels 1 and 1.0",
        "build",
        lambda w: build_args(w, "jsonl"),
        0,
        "Normalised 'label' spellings: '1.0' -> '1' (1 rows), '2.0' -> '2' (1 rows).",
    ),
    (
        "build: a label column mixing 1 and TRUE",
        "build",
        lambda w: build_args(w, "bool-and-number"),
        2,
        "column 'label' mixes numbers ('1' on line 2) and true/false ('true' on lines 3)",
    ),
    (
        "build: 'Depressed' and 'depressed'",
        "build",
        lambda w: build_args(w, "case"),
        2,
        "spells one class in several ways that differ only in case ('Depressed' on lines 2; 'depressed' on lines 4)",
    ),
    (
        "build: a NaN label (pandas export)",
        "build",
        lambda w: build_args(w, "nan-label"),
        2,
        "metadata.csv:6: id 'n': label 'NaN' is not a class",
    ),
    ("build: an empty label cell", "build", lambda w: build_args(w, "empty-label"), 2, "id 'n': empty 'label'"),
    (
        "build: file names with spaces and accents",
        "build",
        lambda w: build_args(w, "unicode-names"),
        0,
        "Built 5 of 5 rows",
    ),
    (
        "build: 8 kHz, 44.1 kHz stereo and 48 kHz FLAC in one corpus",
        "build",
        lambda w: build_args(w, "sample-rates"),
        0,
        "Built 7 of 7 rows",
    ),
    ("build: an .MP3 upper-case extension", "build", lambda w: build_args(w, "upper-mp3"), 0, "Built 5 of 5 rows"),
    (
        "build: a folder where the audio file should be",
        "build",
        lambda w: build_args(w, "folder-as-file"),
        2,
        "file_name 'audio/' is a folder, not a file",
    ),
    (
        "build: Windows backslashes in file_name",
        "build",
        lambda w: build_args(w, "backslashes"),
        2,
        "(Windows paths: write folders with '/', e.g. audio/r1.wav)",
    ),
    (
        "build: a zero-byte transcript",
        "build",
        lambda w: build_args(w, "zero-byte-transcript"),
        2,
        "empty.srt: no segments; a recording needs at least one transcript turn",
    ),
    # a UTF-16 file with its BOM (Windows Notepad's "Unicode") is decoded: a reported handling, not an error
    (
        "build: a UTF-16 transcript (Windows Notepad 'Unicode') is read",
        "build",
        lambda w: build_args(w, "utf16-transcript"),
        0,
        "Built 5 of 5 rows",
    ),
    (
        "build: an ELAN tab-delimited export (no header) as transcript",
        "build",
        lambda w: build_args(w, "elan-txt"),
        2,
        "n.txt:1: the first line is not a recognised header",
    ),
    (
        "build: a cut-off Praat TextGrid",
        "build",
        lambda w: build_args(w, "praat"),
        2,
        "n.TextGrid:3: the file ends where the TextGrid's start time (xmin) was expected",
    ),
    (
        "build: a transcription service's JSON in milliseconds",
        "build",
        lambda w: build_args(w, "milliseconds"),
        2,
        "goes past the end of the audio",
    ),
    (
        "build: the transcript of another (shorter) recording",
        "build",
        lambda w: build_args(w, "foreign-transcript"),
        2,
        "is this the transcript of another recording?",
    ),
    (
        "build: a truncated FLAC",
        "build",
        lambda w: build_args(w, "truncated-flac"),
        2,
        "audio 'audio/cut.flac' cannot be decoded to its end",
    ),
    (
        "build: NaN samples in a 48 kHz stereo float WAV",
        "build",
        lambda w: build_args(w, "nan-samples"),
        2,
        "holds NaN/inf samples (the first at 1.000 s)",
    ),
    (
        "build: metadata.xlsx instead of metadata.csv",
        "build",
        lambda w: build_args(w, "xlsx-only"),
        2,
        "no metadata.csv or metadata.jsonl in the input folder",
    ),
    (
        "build: crosstalk (overlapping turns) by default",
        "build",
        lambda w: build_args(w, "overlap"),
        2,
        "before segment 0 ends",
    ),
    (
        "build: crosstalk with --overlap allow",
        "build",
        lambda w: build_args(w, "overlap", "--overlap", "allow"),
        0,
        "Kept 1 overlapping segments in 1 recordings (--overlap allow).",
    ),
    (
        "build: --output-dir is a file",
        "build",
        lambda w: ["--input", str(w["messy"]["excel"]), "--output-dir", str(w["root"] / "a-file"), "--no-progress"],
        2,
        "the output path is a file; choose a folder",
    ),
    (
        "extract: --dataset is the corpus folder, not a build",
        "extract",
        lambda w: extract_args(w, dataset=w["messy"]["excel"]),
        2,
        "not a dataset saved with save_to_disk",
    ),
    (
        "extract: --model with a truncated model.safetensors",
        "extract",
        lambda w: ["--dataset", str(w["raw"]), "--output-dir", str(w["root"] / "o1"), "--model", str(w["ckpt_cut"])],
        2,
        "model.safetensors is damaged or incomplete (Error while deserializing header",
    ),
    (
        "extract: --model missing head tensors",
        "extract",
        lambda w: [
            "--dataset",
            str(w["raw"]),
            "--output-dir",
            str(w["root"] / "o2"),
            "--model",
            str(w["ckpt_headless"]),
        ],
        2,
        "6 head tensor(s) are missing (audio_projection.linear.bias, audio_projection.linear.weight",
    ),
    (
        "extract: --output-dir is a file",
        "extract",
        lambda w: extract_args(w, output=w["root"] / "a-file"),
        2,
        "--output-dir " + "{root}/a-file is a file; choose a folder",
    ),
    (
        "train: a tab in the YAML file",
        "train",
        lambda w: ["--config", str(w["root"] / "tab.yaml"), *train_args(w)],
        2,
        "tab.yaml:2: not valid YAML",
    ),
    (
        "train: --config is a folder",
        "train",
        lambda w: ["--config", str(w["root"]), *train_args(w)],
        2,
        "cannot be read",
    ),
    (
        "train: --output-dir is a file",
        "train",
        lambda w: [*train_args(w), "--output-dir", str(w["root"] / "a-file")],
        2,
        "--output-dir " + "{root}/a-file is a file; choose a folder",
    ),
]
MAINS = {"train": train_cli.main, "extract": extract_cli.main, "build": build_cli.main}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_one_clear_paragraph(case, world, capsys):
    _, tool, argv, expected_code, phrase = case
    import torch

    threads = torch.get_num_threads()
    if ".MP3" in case[0] and "upper-mp3" not in world["messy"]:
        pytest.skip("ffmpeg is not installed")
    try:
        code, said = invoke(MAINS[tool], [str(a) for a in argv(world)], capsys, with_stdout=True)
    finally:
        torch.set_num_threads(threads)
    assert code == expected_code, said
    assert phrase.format(root=world["root"]) in " ".join(said.split()), said  # the message may be wrapped
    assert "Traceback" not in said


def test_the_table_catches_a_traceback(world, capsys, monkeypatch):
    """The table can fail: a bug (not a UserError) keeps its traceback and is not turned into exit code 2."""
    monkeypatch.setattr(train_cli, "run", lambda *a: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        train_cli.main(train_args(world))


def _child_env():
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def _sigint_at_default():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_is_one_line_not_a_traceback(world):
    """SIGINT while training: exit code 2, a one-paragraph 'interrupted' message saying how to resume."""
    out = world["root"] / "out-interrupt"
    command = [
        sys.executable,
        str(REPO / "train.py"),
        *train_args(world, "--seeds", "0,1,2,3", "--num-train-epochs", "50"),
        "--output-dir",
        str(out),
    ]
    # Ctrl-C as a terminal user sends it: the child starts with SIGINT at its default. A harness that runs the suite
    # in the background (a non-interactive shell's `cmd &`, as CI does) starts it ignored, which every child inherits
    # across exec, and Python then installs no KeyboardInterrupt handler: the run would finish with code 0.
    child = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_child_env(),
        preexec_fn=_sigint_at_default,
    )
    for line in child.stdout:  # wait until training has started
        if line.startswith("[HILBERT]"):
            break
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 2, err
    flat = " ".join(err.split())
    assert "interrupted" in flat and "re-run the same command" in flat and "Traceback" not in err


def test_full_disk_while_building_is_one_paragraph(world, tmp_path):
    """A file-size limit (what a full disk looks like to a writer) inside datasets' writer: no traceback."""
    import resource

    def limit():  # 64 KiB per file: the dataset's Arrow file cannot be written
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    command = [
        sys.executable,
        str(REPO / "dataset_scripts" / "build_dataset.py"),
        "--input",
        str(world["root"] / "raw" / "corpus"),
        "--output-dir",
        str(tmp_path / "full"),
        "--folds",
        "2",
        "--no-progress",
    ]
    child = subprocess.run(command, capture_output=True, text=True, env=_child_env(), preexec_fn=limit, timeout=300)
    assert child.returncode == 2, child.stderr
    assert "cannot write" in " ".join(child.stderr.split()) and "Traceback" not in child.stderr


# ------------------------------------------------------------------------------------------- one run per output folder
HOLD_LOCK = """
import sys, time
from hilbert_app.output_lock import lock_output
lock = lock_output(sys.argv[1], "--output-dir")
print("locked", flush=True)
time.sleep(120)
"""


def _hold_lock(folder: Path) -> subprocess.Popen:
    """Another process holding the output lock of `folder`, as a running extraction or training does."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(folder)], stdout=subprocess.PIPE, text=True, env=_child_env()
    )
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_second_extraction_into_a_folder_being_written_is_refused_then_a_dead_lock_is_taken_over(world, capsys):
    """Two real processes: while one holds the folder, `extract_features.py` (a subprocess, as a user runs it) stops at
    once naming the holder, and touches nothing; once the holder is SIGKILLed, its lock is taken over."""
    import socket

    out = world["root"] / "out-locked"
    holder = _hold_lock(out)
    try:
        script = REPO / "dataset_scripts" / "extract_features.py"
        command = [sys.executable, str(script), *extract_args(world, output=out)]
        child = subprocess.run(command, capture_output=True, text=True, env=_child_env(), timeout=300)
        assert child.returncode == 2, child.stderr
        flat = " ".join(child.stderr.split())
        assert f"--output-dir {out} is being written by process {holder.pid} on {socket.gethostname()} since" in flat
        assert "wait for it to finish or choose another --output-dir" in flat and "Traceback" not in child.stderr
        assert [p.name for p in out.iterdir()] == [".hilbert-lock"]  # nothing else was written
    finally:
        holder.kill()
        holder.wait()
    code, err = invoke(extract_cli.main, extract_args(world, output=out), capsys)
    assert code == 0, err
    assert f"taking over the lock left by process {holder.pid}" in err and "which is no longer running" in err
    from hilbert_app.features.store import load_features

    features, _ = load_features(out)
    assert features["train"].num_rows == 12 and not (out / ".hilbert-lock").exists()


def test_a_second_training_into_a_folder_being_written_is_refused(world, capsys):
    out = world["root"] / "out-train-locked"
    holder = _hold_lock(out)
    try:
        code, err = invoke(train_cli.main, [*train_args(world), "--output-dir", str(out)], capsys)
    finally:
        holder.kill()
        holder.wait()
    assert code == 2, err
    assert f"--output-dir {out} is being written by process {holder.pid} on" in " ".join(err.split())
    assert not (out / "runs").exists()


# ------------------------------------------------------------------------------------------- resume only what matches
def test_training_into_the_folder_of_another_corpus_is_refused_and_overwrite_redoes_it(world, capsys):
    """It used to say "done earlier (skipped)" and write the other corpus's metrics.json byte for byte."""
    import torch

    other = make_features_dataset(world["root"] / "features-other", world["audio"], world["text"], seed=1)
    metadata = json.loads((other / "hilbert_features.json").read_text())  # as extract_features.py records it
    (other / "hilbert_features.json").write_text(json.dumps({**metadata, "source_dataset": {"path": "other/corpus"}}))
    out = world["root"] / "out-provenance"

    def train(*extra, features=None):
        """-> (exit code, stdout + stderr) of train.py in this process."""
        threads = torch.get_num_threads()
        try:
            code = train_cli.main([*train_args(world, *extra, features=features), "--output-dir", str(out)])
        finally:
            torch.set_num_threads(threads)
        captured = capsys.readouterr()
        return code, " ".join((captured.out + captured.err).split())

    assert train()[0] == 0
    first = (out / "metrics.json").read_bytes()
    code, said = train(features=other)
    assert code == 2, said
    assert "holds the finished run of another experiment: it differs in the data (another features" in said, said
    assert "the documents of the training split (another corpus, or other folds)" in said
    assert f"Pass --overwrite to discard the earlier runs of {out}" in said and "Traceback" not in said
    assert (out / "metrics.json").read_bytes() == first  # refused before anything was written
    code, said = train("--learning-rate", "0.002")
    assert code == 2 and "trainer settings learning_rate 0.001 then, 0.002 now" in said, said
    code, said = train("--overwrite", features=other)
    assert code == 0 and f"--overwrite: discarded the earlier runs in {out / 'runs'}" in said, said
    assert (out / "metrics.json").read_bytes() != first
    code, said = train(features=other)  # the same command again: the runs are reused
    assert code == 0 and "done earlier (skipped)" in said
