"""Where every trial stands, from the sweep dir alone: result rows, attempt markers, the local
driver record, launch records, the SLURM queue (one squeue call per poll) and accounting
(sacct, only for array elements that left the queue without a row).

The rules live in :func:`classify`, a pure function of those facts, so they are tested
without a cluster. A row counts only for the attempt that wrote it: an earlier attempt's row
never stands for a trial that runs again. A :class:`SweepWatcher` keeps what it learnt
between polls (when an element left the queue, what sacct said of it), so ``--wait`` and
``--watch`` ask sacct once per element, and count the grace period from when it left.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import pyarrow as pa

from sweeper.attempts import AttemptMarker, read_markers
from sweeper.executors.slurm.queue import Queued, epoch_s
from sweeper.executors.slurm.records import Assignment
from sweeper.paths import SweepPaths
from sweeper.state import STOPPED, TrialState

__all__ = ["RowFacts", "SweepState", "SweepWatcher", "classify"]

_SKEW_S = 2.0  # clocks of nodes and login node may differ a little


@dataclass(frozen=True)
class RowFacts:
    """What a trial's result row says: its state, attempt, writer and end."""

    state: TrialState
    attempt: int
    element: str | None
    finished_at: float


@dataclass(frozen=True)
class Facts:
    """Everything known about one trial at one poll."""

    row: RowFacts | None = None
    marker: AttemptMarker | None = None
    element: str | None = None  # the array element of its latest launch
    submitted_at: float | None = None  # when that launch was made
    queue_ok: bool = True
    queued: Queued | None = None
    acct_state: str = ""  # sacct State of the element, once it left the queue
    array_in_acct: bool = False  # sacct knows the element's array
    left_at: float | None = None  # when it left the queue: sacct End, or the poll that saw it go
    driver_alive: bool | None = False  # the local driver: alive, dead, or unknown (other host)


def _current_row(f: Facts) -> RowFacts | None:
    """The row, when the latest attempt (and the latest launch) wrote it."""
    row = f.row
    if row is None or (f.marker is not None and f.marker.attempt > row.attempt):
        return None
    if f.element is not None and row.element != f.element and f.submitted_at is not None \
            and row.finished_at < f.submitted_at:
        return None  # an earlier launch's row: the trial was submitted again since
    return row


def classify(f: Facts, now: float, grace_s: float) -> TrialState:
    """The trial's state (see the module docstring)."""
    if f.row is not None and f.row.state.is_settled():
        return f.row.state
    current = _current_row(f)
    flight = f.marker if f.marker and (f.row is None or f.marker.attempt > f.row.attempt) else None
    if f.element is not None and f.queued is not None:
        return _in_queue(f, current, flight)
    if f.element is not None and not f.queue_ok:
        return TrialState.UNKNOWN
    if flight is not None and f.element is None:
        return _local_flight(f, flight)
    if current is not None:
        # A checkpointed trial out of the queue has used up its requeues.
        return TrialState.TIMEOUT if current.state is TrialState.REQUEUED else current.state
    if f.element is None:
        # A live local driver runs every trial without a row, one slot at a time.
        return TrialState.PENDING if f.driver_alive else TrialState.NOT_SUBMITTED
    return _left_queue(f, now, grace_s)


def _in_queue(f: Facts, current: RowFacts | None, flight: AttemptMarker | None) -> TrialState:
    q = f.queued
    assert q is not None
    run_start = (q.started_at or 0.0) - _SKEW_S
    if q.running and flight and flight.element == f.element and flight.started_at >= run_start:
        return TrialState.RUNNING
    if q.running and current and current.element == f.element \
            and current.finished_at >= run_start and current.state not in STOPPED:
        return current.state  # finished earlier in this run of its task
    # Waiting its turn or starting; or stopped from outside in this run, so its task is
    # being requeued (or leaves the queue): not final while the element is still queued.
    return TrialState.REQUEUED if current and current.state is TrialState.REQUEUED \
        else TrialState.PENDING


