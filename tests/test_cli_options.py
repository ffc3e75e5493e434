"""The command lines' shared conventions: one vocabulary, a help text for every option, choices where the value set
is closed, progress bars only in a terminal, quiet logs unless --verbose, the Hub URL of the real endpoint, and a
`--help` that does not wait for torch."""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hilbert_app import console
from hilbert_app.cli import build_dataset, build_demo_corpus, extract_features
from hilbert_app.cli import train as train_cli

REPO = Path(__file__).resolve().parents[1]


def parsers() -> dict[str, argparse.ArgumentParser]:
    return {
        "build_dataset": build_dataset._parser(),
        "build_demo_corpus": build_demo_corpus._parser(),
        "extract_features": extract_features._parser(),
        "train": train_cli.build_parser(),
    }


def options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """{first long option string: action}, without -h/--help."""
    return {
        next(s for s in a.option_strings if s.startswith("--")): a
        for a in parser._actions
        if a.option_strings and not isinstance(a, argparse._HelpAction)
    }


@pytest.mark.parametrize("name", ["build_dataset", "build_demo_corpus", "extract_features", "train"])
def test_every_option_has_a_help_text(name):
    parser = parsers()[name]
    missing = [opt for opt, action in options(parser).items() if not (action.help or "").strip()]
    assert missing == [], f"{name}: options without help: {missing}"


def test_closed_value_sets_are_choices():
    from transformers.trainer_utils import SchedulerType

    from hilbert_app.corpus.build import OVERLAP_POLICIES
    from hilbert_app.training.experiment import LR_SCHEDULERS
    from modeling_hilbert.configuration_hilbert import FIELD_CHOICES

    every = {name: options(p) for name, p in parsers().items()}
    assert tuple(every["build_dataset"]["--overlap"].choices) == OVERLAP_POLICIES  # the CLI's copy agrees
    assert list(every["extract_features"]["--encoder-dtype"].choices) == ["auto", "float32", "float16", "bfloat16"]
    assert sorted(every["build_demo_corpus"]["--size"].choices) == ["large", "medium", "small"]
    train = every["train"]
    assert list(train["--lr_scheduler_type"].choices) == list(LR_SCHEDULERS)
    assert set(LR_SCHEDULERS) <= {s.value for s in SchedulerType}  # each one is a real transformers schedule
    assert list(train["--audio_mode"].choices) == ["exact", "fast"]
    for field, allowed in FIELD_CHOICES.items():
        if f"--{field}" in train:  # head settings (audio_mode is data: above)
            assert list(train[f"--{field}"].choices) == list(allowed), field


def test_one_vocabulary_across_the_command_lines():
    every = {name: set(options(p)) for name, p in parsers().items()}
    for name, opts in every.items():
        assert "--output-dir" in opts or "--output_dir" in opts, name
        assert "--output" not in opts, name
        assert {"--no-progress", "--verbose"} <= opts or {"--no_progress", "--verbose"} <= opts, name
    assert "--fold-seed" in every["build_dataset"] and "--seed" not in every["build_dataset"]
    assert "--folds" in every["train"] and "--cv" not in every["train"]
    assert "--num-workers" in every["build_demo_corpus"] and "--workers" not in every["build_demo_corpus"]
    for name in ("build_dataset", "extract_features", "train"):  # every pushing command: private unless --public
        assert {"--push-to-hub", "--public"} <= every[name] or {"--push_to_hub", "--public"} <= every[name], name
    # train.py takes the dashed spelling too (HfArgumentParser), so the same words work everywhere
    args = train_cli.build_parser().parse_args(["--output-dir", "o", "--no-progress", "--folds", "3"])
    assert (args.output_dir, args.no_progress, args.folds) == ("o", True, 3)


class FakeStream:
    def __init__(self, tty: bool):
        self.tty = tty

    def isatty(self):
        return self.tty


