"""One writer per output folder: the commands that resume into a folder (extraction, training) hold a lock on it.

Two runs into one folder used to clobber each other: both resumed the same unfinished work, one finished and
removed the staging files, the other then crashed and removed the first one's "done" markers. Now the main
process of a run takes `OUTPUT/.hilbert-lock` for as long as it writes there:

* the lock is `fcntl.flock(LOCK_EX | LOCK_NB)` on that file, which holds the holder's pid, host, start time and
  command (JSON) so that a refused run can say who is writing;
* the kernel drops the lock when its process ends, however it ends (SIGKILL included): a lock file left by a dead
  run is simply taken over, with a message naming the run that left it -- no stale lock ever needs deleting by
  hand, and a live run's lock is never taken;
* the file is removed when the run ends; a run that opened the file just before it was removed notices (the path
  no longer names the file it locked) and tries again, so two runs can never both hold the lock.

Processes of one multi-process run (accelerate, torchrun, RANK/WORLD_SIZE jobs) share the folder legitimately:
only the main process (rank 0) takes the lock, the others work under it (their shards have their own names, and
their arguments are checked against the main process's). The lock needs a filesystem with `flock` (local disks;
NFS maps it to POSIX locks on Linux).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from datetime import datetime
from pathlib import Path

from hilbert_app.errors import UserError

__all__ = ["LOCK_NAME", "OutputInUseError", "OutputLock", "lock_output"]

LOCK_NAME = ".hilbert-lock"


class OutputInUseError(UserError):
    """Another live run is writing to the output folder."""


def _holder_text(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 4096).decode("utf-8", "replace")


def _describe(text: str) -> str:
    """'process PID on HOST since TIME (COMMAND)' from a lock file's content ('another process' if unreadable)."""
    try:
        holder = json.loads(text)
        described = f"process {int(holder['pid'])} on {holder['host']} since {holder['started']}"
    except (ValueError, KeyError, TypeError):
        return "another process"
    return described + (f" ({holder['command']})" if holder.get("command") else "")


class OutputLock:
    """The held lock of one output folder (see the module docstring); `release()` or use it as a context manager."""

    def __init__(self, folder: Path, fd: int):
        self.folder, self.path, self._fd = folder, folder / LOCK_NAME, fd

    def release(self) -> None:
        """Remove the lock file, then let go of the lock (in this order: a waiting run then finds no file to take)."""
        if self._fd is None:
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.close(self._fd)  # closing the last descriptor releases the flock
        self._fd = None

    def __enter__(self) -> OutputLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def lock_output(folder: str | os.PathLike, option: str) -> OutputLock:
    """Take the lock of `folder` (created if needed) for this process, or raise `OutputInUseError`.

    Args:
        folder: the output folder.
        option: the option that chose it (`--output-dir` in every command), named in the message.

    A lock file left by a run that has ended (killed, crashed) is taken over, with a warning naming that run.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{option} {folder} is a file; choose a folder.")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                os.close(fd)
                raise
            text = _holder_text(fd)
            if not text:  # the holder has the lock but has not written its name yet
                time.sleep(0.2)
                text = _holder_text(fd)
            os.close(fd)
            raise OutputInUseError(
                f"{option} {folder} is being written by {_describe(text)}; wait for it to finish or choose another "
                f"{option}. (Two runs into one folder would overwrite each other's files.)"
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the previous holder removed this file after we opened it: lock the one the path names now
    left = _holder_text(fd)
    if left:  # on stderr whatever the logging set-up: the user should know an earlier run died here
        print(
            f"warning: {option} {folder}: taking over the lock left by {_describe(left)}, which is no longer "
            "running; its finished work is kept and resumed.",
            file=sys.stderr,
            flush=True,
        )
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join([os.path.basename(sys.argv[0] or "python"), *sys.argv[1:]])[:300],
    }
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, json.dumps(holder).encode())
    os.fsync(fd)
    return OutputLock(folder, fd)
