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

from hilbert_app.cli import build_dataset as build_cli
from hilbert_app.cli import extract_features as extract_cli
from hilbert_app.cli import train as train_cli
from synthetic import make_features_dataset, make_raw_dataset, save_tiny_encoders

REPO = Path(__file__).resolve().parents[1]
TINY_HEAD = ["--hidden-size", "16", "--num-attention-heads", "2", "--intermediate-size", "32", "--pooling-hidden-size",
             "8", "--projection-dim", "8", "--expert-hidden-size", "16"]


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
    (root / "bad.yaml").write_text("cv: 2\nseeds: [0, 1\n")
    (root / "list.yaml").write_text("- cv\n- 2\n")
    (root / "typo.yaml").write_text("cv: 2\nlearnin_rate: 0.01\n")
    return {"root": root, "audio": audio, "text": text, "features": features, "raw": raw, "corrupt": corrupt,
            "unknown": unknown, "moved": moved}


def invoke(main, argv: list[str], capsys) -> tuple[int, str]:
    """Run a CLI's main in this process: (exit code, stderr). argparse's own errors exit through SystemExit."""
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


def train_args(w, *extra, features=None):
    return ["--features", str(features or w["features"]), "--output-dir", str(w["root"] / "out-train"), "--cv", "2",
            "--seeds", "0", "--num-train-epochs", "1", "--report-to", "none", "--final-model", "false", *TINY_HEAD,
            *extra]


def extract_args(w, *extra, audio=None, text=None, dataset=None, output=None):
    return ["--dataset", str(dataset or w["raw"]), "--output", str(output or w["root"] / "out-extract"), "--audio-encoder",
            str(audio or w["audio"]), "--text-encoder", str(text or w["text"]), "--no-progress", *extra]


# (id, tool, argv(world), exit code, phrase)
CASES = [
    # ------------------------------------------------------------------ train.py
    ("train: YAML syntax error", "train", lambda w: ["--config", str(w["root"] / "bad.yaml"), *train_args(w)], 2,
     "bad.yaml:2: not valid YAML"),
    ("train: YAML not a mapping", "train", lambda w: ["--config", str(w["root"] / "list.yaml"), *train_args(w)], 2,
     "expected `option: value` lines"),
    ("train: YAML unknown key", "train", lambda w: ["--config", str(w["root"] / "typo.yaml"), *train_args(w)], 2,
     "unknown keys ['learnin_rate']"),
    ("train: missing --config file", "train", lambda w: ["--config", str(w["root"] / "nope.yaml"), *train_args(w)], 2,
     "nope.yaml: no such file"),
    ("train: --seeds a,b", "train", lambda w: train_args(w, "--seeds", "a,b"), 2,
     "--seeds takes comma-separated integers"),
    ("train: negative learning rate", "train", lambda w: train_args(w, "--learning-rate", "-0.1"), 2,
     "--learning-rate must be a number > 0"),
    ("train: zero epochs", "train", lambda w: train_args(w, "--num-train-epochs", "0"), 2,
     "--num-train-epochs must be a number > 0"),
    ("train: --cv larger than the groups", "train", lambda w: train_args(w, "--cv", "20"), 2,
     "20 folds need at least 20 groups, but the documents have 12"),
    ("train: --cv 1", "train", lambda w: train_args(w, "--cv", "1"), 2, "--cv must be at least 2"),
    ("train: --modalities typo", "train", lambda w: train_args(w, "--modalities", "audoi"), 2,
     "invalid choice: 'audoi'"),
    ("train: malformed --task-types", "train", lambda w: train_args(w, "--task-types", "risk"), 2,
     "--task-types takes task=type pairs"),
    ("train: unknown task type", "train", lambda w: train_args(w, "--task-types", "risk=binry"), 2,
     "type one of multiclass, binary, multilabel"),
    ("train: unknown --variants", "train", lambda w: train_args(w, "--variants", "HILBERT,audio-olny"), 2,
     "unknown variant(s) ['audio-olny']"),
    ("train: impossible head size", "train", lambda w: train_args(w, "--hidden-size", "0"), 2,
     "hidden_size must be a positive integer"),
    ("train: heads not dividing the width", "train", lambda w: train_args(w, "--num-attention-heads", "3"), 2,
     "must be divisible by num_attention_heads"),
    ("train: raw dataset as --features", "train", lambda w: train_args(w, features=w["raw"]), 2,
     "is a corpus dataset made by build_dataset.py, not cached features"),
    ("train: missing features folder", "train", lambda w: train_args(w, features=w["root"] / "no-features"), 2,
     "no such folder"),
    ("train: features whose encoders are gone", "train", lambda w: train_args(w, features=w["moved"]), 2,
     "the features' audio encoder"),
    ("train: missing --output-dir", "train", lambda w: ["--features", str(w["features"])], 2, "missing --output-dir"),
    # ------------------------------------------------------------------ extract_features.py
    ("extract: missing dataset folder", "extract", lambda w: extract_args(w, dataset=w["root"] / "no-dataset"), 2,
     "--dataset"),
    ("extract: corrupt model.safetensors", "extract", lambda w: extract_args(w, text=w["corrupt"]), 2,
     "model.safetensors is damaged"),
    ("extract: unknown model_type", "extract", lambda w: extract_args(w, text=w["unknown"]), 2,
     "--text-encoder"),
    ("extract: typo in an encoder folder", "extract", lambda w: extract_args(w, audio=str(w["audio"]) + "x"), 2,
     "no such folder"),
    ("extract: unknown offline name", "extract", lambda w: extract_args(w, text="offline:all-MiniLM-L7"), 2,
     "Unknown offline encoder"),
    ("extract: --device typo", "extract", lambda w: extract_args(w, "--device", "cdua"), 2,
     "is not a torch device"),
    ("extract: --max-segments 0", "extract", lambda w: extract_args(w, "--max-segments", "0"), 2,
     "--max-segments must be an integer > 0"),
    ("extract: --encoder-batch-size 0", "extract", lambda w: extract_args(w, "--encoder-batch-size", "0"), 2,
     "expected a positive integer or 'auto'"),
    ("extract: --model folder missing", "extract",
     lambda w: ["--dataset", str(w["raw"]), "--output", str(w["root"] / "o"), "--model", str(w["root"] / "nomodel")], 2,
     "no such folder"),
    # ------------------------------------------------------------------ build_dataset.py
    ("build: missing input folder", "build",
     lambda w: ["--input", str(w["root"] / "no-corpus"), "--output", str(w["root"] / "b1"), "--no-progress"], 2,
     "the input folder does not exist"),
    ("build: --folds 1", "build",
     lambda w: ["--input", str(w["root"] / "raw" / "corpus"), "--output", str(w["root"] / "b2"), "--folds", "1",
                "--no-progress"], 2, "at least 2 folds"),
    ("build: negative --tolerance", "build",
     lambda w: ["--input", str(w["root"] / "raw" / "corpus"), "--output", str(w["root"] / "b3"), "--tolerance", "-1",
                "--no-progress"], 2, "--tolerance must be a number >= 0"),
]
MAINS = {"train": train_cli.main, "extract": extract_cli.main, "build": build_cli.main}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_one_clear_paragraph(case, world, capsys):
    _, tool, argv, expected_code, phrase = case
    import torch

    threads = torch.get_num_threads()
    try:
        code, err = invoke(MAINS[tool], [str(a) for a in argv(world)], capsys)
    finally:
        torch.set_num_threads(threads)
    assert code == expected_code, err
    assert phrase in " ".join(err.split()), err  # the message may be wrapped
    assert "Traceback" not in err


