"""Run trials inside a worker: trial row -> frozen config -> task(cfg) -> result row.

A library used by every worker (see :mod:`sweeper.worker`): a local trial process runs one
trial, a SLURM array task its k trials one after another. Each attempt first writes its
marker (:mod:`sweeper.attempts`); whatever the task does, a row is then written:
``completed``, ``pruned``, ``failed`` (with the traceback), ``timeout`` or ``cancelled``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import random
import signal
import sys
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.dataset  # read_trials' filters need it: import it once, in the fork server
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import setup_globals
from omegaconf import DictConfig, OmegaConf, open_dict

from sweeper import attempts, context, provenance, taskref
from sweeper.context import TrialInterrupted
from sweeper.errors import SweepDirError
from sweeper.metrics import to_metrics
from sweeper.paths import SweepPaths
from sweeper.record import SweepRecord, hydra_node
from sweeper.results import TrialOutcome, read_attempt, read_state, write_result
from sweeper.state import TrialState
from sweeper.trials import read_trials

__all__ = ["StopGuard", "exit_code", "rows_by_id", "run_one", "run_rows", "seed_everything",
           "to_metrics", "trial_config", "write_orphan"]


def _param_value(encoding: str, value: Any) -> Any:
    if encoding == "override":
        from hydra.core.override_parser.overrides_parser import OverridesParser

        return OverridesParser.create().parse_override(f"x={value}").value()
    return value


def trial_config(record: SweepRecord, trial: Mapping[str, Any]) -> DictConfig:
    """The trial's config: its frozen variant with the trial's values applied."""
    cfg = OmegaConf.create(record.variant_container(int(trial["variant"])))
    assert isinstance(cfg, DictConfig)
    OmegaConf.set_struct(cfg, True)
    for spec in record.params:
        if spec.group:
            continue
        value = _param_value(spec.encoding, trial[spec.key])
        with open_dict(cfg):
            OmegaConf.update(cfg, spec.key, value, merge=True, force_add=bool(spec.prefix))
    return cfg


def _set_hydra_config(record: SweepRecord, trial: Mapping[str, Any]) -> None:
    """Let a task written for Hydra call ``HydraConfig.get()`` as it would under Hydra."""
    node = hydra_node(record, int(trial["variant"]))
    if node is None:
        return
    setup_globals()
    if not OmegaConf.has_resolver("sweeper_trial_dir"):
        # Created only if the task asks for it, as Hydra's output dir would be.
        OmegaConf.register_new_resolver("sweeper_trial_dir", lambda: str(context.trial_dir()),
                                        use_cache=False)
    node.hydra.job.num = int(trial["trial_id"])
    node.hydra.job.id = os.environ.get("SLURM_JOB_ID", str(trial["trial_id"]))
    node.hydra.job.override_dirname = _override_dirname(node.hydra, trial.get("overrides") or [])
    node.hydra.runtime.output_dir = "${sweeper_trial_dir:}"
    OmegaConf.set_readonly(node.hydra, True)
    # HydraConfig.set_config insists on a structured HydraConf node, which costs ~40 ms
    # per trial to build; get() only reads `cfg.hydra`, so set the plain node directly.
    HydraConfig.instance().cfg = node  # type: ignore[assignment]


def _override_dirname(hydra: DictConfig, overrides: Sequence[str]) -> str:
    """As Hydra builds hydra.job.override_dirname: sorted key=value pairs, minus excluded keys."""
    conf = OmegaConf.select(hydra, "job.config.override_dirname", default=None)
    kv, item = (conf.kv_sep, conf.item_sep) if conf is not None else ("=", ",")
    excluded = set(conf.exclude_keys) if conf is not None else set()
    pairs = [o.split("=", 1) for o in overrides if "=" in o]
    return item.join(f"{k}{kv}{v}" for k, v in sorted(pairs) if k not in excluded)


def warm(record: SweepRecord) -> None:
    """Parse the variants once (the fork server shares them with every trial)."""
    for i in range(len(record.variants)):
        record.variant_container(i)
        hydra_node(record, i)
    provenance.torch_version()


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


class StopGuard:
    """SIGTERM becomes TrialInterrupted, except while a row is written: then the stop waits
    until the row is on disk, and is raised when the write ends (even if the write failed)."""

    def __init__(self) -> None:
        self._depth = 0
        self._held = False
        self._pending: TrialInterrupted | None = None

    def handle(self, signum: int, frame: Any) -> None:
        # The executor sets SWEEPER_DEADLINE; a stop at or after it is the time limit.
        deadline = float(os.environ.get("SWEEPER_DEADLINE") or "inf")
        if time.time() >= deadline - 2.0:
            stop = TrialInterrupted("stopped at its time limit (cluster.timeout_min)",
                                    TrialState.TIMEOUT)
        else:
            stop = TrialInterrupted(f"stopped by {signal.Signals(signum).name}")
        if self._depth or self._held:
            self._pending = stop
            return
        raise stop

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self.handle)
        signal.signal(signal.SIGHUP, self.handle)  # a closed terminal stops trials cleanly

    def hold(self) -> None:
        """From the task's end until :meth:`release`: its row must reach the disk first."""
        self._held = True

    def release(self) -> None:
        self._held = False
        self._raise_pending()

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


