"""Live progress: a rich bar on a terminal, plain periodic lines in logs and CI."""

from __future__ import annotations

import sys
import time
from collections import Counter
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from sweeper.state import TrialState

__all__ = ["SweepProgress"]


class SweepProgress:
    """Shows done, running and failed trials, and the ETA.

    >>> with SweepProgress(total=4) as bar:
    ...     bar.update(Counter({TrialState.COMPLETED: 4}), running=0)
    """

    def __init__(self, total: int, label: str = "trials", plain_every_s: float = 10.0) -> None:
        self.total = total
        self.console = Console(stderr=True)
        self.plain = not self.console.is_terminal
        self.plain_every_s = plain_every_s
        self._last_plain = 0.0
        self._last_line = ""
        self._started = time.monotonic()
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("running {task.fields[running]}  failed {task.fields[failed]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self._task = self._progress.add_task(label, total=total, running=0, failed=0)

    def __enter__(self) -> SweepProgress:
        if not self.plain:
            self._progress.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        if not self.plain:
            self._progress.stop()
        else:
            self._print_plain(force=True)

    def update(self, finished: Counter[TrialState], running: int) -> None:
        done = sum(finished.values())
        # Stopped trials (cancelled, requeued) are not failures: resume runs them.
        failed = sum(n for s, n in finished.items()
                     if s in (TrialState.FAILED, TrialState.TIMEOUT, TrialState.LOST))
        self._progress.update(self._task, completed=done, running=running, failed=failed)
        self._state = (done, running, failed)
        if self.plain:
            self._print_plain()

    def _print_plain(self, force: bool = False) -> None:
        now = time.monotonic()
        done, running, failed = getattr(self, "_state", (0, 0, 0))
        if not force and now - self._last_plain < self.plain_every_s and done < self.total:
            return
        elapsed = now - self._started
        eta = f"{elapsed / done * (self.total - done):.0f}s" if done else "?"
        line = (f"[sweeper] {done}/{self.total} done, {running} running, {failed} failed, "
                f"elapsed {elapsed:.0f}s, ETA {eta}")
        if line != self._last_line:
            print(line, file=sys.stderr, flush=True)
            self._last_line = line
        self._last_plain = now