def test_progress_bars_only_in_a_terminal_and_never_with_no_progress(monkeypatch):
    assert console.show_progress(False, FakeStream(True)) is True
    assert console.show_progress(False, FakeStream(False)) is False  # a pipe, a CI log
    assert console.show_progress(True, FakeStream(True)) is False  # --no-progress
    assert console.show_progress(False, object()) is False  # no isatty at all
    monkeypatch.setattr(sys, "stderr", FakeStream(True))
    assert console.show_progress() is True


def test_training_shows_its_progress_bar_by_default_in_a_terminal(monkeypatch, tmp_path):
    from hilbert_app.training.experiment import RunSettings

    monkeypatch.setattr(sys, "stderr", FakeStream(True))
    assert RunSettings().training_arguments(tmp_path, 0, False).disable_tqdm is False
    assert RunSettings(no_progress=True).training_arguments(tmp_path, 0, False).disable_tqdm is True
    monkeypatch.setattr(sys, "stderr", FakeStream(False))
    assert RunSettings().training_arguments(tmp_path, 0, False).disable_tqdm is True


@pytest.fixture
def built_corpus(tmp_path):
    from tests.test_build_dataset import make_corpus

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    make_corpus(corpus)
    return corpus


# A short build in a child process (a fresh logging setup, as a user's run has), with one INFO line from a
# third-party logger (as httpx writes per request) and one from ours, then a push whose "Pushed to" line must name
# HF_ENDPOINT's host, not huggingface.co.
BUILD_CHILD = """
import logging, sys
from hilbert_app.cli import build_dataset as cli
import hilbert_app.corpus.build as build
real = build.build_dataset
def noisy(*args, **kwargs):
    logging.getLogger("httpx").info("HTTP Request: GET http://hub/ 200 OK")
    logging.getLogger("hilbert_app.corpus.build").info("our own progress line")
    return real(*args, **kwargs)
build.build_dataset = noisy
build.push_dataset_to_hub = lambda *a, **k: None
cli.check_push_visibility = lambda *a, **k: None
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.parametrize("verbose", [False, True])
def test_logs_are_quiet_by_default_and_verbose_restores_info(built_corpus, tmp_path, verbose):
    argv = ["--input", str(built_corpus), "--output-dir", str(tmp_path / "out"), "--folds", "2"]
    argv += ["--push-to-hub", "org/corpus", *(["--verbose"] if verbose else [])]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}
    child = subprocess.run(
        [sys.executable, "-c", BUILD_CHILD, *argv], capture_output=True, text=True, env=env, cwd=REPO, timeout=120
    )
    assert child.returncode == 0, child.stderr
    assert "INFO hilbert_app.corpus.build: our own progress line" in child.stderr
    assert ("INFO httpx: HTTP Request" in child.stderr) is verbose
    assert "Pushed to http://127.0.0.1:9/datasets/org/corpus (private)." in child.stdout
    assert "huggingface.co" not in child.stdout
    assert "\r" not in child.stderr  # not a terminal: no progress bar redraws in the log


# extract_features.py printed ~20 `INFO httpx` lines per run (it set the root logger to INFO): the extraction itself
# is replaced by one that logs as a Hub download does.
EXTRACT_CHILD = """
import logging, sys
import hilbert_app.features.extract as extract
def noisy(*args, **kwargs):
    logging.getLogger("httpx").info("HTTP Request: GET http://hub/ 200 OK")
    logging.getLogger("hilbert_app.features.extract").info("our own progress line")
    return None, None
