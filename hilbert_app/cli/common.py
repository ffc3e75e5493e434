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

import sys
from collections.abc import Callable
from pathlib import Path

from hilbert_app.errors import EXIT_USER_ERROR, UserError
from hilbert_app.safe_write import describe_write_error


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
