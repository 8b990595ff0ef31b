"""Result rows: one Parquet file per trial, written atomically; failures are rows too."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from sweeper.locks import dir_lock
from sweeper.paths import SweepPaths, temp_beside
from sweeper.state import TrialState

__all__ = ["TrialOutcome", "read_attempt", "read_state", "read_states", "write_result"]


@dataclass
class TrialOutcome:
    """Everything the runner learnt about one attempt at a trial."""

    status: TrialState
    started_at: dt.datetime
    finished_at: dt.datetime
    attempt: int = 1
    metrics: Mapping[str, float | int] = field(default_factory=dict)
    curve: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    traceback: str | None = None
    device: str = "cpu"
    config_yaml: str | None = None
    torch_version: str | None = None
    provenance: Mapping[str, Any] = field(default_factory=dict)


_PROVENANCE_TYPES = {"hostname": pa.string(), "git_commit": pa.string(), "git_dirty": pa.bool_(),
                     "python_version": pa.string()}


def _curve_array(curve: list[dict[str, Any]]) -> pa.Array:
    if not curve:
        return pa.nulls(1)
    names: dict[str, None] = {"epoch": None}
    for row in curve:
        names.update(dict.fromkeys(row))
    fields = [pa.field("epoch", pa.int64())] + [pa.field(n, pa.float64()) for n in names if n != "epoch"]
    return pa.array([curve], pa.list_(pa.struct(fields)))


def _metric_array(value: float | int) -> pa.Array:
    return pa.array([value], pa.int64() if isinstance(value, int) else pa.float64())


def _slurm_ids() -> tuple[str | None, int | None]:
    job = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID")
    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    return job, int(task) if task is not None else None


def _own(column: pa.ChunkedArray) -> pa.Array:
    """The row's own values: a dictionary-encoded column (the trial table's ``overrides``)
    would otherwise carry the whole table's dictionary into every one-row file."""
    t = column.type
    if pa.types.is_list(t) and pa.types.is_dictionary(t.value_type):
        return column.cast(pa.list_(t.value_type.value_type)).combine_chunks()
    if pa.types.is_dictionary(t):
        return column.cast(t.value_type).combine_chunks()
    return column.combine_chunks()


def row_table(trial: pa.Table, outcome: TrialOutcome) -> pa.Table:
    """The trial's row from trials.parquet, followed by the outcome's columns."""
    cols: dict[str, pa.Array] = {name: _own(trial.column(name)) for name in trial.column_names}
    cols["status"] = pa.array([outcome.status.value])
    for name, value in outcome.metrics.items():
        cols[name] = _metric_array(value)
    cols["curve"] = _curve_array(outcome.curve)
    job, task = _slurm_ids()
    utc = pa.timestamp("us", tz="UTC")
    extra: dict[str, tuple[Any, pa.DataType]] = {
        "error": (outcome.error, pa.string()),
        "traceback": (outcome.traceback, pa.string()),
        "started_at": (outcome.started_at, utc),
        "finished_at": (outcome.finished_at, utc),
        "duration_s": ((outcome.finished_at - outcome.started_at).total_seconds(), pa.float64()),
        "attempt": (outcome.attempt, pa.int64()),
        "slurm_job_id": (job, pa.string()),
        "slurm_array_task_id": (task, pa.int64()),
        "device": (outcome.device, pa.string()),
        "torch_version": (outcome.torch_version, pa.string()),
        "config_yaml": (outcome.config_yaml, pa.string()),
    }
    for name, (value, arrow_type) in extra.items():
        cols[name] = pa.array([value], arrow_type)
    for name, value in outcome.provenance.items():
        cols[name] = pa.array([value], _PROVENANCE_TYPES.get(name))
    return pa.table(cols)


def write_result(paths: SweepPaths, trial: pa.Table, outcome: TrialOutcome) -> bool:
    """Write the trial's row atomically. A settled result (completed, pruned) is never
    replaced: returns False (and writes nothing) when one is already there."""
    trial_id = trial.column("trial_id")[0].as_py()
    target = paths.result(trial_id)
    table = row_table(trial, outcome)
    with temp_beside(target) as tmp:
        # Small uncompressed files without statistics are the cheapest to merge.
        pq.write_table(table, tmp, compression="none", write_statistics=False)
        # Check and rename under one lock: a late row never replaces a completed one.
        with dir_lock(paths.write_lock, "the results dir", timeout_s=120):
            old = read_state(target)
            if old is not None and old.is_settled():
                return False
            os.replace(tmp, target)
    return True


def read_state(path: os.PathLike[str] | str) -> TrialState | None:
    """The state recorded in one result file, or None if it is absent or unreadable."""
    try:
        return TrialState.parse(pq.read_table(path, columns=["status"]).column(0)[0].as_py())
    except (OSError, pa.ArrowException, IndexError, KeyError):
        return None


def read_attempt(path: os.PathLike[str] | str) -> int:
    try:
        return int(pq.read_table(path, columns=["attempt"]).column(0)[0].as_py())
    except (OSError, pa.ArrowException, IndexError, KeyError, TypeError):
        return 0


def read_states(paths: SweepPaths, trial_ids: Iterable[int] | None = None) -> dict[int, TrialState]:
    """trial_id -> recorded state, for every readable result file."""
    files = paths.result_files() if trial_ids is None else [paths.result(i) for i in trial_ids]
    states = {}
    for f in files:
        state = read_state(f)
        if state is not None:
            states[int(f.stem.split("-")[1])] = state
    return states
