"""Run trials inside a worker: trial row -> frozen config -> task(cfg) -> result row.

A library used by every worker (see :mod:`sweeper.worker`): a local trial process runs one
trial, a SLURM array task its k trials one after another. Each attempt first writes its
marker (:mod:`sweeper.attempts`); whatever the task does, a row is then written:
``completed``, ``pruned``, ``failed`` (with the traceback), ``timeout`` or ``cancelled``.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import sys
import traceback
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.dataset  # read_trials' filters need it: import it once, in the fork server
from omegaconf import DictConfig, OmegaConf

from sweeper import attempts, context, provenance, taskref
from sweeper.context import TrialInterrupted
from sweeper.errors import SweepDirError
from sweeper.metrics import to_metrics
from sweeper.paths import SweepPaths
from sweeper.record import SweepRecord
from sweeper.results import TrialOutcome, read_attempt, read_state, write_result
from sweeper.state import STOPPED, TrialState
from sweeper.stops import StopGuard
from sweeper.trial_config import set_hydra_config, trial_config
from sweeper.trials import read_trials

__all__ = ["StopGuard", "exit_code", "rows_by_id", "run_one", "run_rows", "seed_everything",
           "to_metrics", "trial_config", "write_orphan"]


def seed_everything(seed: int) -> None:
    """Seed python, numpy and (when the task imported it) torch."""
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:
        pass
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)
        threads = os.environ.get("SWEEPER_CPUS_PER_TRIAL")
        if threads:
            torch.set_num_threads(int(threads))


def _provenance(record: SweepRecord) -> dict[str, Any]:
    return {
        "hostname": provenance.host(),
        "git_commit": record.git_commit,
        "git_dirty": record.git_dirty,
        "python_version": provenance.python_version(),
    }


def _attempt(paths: SweepPaths, record: SweepRecord, row: dict[str, Any],
             outcome: TrialOutcome, guard: StopGuard) -> context.TrialContext:
    """Run the task; fill ``outcome``. Never raises: every failure becomes the outcome."""
    trial_id = int(row["trial_id"])
    ctx = context.TrialContext(trial_id, paths.root, paths.checkpoint_dir(trial_id),
                               curve=_curve_so_far(paths, trial_id))
    try:
        cfg = trial_config(record, row)
        outcome.config_yaml = _yaml(cfg)
        set_hydra_config(record, row)
        fn = taskref.load(record.variants[int(row["variant"])].task_fn)
        seed_everything(int(row["seed"]))
        if OmegaConf.select(cfg, "tracking.tensorboard", default=False):
            ctx.tensorboard_dir = paths.tensorboard_dir(trial_id)
        ctx.study = _study_link(paths, record, row)
        if ctx.study is not None and ctx.study.checks_before_start and ctx.study.should_prune():
            raise context.TrialPruned("pruned before it started: its config's finished folds "
                                      "are clearly worse than the best config's")
        with context.activate(ctx):
            value = fn(cfg)
        guard.hold()
        metrics = to_metrics(value, record.search.metrics[0], record.param_keys)
        context.close_tracking(ctx, {k: row[k] for k in record.param_keys}, dict(metrics))
        outcome.metrics, outcome.status = metrics, TrialState.COMPLETED
    except TrialInterrupted as ex:
        guard.hold()
        outcome.status, outcome.error = TrialState(ex.status), str(ex)
    except BaseException as ex:  # every failure becomes a row
        guard.hold()
        if _optuna_pruned(ex):
            outcome.status, outcome.error = TrialState.PRUNED, f"pruned: {ex}".rstrip(": ")
            return ctx
        if guard.raised is not None:  # stopped, whatever the error the stop turned into
            outcome.status = TrialState(guard.raised.status)
            outcome.error = f"{guard.raised} (surfaced as {type(ex).__name__}: {ex})"
            outcome.traceback = traceback.format_exc()
            return ctx
        outcome.status = TrialState.CANCELLED if isinstance(ex, KeyboardInterrupt) else TrialState.FAILED
        outcome.error = f"{type(ex).__name__}: {ex}"
        if isinstance(ex, SystemExit):
            outcome.error = f"the task called sys.exit({ex.code!r})"
        outcome.traceback = traceback.format_exc()
    return ctx


def run_one(paths: SweepPaths, record: SweepRecord, trial: pa.Table,
            guard: StopGuard | None = None) -> TrialState:
    """Run one trial and write its row; never raises for the task's own failures."""
    guard = guard or StopGuard()
    row = trial.to_pylist()[0]
    trial_id = int(row["trial_id"])
    target = paths.result(trial_id)
    state = read_state(target)
    if state is not None and state.is_settled():
        return state
    marker = _mark_start(paths, trial_id, guard)
    if marker is None:
        return TrialState.LOST
    now = dt.datetime.now(dt.timezone.utc)
    outcome = TrialOutcome(TrialState.FAILED, now, now, attempt=marker.attempt)
    ctx = _attempt(paths, record, row, outcome, guard)
    try:
        outcome.finished_at = dt.datetime.now(dt.timezone.utc)
        outcome.curve = ctx.curve
        if outcome.status is TrialState.PRUNED and not outcome.metrics:
            outcome.metrics = _at_the_cut(ctx.curve)
        outcome.device = provenance.device_name()
        outcome.torch_version = provenance.torch_version()
        outcome.provenance = _provenance(record)
        if not _write(paths, trial, outcome):
            return TrialState.LOST  # nothing recorded it: status shows it lost
        print(f"[sweeper] trial {trial_id}: {outcome.status.value}"
              + (f" ({outcome.error})" if outcome.error else ""), flush=True)
        _tell(ctx.study, outcome)
    finally:
        guard.release()
    return outcome.status


