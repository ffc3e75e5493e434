"""Faults: SIGKILL then the same command again, atomic outputs, read-only and full output folders, determinism.

The CLIs run as real child processes. A kill is a real SIGKILL that the child sends itself just before the k-th
call of a chosen function (a row written to a shard, a rename, a `torch.save` of a checkpoint, the final processor
save): k comes from a seeded generator and is printed, so a failure replays exactly, and unlike a timer the kill
lands inside the work on a loaded machine. Write errors are honest too: the child drops root privileges (these
tests run as root, for whom chmod blocks nothing) or runs under RLIMIT_FSIZE, so the OS refuses the writes.

Everything lives in one folder under /tmp, removed at the end.
"""

from __future__ import annotations

import errno
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
from synthetic import make_features_dataset, make_raw_dataset, save_tiny_encoders

from hilbert_app.safe_write import TMP_PREFIX, atomic_path, describe_write_error, move_into

REPO = Path(__file__).resolve().parent.parent
METADATA = "hilbert_features.json"

# Runs a script as __main__ after hooking functions: "module:attribute@k,..." sends SIGKILL to the process just
# before the k-th call of that function.
KILL_CHILD = r"""
import importlib, os, signal, sys, runpy
spec, script, *args = sys.argv[1:]
counts = {}
for item in filter(None, spec.split(",")):
    target, k = item.rsplit("@", 1)
    module_name, attribute = target.split(":")
    owner = importlib.import_module(module_name)
    *parents, name = attribute.split(".")
    for parent in parents:
        owner = getattr(owner, parent)
    def hooked(*a, _real=getattr(owner, name), _item=item, _k=int(k), **kw):
        counts[_item] = counts.get(_item, 0) + 1
        if counts[_item] == _k:
            print(f"SIGKILL before call {_k} of {_item.rsplit('@', 1)[0]}", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        return _real(*a, **kw)
    setattr(owner, name, hooked)
sys.argv = [script, *args]
runpy.run_path(script, run_name="__main__")
"""


def run_cli(script: str, args: list[str], kill: str = "", env: dict | None = None, preexec=None, timeout: int = 300):
    """Run `script` (relative to the repository) with `args` in a child process, killed as `kill` says."""
    environment = dict(
        os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1", **(env or {})
    )
    command = [sys.executable, "-c", KILL_CHILD, kill, str(REPO / script), *args]
    print(f"$ {script} {' '.join(args)}   [kill: {kill or 'none'}]")
    return subprocess.run(
        command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=timeout, preexec_fn=preexec
    )


def obeying_permissions():
    """preexec_fn: the child keeps uid 0 but loses the capabilities that let root ignore file permissions
    (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER: dropped from the bounding set, so gone after exec), so a
    folder without write permission is as read-only for it as for any user. (Switching to the user nobody is not
    possible here: the interpreter lives under /root, which only root may enter.)"""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2, 3):
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def make_read_only(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)