def _attempt(paths: SweepPaths, record: SweepRecord, row: dict[str, Any],
             outcome: TrialOutcome, guard: StopGuard) -> context.TrialContext:
    """Run the task; fill ``outcome``. Never raises: every failure becomes the outcome."""
    trial_id = int(row["trial_id"])
    ctx = context.TrialContext(trial_id, paths.root, paths.checkpoint_dir(trial_id),
                               curve=_curve_so_far(paths, trial_id))
    try:
        cfg = trial_config(record, row)
        outcome.config_yaml = _yaml(cfg)
        _set_hydra_config(record, row)
        fn = taskref.load(record.variants[int(row["variant"])].task_fn)
        seed_everything(int(row["seed"]))
        if OmegaConf.select(cfg, "tracking.tensorboard", default=False):
            ctx.tensorboard_dir = paths.tensorboard_dir(trial_id)
        with context.activate(ctx):
            value = fn(cfg)
        guard.hold()
        metrics = to_metrics(value, record.search.metric, record.param_keys)
        context.close_tracking(ctx, {k: row[k] for k in record.param_keys}, dict(metrics))
        outcome.metrics, outcome.status = metrics, TrialState.COMPLETED
    except TrialInterrupted as ex:
        guard.hold()
        outcome.status, outcome.error = TrialState(ex.status), str(ex)
    except BaseException as ex:  # every failure becomes a row
        guard.hold()
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
    with guard.deferred():
        marker = attempts.start_attempt(paths, trial_id, _next_attempt(paths, trial_id))
    now = dt.datetime.now(dt.timezone.utc)
    outcome = TrialOutcome(TrialState.FAILED, now, now, attempt=marker.attempt)
    ctx = _attempt(paths, record, row, outcome, guard)
    try:
        outcome.finished_at = dt.datetime.now(dt.timezone.utc)
        outcome.curve = ctx.curve
        outcome.device = provenance.device_name()
        outcome.torch_version = provenance.torch_version()
        outcome.provenance = _provenance(record)
        _write(paths, trial, outcome)
        print(f"[sweeper] trial {trial_id}: {outcome.status.value}"
              + (f" ({outcome.error})" if outcome.error else ""), flush=True)
    finally:
        guard.release()
    return outcome.status


def _next_attempt(paths: SweepPaths, trial_id: int) -> int:
    marker = attempts.read_marker(paths, trial_id)
    return max(read_attempt(paths.result(trial_id)), marker.attempt if marker else 0) + 1


def _write(paths: SweepPaths, trial: pa.Table, outcome: TrialOutcome) -> None:
    """Write the row; a failure to write (disk full, no locks) is reported, not raised, so
    the worker's other trials still run. The trial then shows as lost, and resume reruns it."""
    try:
        write_result(paths, trial, outcome)
    except Exception as ex:
        print(f"[sweeper] could not write the row of trial {trial.column('trial_id')[0]} "
              f"({type(ex).__name__}: {ex}); it will show as lost, and resume reruns it",
              file=sys.stderr, flush=True)


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


#: States after which a worker starts no further trial: it was stopped from outside.
STOPPING = frozenset({TrialState.CANCELLED, TrialState.TIMEOUT, TrialState.REQUEUED})


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
        if states[-1] in STOPPING:
            break
    return states


def exit_code(states: Sequence[TrialState], expected: int) -> int:
    """0 if every trial settled (completed or pruned), 130 if stopped early, 1 if any failed.
    A worker's exit code is what sacct shows: FAILED for a failed trial, never for a pruned one."""
    if any(s in STOPPING for s in states) or len(states) < expected:
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
