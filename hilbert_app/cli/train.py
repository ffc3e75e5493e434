"""Command line of training: train and evaluate HILBERT with cross-validation, baselines and a saved (and optionally
pushed) model.

    accelerate launch train.py --config configs/demo.yaml [--any-field value ...]
    python train.py --features DIR_OR_REPO --output-dir DIR [--folds 5] [--seeds 0,1,2] [--baselines]
        [--push-to-hub REPO]

Every field of the three argument groups below can be set in the YAML file (flat `field: value` pairs) and
overridden on the command line (`--field value` or `--field-name value`).

Outputs in OUTPUT_DIR:
    metrics.json        {task: {metric: {"mean", "std", "folds", "n"}}} of the main model (HILBERT)
    baselines.json      {variant: <the same>} with --baselines (audio-only, text-only, concat + MLP, direct
                        audio-text contrast, without CKA / MI / MoE, full HILBERT), all on the same folds and seeds
    report.md, plots/   a Markdown summary, ROC curves, confusion matrices, loss curves of every term
    runs/               one folder per variant, fold and seed: TensorBoard logs, checkpoints while running, results
    config.json, model.safetensors, processor files, README.md (model card)
                        the full model (encoders + head trained on every document) that
                        `AutoModelForSequenceClassification.from_pretrained(OUTPUT_DIR, trust_remote_code=True)` loads

Faults: every output is written under a temporary name and renamed (the final model: a staging folder, config.json
moved last), so a kill never leaves a file that looks complete but is not; re-running the same command skips the
finished runs and resumes an interrupted one from its last complete checkpoint, with identical results. A read-only
or full output folder stops with one paragraph and exit code 2, earlier outputs intact.
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

import yaml
from transformers import HfArgumentParser

from hilbert_app.cli.common import run_cli
from hilbert_app.console import setup_logging
from hilbert_app.errors import UserError
from hilbert_app.hub import check_push_visibility
from hilbert_app.training.settings import DataArguments, ExperimentArguments, HeadArguments, check_settings


def build_parser() -> HfArgumentParser:
    """Every option of train.py, from the three dataclasses (`--config` is read before, by `parse_arguments`)."""
    parser = HfArgumentParser((DataArguments, HeadArguments, ExperimentArguments), description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config",
        metavar="FILE.yaml",
        help="YAML file of flat `option: value` lines (underscores) giving the defaults; the command line overrides.",
    )
    return parser


def parse_arguments(argv=None) -> tuple[DataArguments, HeadArguments, ExperimentArguments]:
    """`--config FILE.yaml` gives defaults; every field can still be overridden on the command line.

    Raises `UserError` for an unreadable or malformed YAML file and for settings that cannot work (see
    `check_settings`); argparse itself answers malformed options (exit code 2, with the usage).
    """
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    known, rest = pre.parse_known_args(argv)
    parser = build_parser()
    if known.config:
        parser.set_defaults(**read_config(known.config))
    data, head, experiment, *_ = parser.parse_args_into_dataclasses(args=rest)  # *_: the --config namespace
    setup_logging(experiment.verbose)
    if experiment.end_to_end:
        required = (
            ("--dataset", data.dataset),
            ("--audio-encoder", data.audio_encoder),
            ("--text-encoder", data.text_encoder),
        )
    else:
        required = (("--features", data.features),)
    missing = [name for name, value in (*required, ("--output-dir", experiment.output_dir)) if not value]
    if missing:
        parser.error(f"missing {', '.join(missing)} (on the command line or in --config)")
    check_settings(data, head, experiment)
    return data, head, experiment


def read_config(path: str) -> dict:
    """The `field: value` pairs of a training YAML, checked against the options (a UserError names the problem)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"--config {path}: no such file.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"--config {path}: cannot be read ({error}).") from None
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as error:
        # where the broken construct starts (e.g. an unclosed list), else where the parser gave up
        mark = getattr(error, "context_mark", None) or getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else path
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise UserError(
            f"--config {where}: not valid YAML ({problem}); the file holds flat `option: value` lines, "
            "e.g. `num_train_epochs: 12`."
        ) from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise UserError(f"--config {path}: expected `option: value` lines, got a YAML {type(values).__name__}.")
    valid = {f.name for cls in (DataArguments, HeadArguments, ExperimentArguments) for f in fields(cls)}
    unknown = sorted(set(values) - valid)
    if unknown:
        raise UserError(
            f"--config {path}: unknown keys {unknown}. Valid keys are the options of "
            "`python train.py --help` (with underscores)."
        )
    return values


def run(data_args, head_args, args) -> int:
    """`hilbert_app.training.run.run`, imported only once the arguments are parsed (it pulls in datasets, the
    reports and plots), so that `--help` and a mistyped option answer sooner."""
    from hilbert_app.training.run import run as run_experiment

    return run_experiment(data_args, head_args, args)


def main(argv=None) -> int:
    """Run the command; returns the exit code (0 done, 2 refused: see `hilbert_app.cli.common`)."""
    output = {}

    def body() -> int:
        data_args, head_args, args = parse_arguments(argv)
        output["dir"] = args.output_dir
        if args.push_to_hub:  # before training: a refused push should not cost the whole experiment first
            check_push_visibility(args.push_to_hub, "model", args.public)
        return run(data_args, head_args, args)

    return run_cli(
        body,
        output=lambda: output.get("dir"),
        resume_hint="finished runs are kept and an interrupted one resumes from its last complete checkpoint",
    )