def file_size_limit(limit: int):
    """preexec_fn: a full disk, as far as the child can tell: writes past `limit` bytes fail with EFBIG."""

    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the process instead of failing the write
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def count_calls(monkeypatch, owner, name: str) -> list[int]:
    """Count the calls of `owner.name` (in this process) into the returned one-item list."""
    count, real = [0], getattr(owner, name)

    def counted(*args, **kwargs):
        count[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return count


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def no_temporaries(folder: Path) -> list[str]:
    return [str(p) for p in folder.rglob(f"{TMP_PREFIX}*")]


# ------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("faults")


@pytest.fixture(scope="module")
def encoders(root):
    return tuple(str(p) for p in save_tiny_encoders(root / "encoders"))


@pytest.fixture(scope="module")
def raw_dataset(root):
    return make_raw_dataset(root / "raw", documents=12)


def extract_args(raw_dataset, encoders, out: Path, *extra) -> list[str]:
    return [
        "--dataset",
        str(raw_dataset),
        "--audio-encoder",
        encoders[0],
        "--text-encoder",
        encoders[1],
        "--output-dir",
        str(out),
        "--batch-documents",
        "2",
        "--shard-size",
        "2",
        "--no-progress",
        *extra,
    ]


@pytest.fixture(scope="module")
def features_reference(root, raw_dataset, encoders):
    """An uninterrupted extraction (in this process, the CLI's main) and how many rows and renames it wrote."""
    from datasets.arrow_writer import ArrowWriter

    from hilbert_app.cli.extract_features import main

    out = root / "features-reference" / "out"
    with pytest.MonkeyPatch.context() as monkeypatch:
        rows = count_calls(monkeypatch, ArrowWriter, "write")
        renames = count_calls(monkeypatch, os, "replace")
        assert main(extract_args(raw_dataset, encoders, out)) == 0
    return out, rows[0], renames[0]


def assert_same_features(reference: Path, out: Path) -> None:
    """Identical datasets: every split's Arrow table (ids, features, masks, labels), the fingerprint and the card."""
    expected, got = datasets.load_from_disk(str(reference)), datasets.load_from_disk(str(out))
    assert list(got) == list(expected)
    for split in expected:
        assert got[split]["id"] == expected[split]["id"]
        assert got[split].data.equals(expected[split].data), split
        assert got[split].info.description == expected[split].info.description
    assert (out / METADATA).read_bytes() == (reference / METADATA).read_bytes()
    assert (out / "README.md").read_bytes() == (reference / "README.md").read_bytes()
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in reference.iterdir())
    assert not (out / "_shards").exists() and not no_temporaries(out)


TRAIN_ARGS = [
    "--folds",
    "3",
    "--seeds",
    "0",
    "--num-train-epochs",
    "3",
    "--per-device-train-batch-size",
    "4",
    "--learning-rate",
    "3e-3",
    "--report-to",
    "none",
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
    "--num-experts",
    "3",
    "--expert-hidden-size",
    "16",
    "--variants",
    "audio-only,HILBERT",
]  # dropout stays on: RNG state matters


@pytest.fixture(scope="module")
def train_features(root, encoders):
    return make_features_dataset(root / "train-features", Path(encoders[0]), Path(encoders[1]))


def train_args(features: Path, out: Path) -> list[str]:
    return ["--features", str(features), "--output-dir", str(out), *TRAIN_ARGS]


def train_in_process(features: Path, out: Path, monkeypatch) -> dict:
    """train.py's main in this process (torch's thread count restored after); returns call counts."""
    import torch

    from hilbert_app.cli import train
    from hilbert_app.training import run as experiment_run

    threads = torch.get_num_threads()
    saves = count_calls(monkeypatch, torch, "save")
    before_final = []
    real_report = experiment_run.write_report

    def report_then_note(*args, **kwargs):  # the report is written between the CV runs and the final model
        before_final.append(saves[0])
        return real_report(*args, **kwargs)

    monkeypatch.setattr(experiment_run, "write_report", report_then_note)
    try:
        assert train.main(train_args(features, out)) == 0
    finally:
        torch.set_num_threads(threads)
    return {"torch_saves_in_cv": before_final[0], "torch_saves": saves[0]}


@pytest.fixture(scope="module")
def train_reference(root, train_features):
    out = root / "train-reference" / "out"
    with pytest.MonkeyPatch.context() as monkeypatch:
        counts = train_in_process(train_features, out, monkeypatch)
    return out, counts


def run_results(out: Path) -> dict:
    """Each run's held-out metrics and out-of-fold probabilities (the log history holds run times: left out)."""
    results = {}
    for path in sorted((out / "runs").glob("*/fold*-seed*/run_result.json")):
        result = json.loads(path.read_text())
        results[str(path.relative_to(out))] = {"tasks": result["tasks"], "predictions": result["predictions"]}
    return results


def assert_same_training(reference: Path, out: Path) -> None:
    """Identical metrics.json, baselines.json, per-run results and predictions, report, card and final model."""
    for name in ("metrics.json", "baselines.json", "model.safetensors", "config.json", "README.md"):
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    assert run_results(out) == run_results(reference) and len(run_results(out)) == 6
    report = (out / "report.md").read_text().replace(str(out), "OUT")
    assert report == (reference / "report.md").read_text().replace(str(reference), "OUT")
    top = sorted(p.name for p in out.iterdir())
    assert top == sorted(p.name for p in reference.iterdir()) and not no_temporaries(out)


