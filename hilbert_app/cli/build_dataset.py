"""Command line of the corpus builder: `python dataset_scripts/build_dataset.py --help`.

Parses the arguments and calls `hilbert_app.corpus.build.build_dataset` (where the corpus layout, the checks and
the output are described).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from hilbert_app.cli.common import add_output_options, module_summary, run_cli
from hilbert_app.console import setup_logging, show_progress
from hilbert_app.errors import UserError, check_positive
from hilbert_app.hub import check_push_visibility, hub_url
from hilbert_app.safe_write import atomic_write_text

# `hilbert_app.corpus.build.OVERLAP_POLICIES` (tests/test_cli_options.py checks they agree): not imported from there,
# because that module imports `datasets` and `--help` should not wait for it.
OVERLAP_POLICIES = ("error", "allow")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=module_summary("hilbert_app.corpus.build"), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--input", required=True, type=Path, help="corpus folder with metadata.csv or metadata.jsonl")
    p.add_argument(
        "--output-dir", required=True, type=Path, help="folder for save_to_disk (new, empty or a previous build)"
    )
    p.add_argument("--folds", type=int, default=5, help="number of cross-validation folds (default 5)")
    p.add_argument("--fold-seed", type=int, default=0, help="seed of the fold assignment (default 0)")
    p.add_argument("--skip-invalid", action="store_true", help="leave invalid rows out (listed in the report)")
    p.add_argument("--tolerance", type=float, default=0.5, help="seconds a segment may run past its audio (0.5)")
    p.add_argument(
        "--overlap",
        choices=OVERLAP_POLICIES,
        default="error",
        help="overlapping segments: 'error' (a problem, default) or 'allow' (kept and counted in the report, "
        "e.g. crosstalk in diarised transcripts)",
    )
    p.add_argument(
        "--allow-unlabelled",
        action="store_true",
        help="keep rows with an empty label cell as unlabelled documents (counted in the report and card): training "
        "uses them for the label-free alignment terms only (default: an empty label is a problem)",
    )
    p.add_argument("--report", type=Path, help="also write the report here (on failure: the problems)")
    p.add_argument("--push-to-hub", metavar="REPO", help="push the dataset and its card to this Hub dataset repo")
    p.add_argument("--public", action="store_true", help="make the pushed dataset public (default: private)")
    p.add_argument(
        "--license", default="unknown", help="license id for the dataset card, e.g. cc-by-4.0 (default: unknown)"
    )
    add_output_options(p)
    _add_transcribe_options(p)
    return p


def _add_transcribe_options(p: argparse.ArgumentParser) -> None:
    """Recordings without a transcript (an empty transcript cell): transcribed by Whisper with --transcribe."""
    g = p.add_argument_group("recordings without a transcript")
    g.add_argument(
        "--transcribe",
        metavar="MODEL",
        help="transcribe rows with an empty transcript cell with this Whisper model (Hub id, folder, or "
        "offline:whisper-tiny.en / offline:whisper-base); listed with the model and its revision in the report and "
        "card. Without it such rows are problems",
    )
    g.add_argument(
        "--language",
        help="language of --transcribe (code or English name, e.g. de, german) for a multilingual Whisper "
        "(default: detected per 30-s window)",
    )


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit code (0 done, 2 refused: see `hilbert_app.cli.common`)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    command = shlex.join(["python", "dataset_scripts/build_dataset.py", *argv])
    setup_logging(args.verbose)

    def body() -> int:
        from hilbert_app.corpus.build import build_dataset, push_dataset_to_hub  # datasets: not for --help

        check_positive(args.tolerance, "--tolerance", integer=False, allow_zero=True)
        if args.push_to_hub:  # before the build: a refused push should not cost the whole build first
            check_push_visibility(args.push_to_hub, "dataset", args.public)
        try:
            dataset, report = build_dataset(
                args.input,
                args.output_dir,
                args.folds,
                args.fold_seed,
                args.skip_invalid,
                tolerance=args.tolerance,
                overlap=args.overlap,
                command=command,
                progress=show_progress(args.no_progress),
                transcribe=args.transcribe,
                language=args.language,
                allow_unlabelled=args.allow_unlabelled,
            )
        except UserError as err:  # a DatasetBuildError (problems with file and line), a FoldError, ...
            if args.report:
                write_failure_report(args.report, command, err)
            raise
        if args.report:
            report.write(args.report)
        print(report.summary())
        if args.push_to_hub:
            push_dataset_to_hub(dataset, report, args.push_to_hub, public=args.public, license=args.license)
            print(f"Pushed to {hub_url(args.push_to_hub, 'dataset')} ({'public' if args.public else 'private'}).")
        return 0

    return run_cli(body, output=args.output_dir, resume_hint="the build starts again; nothing half-written is kept")


def write_failure_report(path: Path, command: str, err: UserError) -> None:
    """`--report` on failure: the problems (and skipped rows) as JSON, so that a script can read them."""
    failure = {
        "status": "failed",
        "command": command,
        "problems": [str(p) for p in getattr(err, "problems", None) or [err]],
        "skipped": [row.to_dict() for row in getattr(err, "skipped", None) or []],
    }
    try:
        atomic_write_text(path, json.dumps(failure, indent=2, ensure_ascii=False) + "\n")
    except OSError as write_error:
        print(f"error: could not write the failure report {path}: {write_error}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