def test_the_table_catches_a_traceback(world, capsys, monkeypatch):
    """The table can fail: a bug (not a UserError) keeps its traceback and is not turned into exit code 2."""
    monkeypatch.setattr(train_cli, "run", lambda *a: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        train_cli.main(train_args(world))


def _child_env():
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def test_ctrl_c_is_one_line_not_a_traceback(world):
    """SIGINT while training: exit code 2, a one-paragraph 'interrupted' message saying how to resume."""
    out = world["root"] / "out-interrupt"
    command = [sys.executable, str(REPO / "train.py"), *train_args(world, "--seeds", "0,1,2,3", "--num-train-epochs", "50"),
               "--output-dir", str(out)]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_child_env())
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

    command = [sys.executable, str(REPO / "dataset_scripts" / "build_dataset.py"), "--input",
               str(world["root"] / "raw" / "corpus"), "--output", str(tmp_path / "full"), "--folds", "2", "--no-progress"]
    child = subprocess.run(command, capture_output=True, text=True, env=_child_env(), preexec_fn=limit, timeout=300)
    assert child.returncode == 2, child.stderr
    assert "cannot write" in " ".join(child.stderr.split()) and "Traceback" not in child.stderr


# ------------------------------------------------------------------------------------------- one run per output folder
HOLD_LOCK = """
import sys, time
from hilbert_app.output_lock import lock_output
lock = lock_output(sys.argv[1], "--output")
print("locked", flush=True)
time.sleep(120)
"""


def _hold_lock(folder: Path) -> subprocess.Popen:
    """Another process holding the output lock of `folder`, as a running extraction or training does."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(folder)], stdout=subprocess.PIPE, text=True,
                              env=_child_env())
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_second_extraction_into_a_folder_being_written_is_refused_then_a_dead_lock_is_taken_over(world, capsys):
    """Two real processes: while one holds the folder, `extract_features.py` (a subprocess, as a user runs it) stops at
    once naming the holder, and touches nothing; once the holder is SIGKILLed, its lock is taken over."""
    import socket

    out = world["root"] / "out-locked"
    holder = _hold_lock(out)
    try:
        command = [sys.executable, str(REPO / "dataset_scripts" / "extract_features.py"), *extract_args(world, output=out)]
        child = subprocess.run(command, capture_output=True, text=True, env=_child_env(), timeout=300)
        assert child.returncode == 2, child.stderr
        flat = " ".join(child.stderr.split())
        assert f"--output {out} is being written by process {holder.pid} on {socket.gethostname()} since" in flat
        assert "wait for it to finish or choose another --output" in flat and "Traceback" not in child.stderr
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
    assert code == 2 and "holds the finished run of another experiment: it differs in the data (another features" in said, said
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
