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

import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import pyarrow as pa

from sweeper.attempts import AttemptMarker, read_markers
from sweeper.executors.slurm.queue import Queued
from sweeper.paths import SweepPaths
from sweeper.state import TrialState

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
    left_at: float | None = None  # when the element left the queue (sacct End, or first seen)
    driver_alive: bool | None = False  # the local driver: alive, dead, or unknown (other host)


def _current_row(f: Facts) -> RowFacts | None:
    """The row, when the latest attempt (and the latest launch) wrote it."""
    row = f.row
    if row is None:
        return None
    if f.marker is not None and f.marker.attempt > row.attempt:
        return None
    if f.submitted_at is not None and row.finished_at < f.submitted_at - _SKEW_S:
        return None  # written before the trial was submitted again
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
        return TrialState.LOST if flight else TrialState.NOT_SUBMITTED
    return _left_queue(f, now, grace_s)


def _in_queue(f: Facts, current: RowFacts | None, flight: AttemptMarker | None) -> TrialState:
    q = f.queued
    assert q is not None
    if not q.running:
        return TrialState.REQUEUED if current and current.state is TrialState.REQUEUED \
            else TrialState.PENDING
    run_start = (q.started_at or 0.0) - _SKEW_S
    if flight and flight.element == f.element and flight.started_at >= run_start:
        return TrialState.RUNNING
    if current and current.element == f.element and current.finished_at >= run_start:
        return current.state  # finished earlier in this run of its task
    return TrialState.PENDING  # waits its turn in the task, or the task is starting


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
    if acct.startswith("CANCELLED"):
        return TrialState.CANCELLED
    if not acct and f.array_in_acct and f.marker is None:
        return TrialState.CANCELLED  # accounting has its array but not it: cancelled unstarted
    if acct == "TIMEOUT":
        return TrialState.TIMEOUT
    since = f.left_at if f.left_at is not None else f.submitted_at or 0.0
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


@dataclass
class _Assignment:
    element: str
    submitted_at: float


class SweepWatcher:
    """Polls a sweep dir; remembers between polls what left the queue and what sacct said."""

    def __init__(self, paths: SweepPaths, grace_s: float = 30.0, use_sacct: bool = True) -> None:
        self.paths = paths
        self.grace_s = grace_s
        self.use_sacct = use_sacct
        self._left_at: dict[str, float] = {}
        self._acct: dict[str, dict[str, str]] = {}
        self._arrays_in_acct: set[str] = set()
        self.sacct_calls = 0

    def poll(self) -> SweepState:
        from sweeper.driver import read_driver
        from sweeper.executors.slurm.queue import queue_states
        from sweeper.trials import trial_ids

        now = time.time()
        assigned, job_ids = _assignments(self.paths)
        queue = queue_states(job_ids) if job_ids else {}
        result = SweepState({}, queue_ok=queue is not None)
        rows = read_row_facts(self.paths)
        markers = read_markers(self.paths)
        driver = read_driver(self.paths)
        driver_alive = driver.alive() if driver else False
        gone = self._note_gone(assigned, queue or {}, rows, markers, now)
        result.accounting_ok = self._ask_sacct(gone)
        for tid in trial_ids(self.paths):
            a = assigned.get(tid)
            element = a.element if a else None
            acct = self._acct.get(element or "", {})
            facts = Facts(rows.get(tid), markers.get(tid), element,
                          a.submitted_at if a else None, queue is not None,
                          (queue or {}).get(element or ""), acct.get("State", ""),
                          element is not None and element.split("_")[0] in self._arrays_in_acct,
                          self._left_at.get(element or ""), driver_alive)
            result.states[tid] = classify(facts, now, self.grace_s)
            if acct.get("State") and not result.states[tid].is_settled():
                result.details[tid] = f"{element}: {acct['State']}"
        return result

    def _note_gone(self, assigned: Mapping[int, _Assignment], queue: Mapping[str, Queued],
                   rows: Mapping[int, RowFacts], markers: Mapping[int, AttemptMarker],
                   now: float) -> list[str]:
        """Elements out of the queue whose trials have no current row: ask sacct of these."""
        gone = []
        for tid, a in assigned.items():
            if a.element in queue:
                self._left_at.pop(a.element, None)
                self._acct.pop(a.element, None)
                continue
            row = rows.get(tid)
            f = Facts(row, markers.get(tid), a.element, a.submitted_at)
            if row is not None and (row.state.is_settled() or _current_row(f) is not None):
                continue
            self._left_at.setdefault(a.element, now)
            if a.element not in self._acct:
                gone.append(a.element)
        return sorted(set(gone))

    def _ask_sacct(self, elements: list[str]) -> bool | None:
        from sweeper.executors.slurm.queue import accounting_states

        if not elements or not self.use_sacct:
            return None
        self.sacct_calls += 1
        acct = accounting_states(sorted({e.split("_")[0] for e in elements}))
        if acct is None:
            return False
        self._arrays_in_acct |= {k.split("_")[0] for k in acct}
        for element in elements:
            info = acct.get(element)
            if info is None:
                continue
            self._acct[element] = info
            end = _sacct_time(info.get("End", ""))
            if end is not None:
                self._left_at[element] = end  # the grace counts from when it really ended
        return True


def _sacct_time(text: str) -> float | None:
    try:
        return time.mktime(time.strptime(text.strip(), "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None


def _assignments(paths: SweepPaths) -> tuple[dict[int, _Assignment], list[str]]:
    """trial_id -> the array element of its latest launch; and every array's job id."""
    from sweeper.executors.slurm.records import read_launches

    assigned: dict[int, _Assignment] = {}
    job_ids: list[str] = []
    for launch in read_launches(paths):
        job_ids.extend(arr.job_id for arr in launch.arrays)
        for job, task, ids in launch.tasks():
            for tid in ids:
                assigned[tid] = _Assignment(f"{job}_{task}", launch.created_at)
    return assigned, job_ids


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


_STATE_COLUMNS = ("trial_id", "status", "attempt", "slurm_job_id", "slurm_array_task_id",
                  "finished_at")


def _state_rows(paths: SweepPaths) -> pa.Table:
    """The state columns of every result row, reusing merge's incremental state."""
    try:
        from sweeper.merge import current_rows
    except ImportError:
        current_rows = None
    if current_rows is not None:
        return current_rows(paths, columns=_STATE_COLUMNS)
    import pyarrow.parquet as pq

    tables = []
    for path in paths.result_files():
        try:
            t = pq.read_table(path)
        except (OSError, pa.ArrowException):
            continue
        tables.append(t.select([c for c in _STATE_COLUMNS if c in t.column_names]))
    return pa.concat_tables(tables, promote_options="permissive") if tables else pa.table({})


def sweep_state(paths: SweepPaths, grace_s: float = 30.0, use_sacct: bool = True) -> SweepState:
    """One poll (see :class:`SweepWatcher`)."""
    return SweepWatcher(paths, grace_s, use_sacct).poll()
