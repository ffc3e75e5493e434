"""How every command line ends: one design for errors, interrupts and exit codes.

    0   done
    2   refused: a `UserError` (bad argument, unreadable or wrong input, an encoder that cannot be loaded), an output
        that cannot be written (read-only folder, full disk), or an interrupt (Ctrl-C); one paragraph on stderr names
        the input and says what to do
    1   a bug: anything else keeps its traceback, so that it can be reported

Arguments are checked before any long work starts (the checks in `hilbert_app.errors` raise `UserError`), so a typo
costs
seconds, not an extraction.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

from hilbert_app.errors import EXIT_USER_ERROR, UserError
from hilbert_app.safe_write import describe_write_error


def module_summary(module: str) -> str:
    """The first paragraph of a module's docstring, read from its source without importing it: a parser's
    description, so that `--help` does not pay for the module's imports (datasets, torch)."""
    spec = importlib.util.find_spec(module)
    source = open(spec.origin, encoding="utf-8").read()
    return (ast.get_docstring(ast.parse(source)) or "").split("\n\n")[0]


def add_output_options(parser: argparse.ArgumentParser) -> None:
    """The options every command shares for what it shows: --no-progress and --verbose (`hilbert_app.console`)."""
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bars (default: shown when stderr is a terminal, never in pipes or CI logs)",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="INFO logs of every library too (default: their warnings only, and our own progress lines)",
    )


def say_error(message: str) -> None:
    """`error: <message>` on stderr, one paragraph; the terminal wraps it (a script can read the last line)."""
    print(f"error: {message}", file=sys.stderr, flush=True)


def run_cli(body: Callable[[], int], *, output: str | Path | Callable[[], str | None] | None, resume_hint: str) -> int:
    """Run a command's body and turn every foreseeable failure into one paragraph and exit code 2.

    Args:
        body: the command, returning its exit code.
        output: the output folder the user chose (named in write-error messages), None when there is none, or
            a callable giving it once the arguments are parsed.
        resume_hint: what re-running the same command does, e.g. "finished shards are kept".
    """
    try:
        return body()
    except UserError as error:
        say_error(str(error))
    except KeyboardInterrupt:
        say_error(
            f"interrupted. Outputs written completely before the interrupt were kept: re-run the same command "
            f"to continue ({resume_hint})."
        )
    except Exception as error:
        folder = output() if callable(output) else output
        message = describe_write_error(error, folder, f"re-run the same command ({resume_hint})") if folder else None
        if message is None:
            raise  # a bug: keep its traceback
        say_error(message)
    return EXIT_USER_ERROR
