"""Locks on a sweep dir that never hang in silence.

A lock is held only while deciding and claiming (what to run, a result's rename), never while
trials run or while a command waits for them. Waiting longer than a few seconds says what for;
a file system without ``flock`` (some Lustre or NFS mounts) falls back to a lock file made
with ``O_EXCL``.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from sweeper.errors import SweepDirError

if TYPE_CHECKING:
    from filelock import BaseFileLock

__all__ = ["dir_lock"]

_SAY_AFTER_S = 3.0


@contextlib.contextmanager
def dir_lock(path: Path, what: str, timeout_s: float = 600.0) -> Iterator[None]:
    """Hold the lock file ``path``; ``what`` names it in messages (e.g. "the sweep dir").

    Raises SweepDirError after ``timeout_s`` with the holder's file named, so a stuck lock is
    an error with a fix, not a hang; and at once when the lock cannot be taken at all (a
    read-only dir, a directory in the lock file's place), as one line instead of a traceback.
    """
    lock = _acquire(path, what, timeout_s)
    try:
        yield
    finally:
        lock.release()


def _acquire(path: Path, what: str, timeout_s: float) -> BaseFileLock:
    from filelock import FileLock, SoftFileLock, Timeout

    lock: BaseFileLock = FileLock(str(path))
    start = time.monotonic()
    said = False
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            lock.acquire(timeout=0.5)
            return lock
        except NotImplementedError:  # no flock here: an O_EXCL lock file works everywhere
            lock = SoftFileLock(str(path) + ".soft")
        except Timeout:  # before OSError: filelock's Timeout is a TimeoutError
            waited = time.monotonic() - start
            if waited >= timeout_s:
                raise SweepDirError(
                    f"waited {waited:.0f}s for the lock on {what} ({lock.lock_file}); another "
                    "sweeper command holds it. Wait for it to end, or, if none runs, delete "
                    "that file") from None
            if not said and waited >= _SAY_AFTER_S:
                print(f"[sweeper] waiting for another sweeper command's lock on {what} "
                      f"({lock.lock_file})", file=sys.stderr, flush=True)
                said = True
        except OSError as ex:
            raise SweepDirError(
                f"cannot take the lock on {what} ({lock.lock_file}): {ex.strerror or ex}; the "
                "dir must be writable, and that path a plain file (delete it if it is not)"
            ) from None
