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

__all__ = ["CampaignProgress", "SweepProgress", "campaign_display"]

#: The campaign display a local campaign's stages report to (one bar for every stage).
_campaign: CampaignProgress | None = None


def campaign_display() -> CampaignProgress | None:
    """The local campaign's display, while one runs."""
    return _campaign


def _columns() -> tuple[object, ...]:
    return (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("running {task.fields[running]}  failed {task.fields[failed]}"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())


class SweepProgress:
    """Shows done, running and failed trials, and the ETA.

    >>> with SweepProgress(total=4) as bar:
    ...     bar.update(Counter({TrialState.COMPLETED: 4}), running=0)
    """

    def __init__(self, total: int, label: str = "trials", plain_every_s: float = 10.0) -> None:
        self.total = total
        self.outer = _campaign  # inside a campaign: its one display shows this stage
        self.console = Console(stderr=True)
        self.plain = not self.console.is_terminal
        self.plain_every_s = plain_every_s
        self._last_plain = 0.0
        self._last_line = ""
        self._started = time.monotonic()
        self._progress = Progress(*_columns(), console=self.console,  # type: ignore[arg-type]
                                  transient=False)
        self._task = self._progress.add_task(label, total=total, running=0, failed=0)

    def __enter__(self) -> SweepProgress:
        if self.outer is not None:
            self.outer.begin_stage(self.total)
        elif not self.plain:
            self._progress.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.outer is not None:
            self.outer.end_stage()
        elif not self.plain:
            self._progress.stop()
        else:
            self._print_plain(force=True)

    def update(self, finished: Counter[TrialState], running: int) -> None:
        done = sum(finished.values())
        # Stopped trials (cancelled, requeued) are not failures: resume runs them.
        failed = sum(n for s, n in finished.items()
                     if s in (TrialState.FAILED, TrialState.TIMEOUT, TrialState.LOST))
        if self.outer is not None:
            self.outer.update(done, running, failed)
            return
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


class CampaignProgress:
    """One display for a local campaign: the trials of every stage on one bar, described by
    the stage running now. Each stage's executor reports to it (its own bar stays off); in
    logs and CI it prints a plain line now and then, as a sweep's bar does.

    >>> with CampaignProgress([3, 2], names=["coarse", "final"]) as show:
    ...     show.stage(0)
    ...     with SweepProgress(total=3) as bar:
    ...         bar.update(Counter({TrialState.COMPLETED: 3}), running=0)
    ...     show.total
    5
    """

    def __init__(self, estimates: list[int], names: list[str], done_before: int = 0,
                 plain_every_s: float = 10.0) -> None:
        from sweeper.console import err

        self.estimates, self.names = list(estimates), names
        self.offset, self.failed_before, self.index = done_before, 0, 0
        self.console = err
        self.plain = not self.console.is_terminal
        self.plain_every_s = plain_every_s
        self._last_plain = 0.0
        self._started = time.monotonic()
        self._state = (0, 0, 0)
        self._progress = Progress(*_columns(), console=self.console,  # type: ignore[arg-type]
                                  transient=False)
        self._task = self._progress.add_task("campaign", total=self.total, running=0, failed=0)

    @property
    def total(self) -> int:
        return sum(self.estimates)

    def __enter__(self) -> CampaignProgress:
        global _campaign
        _campaign = self
        if not self.plain:
            self._progress.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        global _campaign
        _campaign = None
        if not self.plain:
            self._progress.stop()

    def stage(self, index: int) -> None:
        """Stage ``index`` (0-based) starts: the bar is described by it."""
        self.index = index
        self._progress.update(self._task, description=f"stage {index + 1}/{len(self.names)} "
                              f"{self.names[index]}")

    def begin_stage(self, total: int) -> None:
        self.estimates[self.index] = total  # the stage's real size, now it is planned
        self._progress.update(self._task, total=self.total)

    def update(self, done: int, running: int, failed: int) -> None:
        self._state = (done, running, failed)
        self._progress.update(self._task, completed=self.offset + done, running=running,
                              failed=self.failed_before + failed)
        if self.plain:
            self._print_plain()

    def end_stage(self) -> None:
        done, _, failed = self._state
        if self.plain:
            self._print_plain(force=True)
        self.offset += done
        self.failed_before += failed
        self._state = (0, 0, 0)

    def _print_plain(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_plain < self.plain_every_s:
            return
        done, running, failed = self._state
        print(f"[campaign] stage {self.index + 1}/{len(self.names)} {self.names[self.index]}: "
              f"{done}/{self.estimates[self.index]} done; campaign {self.offset + done}/"
              f"{self.total} trials, {running} running, {self.failed_before + failed} failed, "
              f"elapsed {now - self._started:.0f}s", file=sys.stderr, flush=True)
        self._last_plain = now
