"""What every command shows while it works: progress bars in a terminal, quiet logs unless `--verbose`.

    show_progress(no_progress)   True when a progress bar should be drawn: stderr is a terminal and the user did not
                                 pass --no-progress (a pipe, a CI log or `> file` gets no bar: its redraws are noise)
    setup_logging(verbose)       warnings only from third-party libraries (httpx alone printed ~20 INFO lines per
                                 extraction), our own INFO progress lines; --verbose restores INFO everywhere

Standard library only: the command lines call it before anything heavy is imported.
"""

from __future__ import annotations

import logging
import os
import sys

# Libraries whose INFO logs are noise in a normal run (one line per HTTP request, per cached file, per lock taken).
THIRD_PARTY_LOGGERS = ("httpx", "huggingface_hub", "transformers", "datasets", "urllib3", "filelock")
# Our own loggers: their INFO lines (e.g. "Resuming: 3 of 5 shards are already done.") are the concise progress.
OWN_LOGGERS = ("hilbert_app", "modeling_hilbert")
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


def show_progress(no_progress: bool = False, stream=None) -> bool:
    """Whether to draw progress bars: not with `--no-progress`, and only when `stream` (default stderr, where tqdm
    draws) is a terminal."""
    if no_progress:
        return False
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def setup_logging(verbose: bool = False) -> None:
    """Configure the root logger once per command: WARNING for third-party loggers, INFO for ours; `verbose`: INFO
    for everything.

    transformers and datasets set their own library loggers' levels from TRANSFORMERS_VERBOSITY / DATASETS_VERBOSITY
    when first used (possibly after this call), so `verbose` also sets those variables (unless the user did).
    """
    # No force=True: a host that configured logging already (a notebook, pytest's capture) keeps its handlers; the
    # per-logger levels below are what makes the default quiet.
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format=LOG_FORMAT)
    third_party = logging.INFO if verbose else logging.WARNING
    for name in THIRD_PARTY_LOGGERS:
        logging.getLogger(name).setLevel(third_party)
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)
    if verbose:
        for variable in ("TRANSFORMERS_VERBOSITY", "DATASETS_VERBOSITY", "HF_HUB_VERBOSITY"):
            os.environ.setdefault(variable, "info")
