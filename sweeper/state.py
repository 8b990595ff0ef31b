"""One trial state, asked by every command: status, resume, ``--wait``, ``--watch``, exit
codes, merge and the report.

A trial is *active* while it is queued or running, *finished* once an attempt has ended, and
*settled* when it never needs to run again (completed, or pruned: stopped early on purpose,
which is not a failure). Everything else that is finished may be run again by ``resume``.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable

__all__ = ["ORDER", "STOPPED", "TrialState", "exit_code_for"]


class TrialState(str, enum.Enum):
    """Where one trial stands. The values are what result rows and ``status`` show.

    >>> TrialState("pruned").is_finished(), TrialState.PRUNED.is_settled()
    (True, True)
    >>> TrialState.REQUEUED.is_active(), TrialState.LOST.needs_run(retry_failed=False)
    (True, True)
    """

    NOT_SUBMITTED = "not submitted"
    PENDING = "pending"
    RUNNING = "running"
    REQUEUED = "requeued"
    COMPLETED = "completed"
    PRUNED = "pruned"
    FAILED = "failed"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    LOST = "lost"
    MISSING = "missing"
    UNKNOWN = "unknown"

    def is_active(self) -> bool:
        """Queued or running now: ``--wait`` and ``--watch`` keep waiting, resume skips it."""
        return self in _ACTIVE

    def is_finished(self) -> bool:
        """An attempt has ended (well or not) and nothing runs it now."""
        return self in _FINISHED

    def is_settled(self) -> bool:
        """Finished for good: never run again, and not a failure."""
        return self in _SETTLED

    def needs_run(self, retry_failed: bool) -> bool:
        """What ``resume`` runs: every unsettled, inactive trial; failed ones on request."""
        if self is TrialState.FAILED:
            return retry_failed
        return not (self.is_settled() or self.is_active() or self is TrialState.UNKNOWN)

    @classmethod
    def parse(cls, value: object) -> TrialState | None:
        """The state a result row records, or None for a missing or foreign value."""
        try:
            return cls(value)
        except ValueError:
            return None


_ACTIVE = frozenset({TrialState.PENDING, TrialState.RUNNING, TrialState.REQUEUED})
_SETTLED = frozenset({TrialState.COMPLETED, TrialState.PRUNED})
_FINISHED = _SETTLED | {TrialState.FAILED, TrialState.TIMEOUT, TrialState.CANCELLED,
                        TrialState.LOST}

#: Stopped from outside (scancel, a time limit, a preemption): a worker starts no further trial.
STOPPED = frozenset({TrialState.CANCELLED, TrialState.TIMEOUT, TrialState.REQUEUED})

#: The order in which tables list states.
ORDER = tuple(TrialState)


def exit_code_for(states: Iterable[TrialState], interrupted: bool = False) -> int:
    """0 when every trial that ran is settled, 1 when any failed, 130 when stopped early."""
    if interrupted:
        return 130
    counts = Counter(states)
    bad = sum(n for s, n in counts.items() if s.is_finished() and not s.is_settled())
    return 1 if bad else 0