def _study_link(paths: SweepPaths, record: SweepRecord, row: dict[str, Any]) -> Any:
    """The trial's Optuna trial, when the sweep prunes or searches adaptively. A study that
    cannot be reached costs the trial its pruning, never its run."""
    if not record.search.uses_study:
        return None
    from sweeper.folds import FoldLink
    from sweeper.study import StudyLink

    try:
        if record.search.cross_validation.enabled:
            return FoldLink(paths, record, row)
        return StudyLink(paths, record, row)
    except Exception as ex:
        print(f"[sweeper] could not open the study ({type(ex).__name__}: {ex}); the trial runs "
              "without pruning", file=sys.stderr, flush=True)
        return None


def _tell(link: Any, outcome: TrialOutcome) -> None:
    if link is None:
        return
    try:
        link.tell(outcome)
    except Exception as ex:  # the next ask finds it running with a final row, and tells it
        print(f"[sweeper] could not tell the study ({type(ex).__name__}: {ex}); the next "
              "ask will", file=sys.stderr, flush=True)


def _optuna_pruned(ex: BaseException) -> bool:
    """``optuna.TrialPruned`` raised by the task (an Optuna user's habit)."""
    return type(ex).__name__ == "TrialPruned" and type(ex).__module__.startswith("optuna")


def _at_the_cut(curve: Sequence[dict[str, Any]]) -> dict[str, float | int]:
    """A pruned trial's metrics: the values of its last reported epoch, and how many it ran."""
    if not curve:
        return {"epochs_run": 0}
    last = {k: v for k, v in curve[-1].items() if k != "epoch" and v is not None}
    return {**last, "epochs_run": len(curve)}


def _mark_start(paths: SweepPaths, trial_id: int, guard: StopGuard) -> attempts.AttemptMarker | None:
    """The attempt's marker, written before the task runs; None (said why) when it cannot be
    written: unmarked, the trial could run twice at once, so it does not run."""
    try:
        with guard.deferred():
            return attempts.start_attempt(paths, trial_id, _next_attempt(paths, trial_id))
    except OSError as ex:
        _say_unwritten(f"the start of trial {trial_id}", ex, "it did not run")
        return None


def _next_attempt(paths: SweepPaths, trial_id: int) -> int:
    marker = attempts.read_marker(paths, trial_id)
    return max(read_attempt(paths.result(trial_id)), marker.attempt if marker else 0) + 1


def _write(paths: SweepPaths, trial: pa.Table, outcome: TrialOutcome) -> bool:
    """Write the row; a failure to write (disk full, no locks) is reported, not raised, so
    the worker's other trials still run. The trial then shows as lost, and resume reruns it."""
    try:
        write_result(paths, trial, outcome)
    except Exception as ex:
        _say_unwritten(f"the row of trial {trial.column('trial_id')[0]}", ex,
                       "it will show as lost")
        return False
    return True


