"""The one kind of error the command-line tools answer with a message instead of a traceback.

Every foreseeable failure that the user can fix (a bad argument, an unreadable or wrong input, an encoder that cannot
be loaded, an output folder that cannot be written) is raised as a `UserError` (or a subclass) whose message names
the input and says what to do. `hilbert_app.cli.common.run` prints it as one paragraph and exits with code 2; any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import math
from pathlib import Path

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A failure the user can fix; its message names the input and what to do."""


class ExtractionError(UserError):
    """The features cannot be extracted (bad input, unreadable audio, output folder in use, changed arguments)."""


# ------------------------------------------------------------------------------------ argument checks
def check_positive(value, option: str, *, integer: bool = True, allow_zero: bool = False) -> None:
    """Refuse a non-finite, negative (or zero) number given for `option`."""
    kind = "an integer" if integer else "a number"
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (not integer or float(value).is_integer()) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        sign = ">= 0" if allow_zero else "> 0"
        raise UserError(f"{option} must be {kind} {sign}, got {value!r}.")


def parse_int_list(text: str, option: str) -> list[int]:
    """`"0,1,2"` -> [0, 1, 2]; anything else is a UserError naming the option."""
    items = [item.strip() for item in str(text).split(",") if item.strip()]
    try:
        values = [int(item) for item in items]
    except ValueError:
        raise UserError(f"{option} takes comma-separated integers such as 0,1,2; got {text!r}.") from None
    if not values:
        raise UserError(f"{option} takes comma-separated integers such as 0,1,2; got nothing.")
    return values


def check_input_folder(path: str | Path, option: str, what: str, made_by: str) -> Path:
    """An existing folder for `option`, else a UserError that says what belongs there."""
    folder = Path(path).expanduser()
    if folder.is_file():
        raise UserError(f"{option} {path}: this is a file; give the folder {made_by} wrote ({what}).")
    if not folder.is_dir():
        raise UserError(
            f"{option} {path}: no such folder. Give the folder {made_by} wrote ({what}), or a Hub "
            "dataset id (org/name)."
        )
    return folder


def looks_like_local_path(name: str) -> bool:
    """A name that can only be a local path (absolute, ./, ../, ~, a Windows drive, or more than one '/'), as opposed
    to a Hub id `org/name`: such a name that does not exist is a typo, not something to look for on the Hub."""
    text = str(name)
    return (
        text.startswith(("/", "./", "../", "~", ".\\"))
        or (len(text) > 1 and text[1] == ":")
        or text.count("/") > 1
        or "\\" in text
    )
