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

from sweeper.errors import SweepDirError

__all__ = ["dir_lock"]

_SAY_AFTER_S = 3.0


@contextlib.contextmanager
def dir_lock(path: Path, what: str, timeout_s: float = 600.0) -> Iterator[None]:
    """Hold the lock file ``path``; ``what`` names it in messages (e.g. "the sweep dir").

    Raises SweepDirError after ``timeout_s`` with the holder's file named, so a stuck lock is
    an error with a fix, not a hang.
    """
    from filelock import FileLock, SoftFileLock, Timeout

    path.parent.mkdir(parents=True, exist_ok=True)
    lock: FileLock | SoftFileLock = FileLock(str(path))
    start = time.monotonic()
    said = False
    while True:
        try:
            lock.acquire(timeout=0.5)
            break
        except NotImplementedError:  # no flock here: an O_EXCL lock file works everywhere
            lock = SoftFileLock(str(path) + ".soft")
        except Timeout:
            waited = time.monotonic() - start
            if waited >= timeout_s:
                raise SweepDirError(
                    f"waited {waited:.0f}s for the lock on {what} ({path}); another sweeper "
                    "command holds it. Wait for it to end, or, if none runs, delete that file"
                ) from None
            if not said and waited >= _SAY_AFTER_S:
                print(f"[sweeper] waiting for another sweeper command's lock on {what} ({path})",
                      file=sys.stderr, flush=True)
                said = True
    try:
        yield
    finally:
        lock.release()
