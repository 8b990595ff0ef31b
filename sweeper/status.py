"""Where every trial stands, from the sweep dir alone: result files, launch records, the SLURM
queue (one squeue call) and accounting (one sacct call, with back-off, optional).

States: completed, failed, timeout, cancelled (from result rows); pending, running, requeued
(queued again after a checkpoint) from the queue; lost (its array task left the queue without
writing a row, after a grace period); not submitted (no launch holds it). Never blocks on
sacct: without it, fewer details, the same counts.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from sweeper.launches import read_launches
from sweeper.paths import SweepPaths
from sweeper.results import read_statuses
from sweeper.slurm_queue import accounting_states, queue_states

__all__ = ["IN_QUEUE", "SweepState", "sweep_state"]

IN_QUEUE = frozenset({"pending", "running", "requeued"})
_RUNNING = {"RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED", "STOPPED"}
_ROW_STATES = {"completed", "failed", "timeout", "cancelled"}


@dataclass
class SweepState:
    """Each trial's state, and what the queue and accounting said."""

    states: dict[int, str]
    queue_ok: bool = True
    accounting_ok: bool | None = None
    details: dict[int, str] = field(default_factory=dict)

    def counts(self) -> Counter[str]:
        return Counter(self.states.values())

    @property
    def active(self) -> bool:
        return any(s in IN_QUEUE for s in self.states.values())


def _trial_state(row: str | None, queued: str | None, first_unfinished: bool) -> str | None:
    if row == "completed":
        return "completed"
    if queued is not None:
        if queued in _RUNNING:
            if row in _ROW_STATES and not first_unfinished:
                return row  # finished earlier in this running task
            return "running" if first_unfinished else "pending"
        return "requeued" if row == "requeued" else "pending"
    if row in _ROW_STATES:
        return row
    if row == "requeued":
        return "timeout"  # checkpointed at its limit, but no longer queued: out of retries
    return None


def sweep_state(paths: SweepPaths, n_trials: int, grace_s: float = 30.0,
                use_sacct: bool = True) -> SweepState:
    """The state of trials 0..n_trials-1 (see the module docstring)."""
    rows = read_statuses(paths)
    assigned: dict[int, tuple[str, float]] = {}
    tasks: dict[str, list[int]] = {}
    job_ids: list[str] = []
    for launch in read_launches(paths):
        for arr in launch.arrays:
            job_ids.append(arr.job_id)
        for job, task, ids in launch.tasks():
            tasks[f"{job}_{task}"] = ids
            for tid in ids:
                assigned[tid] = (f"{job}_{task}", launch.created_at)
    queue = queue_states(job_ids) if job_ids else {}
    result = SweepState({}, queue_ok=queue is not None)
    queue = queue or {}
    acct = accounting_states(job_ids) if job_ids and use_sacct else None
    result.accounting_ok = None if not job_ids or not use_sacct else acct is not None
    known_arrays = {key.split("_")[0] for key in (acct or {})}
    for tid in range(n_trials):
        row = rows.get(tid)
        element: str | None = None
        submitted_at = 0.0
        if tid in assigned:
            element, submitted_at = assigned[tid]
        queued = queue.get(element) if element else None
        # In a running task of k trials, the first without a final row is the one running.
        first = element is not None and next(
            (t for t in tasks[element] if rows.get(t) in (None, "requeued")), None) == tid
        state: str | None = _trial_state(row, queued, first)
        if state is None and element is None:
            state = "not run yet"
        elif state is None and not result.queue_ok:
            state = "unknown"
        elif state is None:
            info = (acct or {}).get(element or "", {})
            slurm_state = info.get("State", "").split(" ")[0]
            if slurm_state:
                result.details[tid] = f"{element}: {slurm_state}"
            if slurm_state.startswith("CANCELLED"):
                state = "cancelled"
            elif not slurm_state and element and element.split("_")[0] in known_arrays:
                # Accounting knows the array but not this element: it left the queue without
                # ever starting, which only a cancellation does.
                state = "cancelled"
                result.details[tid] = f"{element}: cancelled before it started"
            elif slurm_state == "TIMEOUT":
                state = "timeout"
            elif time.time() - submitted_at < grace_s and slurm_state in ("", "PENDING", "RUNNING"):
                state = "pending"  # just submitted, or the row is still reaching this file system
            else:
                state = "lost"
        result.states[tid] = state
    return result