# ------------------------------------------------------------------------------------------- determinism
def test_extraction_is_deterministic(features_reference, raw_dataset, encoders, root):
    from hilbert_app.cli.extract_features import main

    again = root / "features-again" / "out"
    assert main(extract_args(raw_dataset, encoders, again)) == 0
    assert_same_features(features_reference[0], again)


def test_training_is_deterministic(train_reference, train_features, root, monkeypatch):
    again = root / "train-again" / "out"
    train_in_process(train_features, again, monkeypatch)
    assert_same_training(train_reference[0], again)
    metrics = json.loads((again / "metrics.json").read_text())
    assert len(metrics["label"]["macro_auc"]["folds"]) == 3  # three held-out folds, really compared


# ------------------------------------------------------------------------------------------- SIGKILL
@pytest.mark.parametrize("seed", [0, 1])
def test_extraction_killed_twice_then_rerun_gives_the_uninterrupted_dataset(
    features_reference, raw_dataset, encoders, root, seed
):
    """SIGKILL while a shard is being written, then (resumed) before a random rename (shards, the final moves),
    then the same command again: the dataset of an uninterrupted run, byte for byte."""
    reference, rows, renames = features_reference
    rng = random.Random(seed)
    out = root / f"features-killed-{seed}" / "out"
    args = extract_args(raw_dataset, encoders, out)

    first = rng.randint(1, rows)  # the shard holding this row is cut part way
    child = run_cli(
        "dataset_scripts/extract_features.py", args, kill=f"datasets.arrow_writer:ArrowWriter.write@{first}"
    )
    assert child.returncode == -signal.SIGKILL, child.stderr[-3000:]
    assert not (out / METADATA).exists()
    done = sorted((out / "_shards" / "train").glob("shard-*.arrow"))
    assert len(done) == (first - 1) // 2  # 2 documents per shard: the finished ones only, each whole
    for shard in done:
        assert datasets.Dataset.from_file(str(shard)).num_rows == 2

    # the resumed run renames 2 files per shard left (report, Arrow file), then moves the merged dataset in
    second = rng.randint(1, renames - 2 * len(done))
    child = run_cli("dataset_scripts/extract_features.py", args, kill=f"os:replace@{second}")
    assert child.returncode == -signal.SIGKILL, child.stderr[-3000:]
    if (out / METADATA).exists():  # the finished marker never lies: whatever carries it is whole
        assert datasets.load_from_disk(str(out))["train"].data.equals(
            datasets.load_from_disk(str(reference))["train"].data
        )

    child = run_cli("dataset_scripts/extract_features.py", args)
    assert child.returncode == 0, child.stderr[-3000:]
    assert_same_features(reference, out)


@pytest.mark.slow
def test_training_killed_in_a_checkpoint_and_in_the_final_save_then_rerun_gives_the_same_results(
    train_reference, train_features, root
):
    """SIGKILL in the middle of saving a cross-validation checkpoint (before a random `torch.save`: the model is
    written, the optimizer or RNG state not yet), then during the final model save, then the same command again:
    the metrics, baselines, out-of-fold probabilities and final model of an uninterrupted run."""
    reference, counts = train_reference
    rng = random.Random(0)
    out = root / "train-killed" / "out"
    args = train_args(train_features, out)

    first = rng.randint(1, counts["torch_saves_in_cv"])
    child = run_cli("train.py", args, kill=f"torch:save@{first}")
    assert child.returncode == -signal.SIGKILL, child.stderr[-3000:]
    assert not (out / "metrics.json").exists()

    child = run_cli("train.py", args, kill="modeling_hilbert.processing_hilbert:HilbertProcessor.save_pretrained@1")
    assert child.returncode == -signal.SIGKILL, child.stderr[-3000:]
    # killed while the final model was being saved: nothing in OUTPUT_DIR looks like a loadable model
    assert not (out / "config.json").exists() and not (out / "model.safetensors").exists()
    assert (out / "metrics.json").read_bytes() == (reference / "metrics.json").read_bytes()

    child = run_cli("train.py", args)
    assert child.returncode == 0, child.stderr[-3000:]
    assert "done earlier (skipped)" in child.stdout
    assert_same_training(reference, out)