def _local_flight(f: Facts, flight: AttemptMarker) -> TrialState:
    alive = flight.alive_here()
    if alive:
        return TrialState.RUNNING
    if alive is None and f.driver_alive is not False:
        return TrialState.RUNNING  # another host's sweep: what it says holds
    if alive is False and f.driver_alive:
        return TrialState.RUNNING  # just ended: its driver writes the row now
    return TrialState.LOST


def _left_queue(f: Facts, now: float, grace_s: float) -> TrialState:
    acct = f.acct_state.split(" ")[0]
    started_here = f.marker is not None and f.marker.element == f.element
    if acct.startswith("CANCELLED"):
        return TrialState.CANCELLED
    if not acct and f.array_in_acct and not started_here:
        return TrialState.CANCELLED  # accounting has its array but not it: cancelled unstarted
    if acct == "TIMEOUT":
        return TrialState.TIMEOUT
    since = f.left_at
    if since is None:  # unseen leaving, and no sacct End: its last sign of life
        since = max(f.submitted_at or 0.0, f.marker.started_at if started_here and f.marker else 0.0)
    if now - since < grace_s:
        return TrialState.PENDING  # just left the queue: its row may still be on its way
    return TrialState.LOST


@dataclass
class SweepState:
    """Each trial's state, and what the queue and accounting said."""

    states: dict[int, TrialState]
    queue_ok: bool = True
    accounting_ok: bool | None = None
    details: dict[int, str] = field(default_factory=dict)

    def counts(self) -> Counter[TrialState]:
        return Counter(self.states.values())

    @property
    def active(self) -> bool:
        return any(s.is_active() for s in self.states.values())

    def running_here(self) -> list[int]:
        return sorted(t for t, s in self.states.items() if s is TrialState.RUNNING)