def _say_unwritten(what: str, ex: BaseException, then: str) -> None:
    print(f"[sweeper] could not write {what} ({type(ex).__name__}: {ex}); {then}, and "
          "resume reruns it", file=sys.stderr, flush=True)


def _curve_so_far(paths: SweepPaths, trial_id: int) -> list[dict[str, Any]]:
    """The epochs an earlier, checkpointed run of this trial reported: the curve continues."""
    if not (paths.checkpoint_dir(trial_id) / context.CHECKPOINT_NAME).is_file():
        return []
    try:
        import pyarrow.parquet as pq

        curve = pq.read_table(paths.result(trial_id), columns=["curve"]).column(0)[0].as_py()
    except (OSError, pa.ArrowException, KeyError, IndexError):
        return []
    return [{k: v for k, v in point.items() if v is not None} for point in curve or []]


def write_orphan(paths: SweepPaths, record: SweepRecord, trial_id: int, status: TrialState,
                 error: str, started_at: dt.datetime | None = None) -> None:
    """Write the row of a trial whose process died before it could write one itself."""
    now = dt.datetime.now(dt.timezone.utc)
    outcome = TrialOutcome(status, started_at or now, now, error=error,
                           attempt=_orphan_attempt(paths, trial_id),
                           provenance=_provenance(record))
    write_result(paths, read_trials(paths, [trial_id]), outcome)


def _orphan_attempt(paths: SweepPaths, trial_id: int) -> int:
    """The attempt that died: the marker's when it started one, else a new number."""
    marker = attempts.read_marker(paths, trial_id)
    last_row = read_attempt(paths.result(trial_id))
    return marker.attempt if marker and marker.attempt > last_row else last_row + 1


def _yaml(cfg: DictConfig) -> str:
    try:
        return OmegaConf.to_yaml(cfg, resolve=True)
    except Exception:  # an interpolation that only resolves inside the task
        return OmegaConf.to_yaml(cfg, resolve=False)



def run_rows(paths: SweepPaths, record: SweepRecord, rows: pa.Table) -> list[TrialState]:
    """Run the given rows of the trial table in order, skipping settled trials.

    Stops early when a trial is stopped from outside (cancelled, timed out, requeued) or the
    scheduler's warning arrived between trials; the states of the trials that ran come back.
    """
    guard = StopGuard()
    guard.install()
    states: list[TrialState] = []
    for i in range(rows.num_rows):
        if context.stop_requested():
            break
        try:
            states.append(run_one(paths, record, rows.slice(i, 1), guard))
        except TrialInterrupted:
            break  # stopped right after a trial's row was written: start no other
        if states[-1] in STOPPED:
            break
    return states


def exit_code(states: Sequence[TrialState], expected: int) -> int:
    """0 if every trial settled (completed or pruned), 130 if stopped early, 1 if any failed.
    A worker's exit code is what sacct shows: FAILED for a failed trial, never for a pruned one."""
    if any(s in STOPPED for s in states) or len(states) < expected:
        return 130
    return 0 if all(s.is_settled() for s in states) else 1


def rows_by_id(paths: SweepPaths, trial_ids: Sequence[int]) -> pa.Table:
    """The trial table's rows for these ids, in this order."""
    table = read_trials(paths, trial_ids)
    by_id = {tid: i for i, tid in enumerate(table.column("trial_id").to_pylist())}
    missing = sorted(set(trial_ids) - set(by_id))
    if missing:
        raise SweepDirError(
            f"trial ids {missing[:5]} are not in the trial table of {paths.root} "
            f"({table.num_rows} found); an array larger than the sweep? size it to the trial count"
        )
    return table.take([by_id[t] for t in trial_ids])


def run_trials(paths: SweepPaths, trial_ids: Sequence[int]) -> int:
    """Run trials by id in this process; returns the exit code (see :func:`exit_code`)."""
    record = SweepRecord.load(paths)
    return exit_code(run_rows(paths, record, rows_by_id(paths, trial_ids)), len(trial_ids))


if __name__ == "__main__":
    # Scripts rendered before sweeper.worker existed run `python -m sweeper.runner`; run the
    # entry point by name, so this library never imports it.
    import runpy

    runpy.run_module("sweeper.worker", run_name="__main__", alter_sys=True)