def test_resuming_skips_a_half_written_checkpoint(tmp_path):
    """The failure mode behind the checkpoint marker: transformers' `get_last_checkpoint` takes the highest step
    even if a kill cut its save short; `last_complete_checkpoint` takes the last whole one and removes the rest."""
    from transformers.trainer_utils import get_last_checkpoint

    from hilbert_app.training.trainer import CHECKPOINT_DONE, last_complete_checkpoint

    for step, files in (
        (6, ["model.safetensors", "optimizer.pt", "trainer_state.json", CHECKPOINT_DONE]),
        (12, ["model.safetensors"]),
    ):  # killed after the weights
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        for name in files:
            (folder / name).write_text("{}")
    assert get_last_checkpoint(str(tmp_path)).endswith("checkpoint-12")
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-6")
    assert (tmp_path / "checkpoint-12").exists()  # only looked at
    assert last_complete_checkpoint(tmp_path, remove_incomplete=True) == str(tmp_path / "checkpoint-6")
    assert not (tmp_path / "checkpoint-12").exists()
    assert last_complete_checkpoint(tmp_path / "missing") is None


# ------------------------------------------------------------------------------------------- atomic writes
def test_atomic_path_leaves_the_old_file_or_the_new_one(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_text("half of the ne")
            raise KeyboardInterrupt  # killed part way
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".json" and tmp.name.startswith(TMP_PREFIX)
        tmp.write_text("new")
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]
    assert target.stat().st_mode & 0o777 == 0o666 & ~_umask()  # not mkstemp's private 0600


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("killed_at", [1, 2, 3])
def test_move_into_never_leaves_a_folder_that_looks_complete(tmp_path, monkeypatch, killed_at):
    """A new model moving onto an old one, killed before the k-th rename: the old done marker is gone first and the
    new one moves last, so the folder never holds a marker beside files of the other model."""
    target, staging = tmp_path / "model", tmp_path / "model" / f"{TMP_PREFIX}staging"
    staging.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "README.md"):
        (target / name).write_text(f"old {name}")
        (staging / name).write_text(f"new {name}")
    real, calls = os.replace, []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) == killed_at:
            raise KeyboardInterrupt
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        move_into(staging, target, last=["config.json"])
    assert not (target / "config.json").exists()
    monkeypatch.setattr(os, "replace", real)
    move_into(staging, target, last=["config.json"])  # the next run
    assert {p.name: p.read_text() for p in target.iterdir()} == {
        n: f"new {n}" for n in ("config.json", "model.safetensors", "README.md")
    }


def _small_corpus_build(root: Path):
    from hilbert_app.corpus.build import build_dataset

    out = root / "dataset"
    return out, lambda: build_dataset(root / "corpus", out, folds=2, seed=0, progress=False)


def test_build_dataset_keeps_the_previous_build_when_killed_or_out_of_space(tmp_path, monkeypatch):
    from hilbert_app.corpus.build import DatasetBuildError

    make_raw_dataset(tmp_path, documents=6)  # corpus/ and a first build in dataset/
    out, build = _small_corpus_build(tmp_path)
    before = tree(out)
    real_save = datasets.DatasetDict.save_to_disk

    raising = {}

    def save_then_fail(self, path, *args, **kwargs):  # writes the whole dataset, then the next write fails
        real_save(self, path, *args, **kwargs)
        raise raising["error"]

    monkeypatch.setattr(datasets.DatasetDict, "save_to_disk", save_then_fail)
    for error in (KeyboardInterrupt(), OSError(errno.ENOSPC, "No space left on device")):
        raising["error"] = error
        with pytest.raises((KeyboardInterrupt, DatasetBuildError)) as caught:
            build()
        assert tree(out) == before  # the previous build, whole and untouched
        assert datasets.load_from_disk(str(out))["train"].num_rows == 6
        assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus", "dataset"]  # no staging folder left
    message = str(caught.value)
    assert str(out) in message and "No space left on device (ENOSPC)" in message and "Free space" in message
    monkeypatch.setattr(datasets.DatasetDict, "save_to_disk", real_save)
    build()  # and the next build replaces it
    assert (out / "build_report.json").is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["corpus", "dataset"]