class SweepWatcher:
    """Polls a sweep dir; remembers between polls what left the queue and what sacct said.

    sacct is asked only of elements that left the queue without a current row, in one call
    per poll; an element it has told the end of is never asked again, and one it could not
    tell about yet (accounting lags a few seconds, or is down) again after ``acct_retry_s``,
    twice that, and so on up to every ``acct_interval_s``.
    """

    acct_retry_s = 1.0
    acct_interval_s = 15.0

    def __init__(self, paths: SweepPaths, grace_s: float = 30.0, use_sacct: bool = True) -> None:
        self.paths = paths
        self.grace_s = grace_s
        self.use_sacct = use_sacct
        self._seen_queued: set[str] = set()
        self._left_at: dict[str, float] = {}
        self._acct: dict[str, dict[str, str]] = {}
        self._asked: dict[str, tuple[float, int]] = {}  # element -> last asked, times asked
        self._told_end: set[str] = set()  # elements whose end sacct has told
        self._arrays_in_acct: set[str] = set()
        self._acct_ok: bool | None = None
        self.sacct_calls = 0

    def poll(self) -> SweepState:
        from sweeper.driver import read_driver
        from sweeper.executors.slurm.queue import queue_states
        from sweeper.executors.slurm.records import assignments
        from sweeper.trials import trial_ids

        now = time.time()
        assigned, job_ids = assignments(self.paths)
        queue = queue_states(job_ids) if job_ids else {}
        rows = read_row_facts(self.paths)
        markers = read_markers(self.paths)
        for tid, m in markers.items():
            if tid not in assigned and m.element:
                # An adaptive worker's trial: the element that asked for it runs it.
                assigned[tid] = Assignment(m.element, m.started_at)
        driver = read_driver(self.paths)
        driver_alive = driver.alive() if driver else False
        if queue is not None:  # an unreadable queue says nothing about what left it
            self._ask_sacct(self._note_gone(assigned, queue, rows, markers, now), now)
        result = SweepState({}, queue_ok=queue is not None, accounting_ok=self._acct_ok)
        for tid in trial_ids(self.paths):
            a = assigned.get(tid)
            facts = self._facts(a, rows.get(tid), markers.get(tid), queue, driver_alive)
            result.states[tid] = classify(facts, now, self.grace_s)
            if facts.acct_state and not result.states[tid].is_settled():
                result.details[tid] = f"{facts.element}: {facts.acct_state}"
        return result

    def _facts(self, a: Assignment | None, row: RowFacts | None, marker: AttemptMarker | None,
               queue: Mapping[str, Queued] | None, driver_alive: bool | None) -> Facts:
        if a is None:
            return Facts(row, marker, driver_alive=driver_alive)
        return Facts(row, marker, a.element, a.submitted_at, queue is not None,
                     (queue or {}).get(a.element), self._acct.get(a.element, {}).get("State", ""),
                     a.element.split("_")[0] in self._arrays_in_acct,
                     self._left_at.get(a.element), driver_alive)

    def _note_gone(self, assigned: Mapping[int, Assignment], queue: Mapping[str, Queued],
                   rows: Mapping[int, RowFacts], markers: Mapping[int, AttemptMarker],
                   now: float) -> list[str]:
        """Elements out of the queue whose trials have no current row, due to be asked of."""
        due = set()
        for tid, a in assigned.items():
            e = a.element
            if e in queue:  # (again, when requeued): what was learnt of an earlier run is void
                self._seen_queued.add(e)
                for memo in (self._left_at, self._acct, self._asked):
                    memo.pop(e, None)
                self._told_end.discard(e)
                continue
            row = rows.get(tid)
            if row is not None and (row.state.is_settled() or _current_row(
                    Facts(row, markers.get(tid), e, a.submitted_at)) is not None):
                continue
            if e in self._seen_queued:
                self._left_at.setdefault(e, now)  # seen leaving: until sacct tells its End
            if e not in self._told_end and self._due(e, now):
                due.add(e)
        return sorted(due)

    def _due(self, element: str, now: float) -> bool:
        last, times = self._asked.get(element, (-math.inf, 0))
        return now - last >= min(self.acct_interval_s, self.acct_retry_s * 2 ** max(0, times - 1))

    def _ask_sacct(self, elements: list[str], now: float) -> None:
        from sweeper.executors.slurm.queue import accounting_states

        if not elements or not self.use_sacct:
            return
        self.sacct_calls += 1
        self._asked.update({e: (now, self._asked.get(e, (now, 0))[1] + 1) for e in elements})
        acct = accounting_states(sorted({e.split("_")[0] for e in elements}))
        self._acct_ok = acct is not None
        if acct is None:
            return
        self._arrays_in_acct |= {k.split("_")[0] for k in acct}
        for element in elements:
            info = acct.get(element)
            if info is None:  # final once its array is known: cancelled before it started
                if element.split("_")[0] in self._arrays_in_acct:
                    self._told_end.add(element)
                continue
            self._acct[element] = info
            end = epoch_s(info.get("End", ""))
            if end is not None:
                self._left_at[element] = end  # the grace counts from when it really ended
                self._told_end.add(element)


def read_row_facts(paths: SweepPaths) -> dict[int, RowFacts]:
    """trial_id -> what its result row says, for every readable row."""
    table = _state_rows(paths)
    facts = {}
    for r in table.to_pylist():
        state = TrialState.parse(r.get("status"))
        if state is None:
            continue
        job, task = r.get("slurm_job_id"), r.get("slurm_array_task_id")
        element = f"{job}_{task}" if job and task is not None else job
        finished = r.get("finished_at")
        facts[int(r["trial_id"])] = RowFacts(state, int(r.get("attempt") or 1), element,
                                             finished.timestamp() if finished else 0.0)
    return facts


def _state_rows(paths: SweepPaths) -> pa.Table:
    """The state columns of every result row, reusing merge's incremental state."""
    from sweeper.merge import STATE_COLUMNS, current_rows

    return current_rows(paths, columns=STATE_COLUMNS)


def sweep_state(paths: SweepPaths, grace_s: float = 30.0, use_sacct: bool = True) -> SweepState:
    """One poll (see :class:`SweepWatcher`)."""
    return SweepWatcher(paths, grace_s, use_sacct).poll()
