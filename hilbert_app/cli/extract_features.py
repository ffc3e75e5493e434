"""Command line of feature extraction: `python dataset_scripts/extract_features.py --help`.

Parses the arguments and calls `hilbert_app.features.extract.extract_features` (where what the command does and
writes is described).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hilbert_app.cli.common import add_output_options, module_summary, run_cli
from hilbert_app.console import setup_logging, show_progress
from hilbert_app.errors import UserError, check_positive, looks_like_local_path
from hilbert_app.hub import check_push_visibility, hub_url

# torch and hilbert_app.features.extract (datasets, transformers) are imported once the arguments are parsed, so
# that `--help` and a mistyped option answer at once.


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
    p = argparse.ArgumentParser(
        description=module_summary("hilbert_app.features.extract"), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dataset", required=True, help="dataset folder (build_dataset.py --output-dir) or Hub dataset id")
    p.add_argument(
        "--output-dir", required=True, type=Path, help="folder for the features (new, empty, or unfinished: resumed)"
    )
    p.add_argument("--audio-encoder", help="audio encoder: Hub id, folder or offline: name")
    p.add_argument("--text-encoder", help="text encoder: Hub id, folder or offline: name")
    p.add_argument("--model", help="a HILBERT checkpoint folder whose encoders and processor are used instead")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--fast",
        dest="fast",
        action="store_const",
        const=True,
        default=None,
        help="Whisper fast mode: encode only the real mel frames of each segment",
    )
    mode.add_argument(
        "--exact",
        dest="fast",
        action="store_const",
        const=False,
        help="Whisper exact mode: the full 30-s window (default, unless --model's processor says fast)",
    )
    p.add_argument("--speakers", help="comma-separated speakers whose segments are kept (default: all)")
    p.add_argument("--max-segments", type=int, help="keep at most the first N segments of each document")
    p.add_argument("--batch-documents", type=int, default=8, help="documents per encoder batch (default 8)")
    p.add_argument("--shard-size", type=int, default=64, help="documents per resumable shard (default 64)")
    p.add_argument(
        "--encoder-batch-size",
        type=_batch_size_arg,
        default="auto",
        help="segments per encoder call, or auto (default): 4 on CPU, where small batches are fastest, 64 on CUDA",
    )
    p.add_argument(
        "--num-workers", type=int, default=0, help="DataLoader workers decoding audio and computing log-mels"
    )
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    p.add_argument(
        "--encoder-dtype",
        "--dtype",
        dest="dtype",
        choices=["auto", "float32", "float16", "bfloat16"],
        default="auto",
        help="dtype of the frozen encoders (default auto: float16 on CUDA, float32 on CPU, where "
        "half precision is slower); recorded in the fingerprint",
    )
    p.add_argument("--overwrite", action="store_true", help="replace a finished features dataset in --output-dir")
    p.add_argument("--push-to-hub", metavar="REPO", help="push the features, fingerprint and card to this dataset repo")
    p.add_argument("--public", action="store_true", help="make the pushed dataset public (default: private)")
    add_output_options(p)
    return p


def check_arguments(args: argparse.Namespace) -> None:
    """Every argument checked before any encoder is loaded (a UserError names the option)."""
    for option in ("max_segments", "batch_documents", "shard_size"):
        value = getattr(args, option)
        if value is not None:
            check_positive(value, "--" + option.replace("_", "-"))
    check_positive(args.num_workers, "--num-workers", allow_zero=True)
    if args.device is not None:
        import torch

        try:
            torch.device(args.device)
        except (RuntimeError, ValueError):
            raise UserError(
                f"--device {args.device!r} is not a torch device; use cpu, cuda, cuda:1, mps, ..."
            ) from None
        if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
            raise UserError(
                f"--device {args.device}: no CUDA GPU is available here; leave --device out to use the CPU."
            )
    if looks_like_local_path(args.dataset) and not Path(args.dataset).expanduser().is_dir():
        raise UserError(
            f"--dataset {args.dataset}: no such folder. Give the --output-dir folder of build_dataset.py or a "
            "Hub dataset id (org/name)."
        )
    if args.model is not None and not Path(args.model).is_dir():
        raise UserError(f"--model {args.model}: no such folder; give a HILBERT checkpoint folder saved by train.py.")


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit code (0 done, 2 refused: see `hilbert_app.cli.common`)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    setup_logging(args.verbose)

    def body() -> int:
        check_arguments(args)
        import torch

        from hilbert_app.features.extract import extract_features, push_features_to_hub

        speakers = [s.strip() for s in args.speakers.split(",") if s.strip()] if args.speakers else None
        if args.push_to_hub:  # before encoding: a refused push should not cost the whole extraction first
            check_push_visibility(args.push_to_hub, "dataset", args.public)
        dataset, metadata = extract_features(
            args.dataset,
            args.output_dir,
            args.audio_encoder,
            args.text_encoder,
            model=args.model,
            fast=args.fast,
            speakers=speakers,
            max_segments=args.max_segments,
            batch_documents=args.batch_documents,
            shard_size=args.shard_size,
            encoder_batch_size=args.encoder_batch_size,
            num_workers=args.num_workers,
            device=args.device,
            dtype=args.dtype,
            overwrite=args.overwrite,
            progress=show_progress(args.no_progress),
        )
        if dataset is not None and args.push_to_hub:
            push_features_to_hub(dataset, metadata, args.push_to_hub, public=args.public)
            print(f"Pushed to {hub_url(args.push_to_hub, 'dataset')} ({'public' if args.public else 'private'}).")
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        return 0

    return run_cli(body, output=args.output_dir, resume_hint="the shards finished so far are kept")


if __name__ == "__main__":
    sys.exit(main())
