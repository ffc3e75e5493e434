"""Writing outputs so that a kill or a failed write never leaves a file that looks complete but is not.

Every file HILBERT's scripts write goes through one of these:

* `atomic_path(path)`: a context manager that yields a temporary name in the same folder (`.tmp-<name>-XXXX<suffix>`,
  same suffix, so libraries that pick the format from the name still work). When the block succeeds the file is
  flushed to disk and renamed onto `path` (`os.replace`, atomic on POSIX within one filesystem); when it fails the
  temporary file is removed. Readers see the old file or the new one, never a prefix of it.
* `atomic_write_text(path, text)`: the same for a string.
* `move_into(staging, target, last=...)`: moves the entries of a staging folder into `target`, the named "done
  markers" last (after removing the old ones first), for outputs that are a set of files in a shared folder.
* `describe_write_error(error, output, what_next)`: one paragraph for a failed write (read-only folder, full disk,
  file-size limit), or None when `error` is something else; the scripts print it instead of a traceback.

Temporary names start with `.tmp-`, so they are hidden, never taken for outputs, and easy to clean up.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "TMP_PREFIX",
    "atomic_path",
    "atomic_write_text",
    "describe_write_error",
    "move_into",
    "remove_stale_temporaries",
]

TMP_PREFIX = ".tmp-"
# errno values that mean "this folder cannot be written" and "there is no room left".
NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS}
NO_SPACE = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


def _fsync(path: str | os.PathLike) -> None:
    """Flush a file's data to disk, so that after the rename its content is there even after a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _new_file_mode() -> int:
    """The permissions `open(path, "w")` would give a new file: 0666 less the process umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _remove(path: str | os.PathLike) -> None:
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
    except FileNotFoundError:
        pass


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` if the block succeeds, remove it if not."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{path.name}-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, _new_file_mode())  # mkstemp makes it private (0600); outputs get the usual umask permissions
    try:
        yield Path(tmp)
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically: a kill or a full disk leaves the old file, never half a new one."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def move_into(staging: str | os.PathLike, target: str | os.PathLike, last: Sequence[str] = ()) -> None:
    """Move every entry of `staging` into `target` (replacing what is there), the names in `last` last, in order.

    The entries named in `last` are the done markers that readers and resume logic trust (e.g. `config.json` of a
    model, the fingerprint of a features dataset): the old ones are removed *before* anything moves, so a kill part
    way leaves a folder that does not look complete (and is redone by the next run), never a mix that does.
    `staging` must be on the same filesystem as `target` (make it inside or beside it). It is removed at the end.
    """
    staging, target = Path(staging), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    for name in last:
        _remove(target / name)
    others = sorted(p for p in staging.iterdir() if p.name not in last)
    markers = [staging / name for name in last if (staging / name).exists()]
    for entry in others + markers:
        destination = target / entry.name
        if destination.is_dir() and not destination.is_symlink():
            shutil.rmtree(destination)  # os.replace cannot put a folder onto a non-empty folder
        os.replace(entry, destination)
    staging.rmdir()


def remove_stale_temporaries(folder: str | os.PathLike, prefix: str = TMP_PREFIX) -> None:
    """Remove the `.tmp-*` files and folders that a killed run left in `folder` (only one run may write there)."""
    folder = Path(folder)
    if folder.is_dir():
        for entry in folder.glob(f"{prefix}*"):
            _remove(entry)


def _ours(filename: str | os.PathLike, output: str | os.PathLike) -> bool:
    """Whether `filename` is the output folder, inside it, or one of our temporary names beside it."""
    path, output = os.path.abspath(filename), os.path.abspath(output)
    if os.path.commonpath([path, output]) == output:
        return True
    return os.path.dirname(path) == os.path.dirname(output) and os.path.basename(path).startswith(TMP_PREFIX)


def write_errno(error: BaseException) -> int | None:
    """The errno of a failed write, also when a library hides it in its message (Rust I/O errors: "os error 28")."""
    if isinstance(error, OSError) and error.errno is not None:
        return error.errno
    match = re.search(r"\(os error (\d+)\)", str(error))
    return int(match.group(1)) if match else None


def _torch_write_failure(error: BaseException) -> bool:
    """`torch.save` reports a short write (full disk, file-size limit) as a RuntimeError from its zip writer."""
    text = str(error)
    return isinstance(error, RuntimeError) and ("PytorchStreamWriter" in text or "inline_container" in text)


def _causes(error: BaseException, limit: int = 8):
    """`error` and what it was raised from (`__cause__`, else `__context__`), outermost first: libraries such as
    datasets wrap the OSError of a full disk in their own error type."""
    seen = 0
    while error is not None and seen < limit:
        yield error
        error = error.__cause__ or error.__context__
        seen += 1


def describe_write_error(error: BaseException, output: str | os.PathLike, what_next: str) -> str | None:
    """One paragraph for a failed write under `output`: which file, the OS's reason, what to do; None if `error` is
    not a write failure (a read-only folder, a full disk or quota, a file-size limit).

    Args:
        output: the output folder the user chose (named in the message).
        what_next: what re-running does, e.g. "re-run the same command: finished shards are kept".
    """
    for cause in _causes(error):
        if write_errno(cause) in NOT_WRITABLE | NO_SPACE or _torch_write_failure(cause):
            error = cause  # the OS-level failure inside a library's wrapper names the file and the reason
            break
    code = write_errno(error)
    if code not in NOT_WRITABLE | NO_SPACE and not (code is None and _torch_write_failure(error)):
        return None
    filename = getattr(error, "filename", None)
    if filename and not _ours(filename, output):
        return None  # e.g. an input (encoder weights) this user may not read: not a write failure
    where = f"{filename}" if filename else f"a file in {output}"
    if code is None:
        reason = f"the file could not be written completely ({str(error).splitlines()[0][:200]})"
        advice = f"Check that the disk holding {output} has free space and no file-size limit applies"
    else:
        reason = f"{os.strerror(code)} ({errno.errorcode.get(code, code)})"
        if code in NOT_WRITABLE:
            advice = f"Make {output} writable for this user, or choose another output folder"
        else:
            advice = (
                f"Free space on the disk holding {output} (or raise the quota / file-size limit), or choose an "
                "output folder on another disk"
            )
    return (
        f"cannot write {where}: {reason}. {advice}, then {what_next}. Outputs written completely before this "
        "error were left as they were."
    )