extract.extract_features = noisy
from hilbert_app.cli import extract_features as cli
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.parametrize("verbose", [False, True])
def test_extraction_logs_no_http_lines_unless_verbose(tmp_path, verbose):
    (tmp_path / "dataset").mkdir()
    argv = ["--dataset", str(tmp_path / "dataset"), "--output-dir", str(tmp_path / "out")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    child = subprocess.run(
        [sys.executable, "-c", EXTRACT_CHILD, *argv, *(["--verbose"] if verbose else [])],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=180,
    )
    assert child.returncode == 0, child.stderr
    assert "INFO hilbert_app.features.extract: our own progress line" in child.stderr
    assert ("INFO httpx: HTTP Request" in child.stderr) is verbose


def test_setup_logging_levels():
    console.setup_logging(False)
    assert logging.getLogger("httpx").getEffectiveLevel() == logging.WARNING
    assert logging.getLogger("huggingface_hub").getEffectiveLevel() == logging.WARNING
    assert logging.getLogger("hilbert_app.features.extract").getEffectiveLevel() == logging.INFO
    console.setup_logging(True)
    assert logging.getLogger("httpx").getEffectiveLevel() == logging.INFO
    console.setup_logging(False)


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:8/", "https://hub.example.org"])
def test_hub_url_follows_hf_endpoint(endpoint):
    code = (
        "import json; from hilbert_app.hub import hub_url; "
        "print(json.dumps([hub_url('o/m'), hub_url('o/d', 'dataset'), hub_url('o/s', 'space')]))"
    )
    env = {**os.environ, "HF_ENDPOINT": endpoint}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    base = endpoint.rstrip("/")
    assert json.loads(out) == [f"{base}/o/m", f"{base}/datasets/o/d", f"{base}/spaces/o/s"]


# `--help` in a child process; prints which heavy modules it imported (not timed: tests/ must not be flaky).
HELP_CHILD = """
import json, runpy, sys
sys.argv = [sys.argv[1], "--help"]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit:
    pass
heavy = ("torch", "transformers.modeling_utils", "transformers.processing_utils", "datasets")
print("HEAVY=" + json.dumps([m for m in heavy if m in sys.modules]))
"""


@pytest.mark.parametrize(
    "script",
    ["dataset_scripts/build_dataset.py", "dataset_scripts/extract_features.py", "dataset_scripts/build_demo_corpus.py"],
)
def test_help_does_not_import_torch_transformers_or_datasets(script):
    child = subprocess.run(
        [sys.executable, "-c", HELP_CHILD, script], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert "usage:" in child.stdout, child.stderr
    line = next(x for x in child.stdout.splitlines() if x.startswith("HEAVY="))
    assert json.loads(line.removeprefix("HEAVY=")) == []


def test_train_help_does_not_import_the_model_or_datasets():
    """train.py's options come from `HilbertConfig.head_settings()`: the config module needs torch (through
    transformers.configuration_utils), but neither the model code (transformers.modeling_utils) nor datasets."""
    child = subprocess.run(
        [sys.executable, "-c", HELP_CHILD, "train.py"], capture_output=True, text=True, cwd=REPO, timeout=180
    )
    assert "--num_train_epochs" in child.stdout, child.stderr
    line = next(x for x in child.stdout.splitlines() if x.startswith("HEAVY="))
    assert json.loads(line.removeprefix("HEAVY=")) == ["torch"]


IMPORT_CHILD = """
import json, sys
import modeling_hilbert
before = [m for m in ("transformers.modeling_utils", "transformers.processing_utils", "transformers.pipelines")
          if m in sys.modules]
from transformers import AutoModel, AutoModelForSequenceClassification, AutoProcessor
from transformers.pipelines import PIPELINE_REGISTRY
config = modeling_hilbert.HilbertConfig()  # the first config registers the model, processor and pipeline
print(json.dumps({
    "before": before,
    "model": AutoModel._model_mapping[type(config)].__name__,
    "classifier": AutoModelForSequenceClassification._model_mapping[type(config)].__name__,
    "processor": modeling_hilbert.HilbertProcessor.__name__,
    "pipeline": "hilbert-document-classification" in PIPELINE_REGISTRY.get_supported_tasks(),
}))
"""


def test_import_modeling_hilbert_is_lazy_and_the_first_config_registers_everything():
    child = subprocess.run([sys.executable, "-c", IMPORT_CHILD], capture_output=True, text=True, cwd=REPO, timeout=180)
    assert child.returncode == 0, child.stderr
    seen = json.loads(child.stdout.strip().splitlines()[-1])
    assert seen == {
        "before": [],
        "model": "HilbertModel",
        "classifier": "HilbertForSequenceClassification",
        "processor": "HilbertProcessor",
        "pipeline": True,
    }