# ------------------------------------------------------------------------------------------- write errors
def test_describe_write_error_only_for_write_failures():
    assert describe_write_error(ValueError("bad value"), "/out", "retry") is None
    assert describe_write_error(OSError(errno.ENOENT, "No such file"), "/out", "retry") is None
    assert describe_write_error(RuntimeError("CUDA out of memory"), "/out", "retry") is None
    denied = describe_write_error(PermissionError(errno.EACCES, "Permission denied", "/out/x.json"), "/out", "retry")
    assert denied.startswith("cannot write /out/x.json: Permission denied (EACCES). Make /out writable")
    rust = describe_write_error(
        Exception("Error while serializing: I/O error: File too large (os error 27)"), "/out", "retry"
    )
    assert "File too large (EFBIG)" in rust and "a file in /out" in rust
    torch_zip = describe_write_error(
        RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534"), "/out", "retry"
    )
    assert "could not be written completely" in torch_zip
    # reading an input this user may not read is not a write failure of the output folder
    assert (
        describe_write_error(
            PermissionError(errno.EACCES, "Permission denied", "/models/w.safetensors"), "/out", "retry"
        )
        is None
    )
    beside = describe_write_error(
        PermissionError(errno.EACCES, "Permission denied", "/data/.tmp-out-x1"), "/data/out", "retry"
    )
    assert beside is not None and "Make /data/out writable" in beside


def assert_clear_write_error(child, folder: Path, reason: str) -> None:
    assert child.returncode == 2, child.stdout[-2000:] + child.stderr[-3000:]
    assert "Traceback" not in child.stderr, child.stderr[-3000:]
    message = child.stderr.strip().splitlines()[-1]
    assert message.startswith("error: cannot write ") and str(folder) in message and reason in message, message


@pytest.mark.slow
def test_extraction_into_a_read_only_or_full_folder_fails_clearly_and_keeps_the_old_dataset(
    features_reference, raw_dataset, encoders, root
):
    reference = features_reference[0]
    for case, preexec, reason in (
        ("read-only", obeying_permissions, "Permission denied (EACCES)"),
        ("full", file_size_limit(2000), "File too large (EFBIG)"),
    ):
        out = root / f"features-{case}" / "out"
        shutil.copytree(reference, out)  # a finished dataset that --overwrite would replace
        if case == "read-only":
            make_read_only(out)
        before = tree(out)
        child = run_cli(
            "dataset_scripts/extract_features.py",
            extract_args(raw_dataset, encoders, out, "--overwrite"),
            preexec=preexec,
        )
        assert_clear_write_error(child, out, reason)
        after = tree(out)  # every file of the finished dataset as it was (a full disk may leave _shards to resume)
        assert {name: after.get(name) for name in before} == before
        assert datasets.load_from_disk(str(out))["train"].data.equals(
            datasets.load_from_disk(str(reference))["train"].data
        )


@pytest.mark.slow
def test_training_into_a_read_only_or_full_folder_fails_clearly_and_keeps_earlier_outputs(
    train_reference, train_features, root
):
    reference = train_reference[0]
    # read-only: the report is the first write; full (1 MB per file): the final model's 3 MB of weights
    for case, preexec, reason in (
        ("read-only", obeying_permissions, "Permission denied (EACCES)"),
        ("full", file_size_limit(1 << 20), "File too large (EFBIG)"),
    ):
        out = root / f"train-{case}" / "out"
        shutil.copytree(reference, out)  # a previous complete run
        if case == "read-only":
            make_read_only(out)
        before = tree(out)
        child = run_cli("train.py", train_args(train_features, out), preexec=preexec)
        assert_clear_write_error(child, out, reason)
        after = tree(out)
        # report.md may have been rewritten (whole) before the failure: the same text, naming its own folder
        report = after.pop("report.md").replace(str(out).encode(), str(reference).encode())
        assert report == before.pop("report.md").replace(str(out).encode(), str(reference).encode())
        assert after == before  # metrics, baselines, per-run results and the final model as they were
        assert not no_temporaries(out)
