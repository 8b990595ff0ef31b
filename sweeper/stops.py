"""Stops from outside a trial (SIGTERM, SIGHUP, a time limit), made safe for its row.

A stop becomes :class:`~sweeper.context.TrialInterrupted` in the task, except while the
trial's row is being written: then it waits until the row is on disk, so a finished trial
is never recorded as stopped, and no row is ever half-written.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

from sweeper.context import TrialInterrupted
from sweeper.state import TrialState

__all__ = ["StopGuard"]


class StopGuard:
    """SIGTERM (or SIGHUP) becomes TrialInterrupted, except while a row is written: then the
    stop waits until the row is on disk, and is raised when the write ends (even if the write
    failed). A stop that repeats while the first one unwinds the task (a driver's SIGTERM,
    then its watchdog's) waits too: raised inside the handling of the first, it would leave
    the trial without a row."""

    def __init__(self) -> None:
        self._depth = 0
        self._held = False
        self._stopping = False  # a stop was raised and the trial has not reached hold() yet
        self._pending: TrialInterrupted | None = None
        self._raised: TrialInterrupted | None = None

    def handle(self, signum: int, frame: Any) -> None:
        # The executor sets SWEEPER_DEADLINE; a stop at or after it is the time limit.
        deadline = float(os.environ.get("SWEEPER_DEADLINE") or "inf")
        if time.time() >= deadline - 2.0:
            stop = TrialInterrupted("stopped at its time limit (cluster.timeout_min)",
                                    TrialState.TIMEOUT)
        else:
            stop = TrialInterrupted(f"stopped by {signal.Signals(signum).name}")
        if self._depth or self._held or self._stopping:
            self._pending = stop
            return
        self._stopping = True
        self._raised = stop
        raise stop

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self.handle)
        signal.signal(signal.SIGHUP, self.handle)  # a closed terminal stops trials cleanly

    def hold(self) -> None:
        """From the task's end until :meth:`release`: its row must reach the disk first."""
        self._held = True

    def release(self) -> None:
        self._held = self._stopping = False
        self._raised = None
        self._raise_pending()

    @property
    def raised(self) -> TrialInterrupted | None:
        """The stop raised into this trial, if any: a library may turn it into an error of its
        own on the way up (OmegaConf does, mid-update), and the trial was still stopped."""
        return self._raised

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            self._raise_pending()

    def _raise_pending(self) -> None:
        if not self._depth and not self._held and self._pending is not None:
            stop, self._pending = self._pending, None
            raise stop
