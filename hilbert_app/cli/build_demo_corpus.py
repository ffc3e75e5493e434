"""Command line of the offline demo corpus: `python dataset_scripts/build_demo_corpus.py --help`.

Parses the arguments and calls `hilbert_app.corpus.demo.build_demo_corpus` (where the corpus is described).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from hilbert_app.cli.common import add_output_options
from hilbert_app.console import setup_logging, show_progress
from hilbert_app.corpus.demo import DIFFICULTIES, SIZES, EspeakNotFoundError, build_demo_corpus
from hilbert_app.corpus.demo import __doc__ as DEMO_DOC


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=DEMO_DOC.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output-dir", required=True, type=Path, help="folder to build (or resume) in")
    parser.add_argument(
        "--size",
        default="small",
        choices=sorted(SIZES),
        help="small: 56 docs of 1-2 min; medium: 200 of 1-4 min; large: 600 of 1-5 min",
    )
    parser.add_argument(
        "--difficulty",
        default="standard",
        choices=sorted(DIFFICULTIES),
        help="standard: pitch registers far apart, clean audio; hard: registers close, white noise at 0-12 dB SNR "
        "(for when every method that hears the audio sits at the ceiling)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the corpus's texts, voices and labels (default 0): same seed, same bytes",
    )
    parser.add_argument("--num-documents", type=int, default=None, help="override the size's count of documents")
    parser.add_argument("--num-workers", type=int, default=2, help="rendering processes (default 2)")
    parser.add_argument(
        "--duration",
        type=float,
        nargs=2,
        metavar=("MIN_S", "MAX_S"),
        default=None,
        help="override the size's range of target durations per document, in seconds",
    )
    add_output_options(parser)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    return _parser().parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.verbose)
    try:
        path = build_demo_corpus(
            args.output_dir,
            size=args.size,
            seed=args.seed,
            num_documents=args.num_documents,
            workers=args.num_workers,
            duration_range=tuple(args.duration) if args.duration else None,
            progress=show_progress(args.no_progress),
            difficulty=args.difficulty,
        )
    except (EspeakNotFoundError, ImportError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"demo corpus ready: {path / 'metadata.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
