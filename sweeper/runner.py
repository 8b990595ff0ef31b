"""Run trials inside a worker: trial row -> frozen config -> task(cfg) -> result row.

Used by every executor: the local one runs each trial in a forked child, a SLURM
array task runs its k trials one after another. Whatever the task does, a row is
written: ``completed``, ``failed`` (with the traceback) or ``cancelled``.

    python -m sweeper.runner SWEEP_DIR --trials 0,1,2
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import signal
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset  # read_trials' filters need it: import it once, in the fork server
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import setup_globals
from omegaconf import DictConfig, OmegaConf, open_dict

from sweeper import context, provenance, taskref
from sweeper.context import TrialInterrupted
from sweeper.errors import SweepDirError
from sweeper.paths import SweepPaths
from sweeper.results import Status, TrialOutcome, read_attempt, read_status, write_result
from sweeper.trials import RESERVED_COLUMNS, read_trials

__all__ = ["exit_code", "load_sweep", "rows_by_id", "run_rows", "run_trials", "trial_config", "write_orphan"]


@lru_cache(maxsize=4)
def load_sweep(root: str) -> DictConfig:
    path = SweepPaths(Path(root)).sweep_yaml
    try:
        return OmegaConf.load(path)  # type: ignore[return-value]
    except FileNotFoundError:
        raise SweepDirError(f"{path} does not exist; {root} is not a planned sweep dir") from None


def _param_value(spec: Mapping[str, Any], value: Any) -> Any:
    if spec["encoding"] == "override":
        from hydra.core.override_parser.overrides_parser import OverridesParser

        return OverridesParser.create().parse_override(f"x={value}").value()
    return value


@lru_cache(maxsize=64)
def _variant_container(root: str, variant: int) -> dict[str, Any]:
    node = load_sweep(root).variants[variant].config
    return OmegaConf.to_container(node, resolve=False)  # type: ignore[return-value]


def trial_config(root: str, trial: Mapping[str, Any]) -> DictConfig:
    """The trial's config: its frozen variant with the trial's values applied."""
    sweep = load_sweep(root)
    cfg = OmegaConf.create(_variant_container(root, int(trial["variant"])))
    assert isinstance(cfg, DictConfig)
    OmegaConf.set_struct(cfg, True)
    for spec in sweep.params:
        if spec.group:
            continue
        value = _param_value(spec, trial[spec.key])
        with open_dict(cfg):
            OmegaConf.update(cfg, spec.key, value, merge=True, force_add=bool(spec.prefix))
    return cfg


@lru_cache(maxsize=64)
def _hydra_node(root: str, variant: int) -> DictConfig | None:
    hydra_node = load_sweep(root).variants[variant].get("hydra")
    if hydra_node is None:
        return None
    return OmegaConf.create({"hydra": OmegaConf.to_container(hydra_node, resolve=False)})


def _set_hydra_config(root: str, trial: Mapping[str, Any]) -> None:
    """Let a task written for Hydra call ``HydraConfig.get()`` as it would under Hydra."""
    node = _hydra_node(root, int(trial["variant"]))
    if node is None:
        return
    setup_globals()
    if not OmegaConf.has_resolver("sweeper_trial_dir"):
        # Created only if the task asks for it, as Hydra's output dir would be.
        OmegaConf.register_new_resolver("sweeper_trial_dir", lambda: str(context.trial_dir()),
                                        use_cache=False)
    OmegaConf.set_readonly(node.hydra, False)
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


def warm(root: str) -> None:
    """Parse the sweep and its variants once (the fork server shares them with every trial)."""
    for i in range(len(load_sweep(root).variants)):
        _variant_container(root, i)
        _hydra_node(root, i)
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


def to_metrics(value: Any, metric: str) -> dict[str, float | int]:
    """A task's return value as metric columns; a float is named after ``search.metric``."""
    def number(name: str, v: Any) -> float | int:
        if hasattr(v, "item"):
            v = v.item()
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(f"the task returned {name}={v!r}; metrics must be numbers")
        return v

    if isinstance(value, Mapping):
        out = {str(k): number(str(k), v) for k, v in value.items()}
    elif value is None:
        raise TypeError("the task returned None; return the metric (a float) or a dict of floats")
    else:
        out = {metric: float(number(metric, value))}
    clash = sorted(set(out) & RESERVED_COLUMNS)
    if clash:
        raise ValueError(f"metric name {clash[0]!r} clashes with a results column; rename it")
    return out


def _provenance(sweep: DictConfig) -> dict[str, Any]:
    return {
        "hostname": provenance.host(),
        "git_commit": sweep.git.commit,
        "git_dirty": sweep.git.dirty,
        "python_version": provenance.python_version(),
    }


# While a finished trial's row is being written, a stop waits until the row is on disk.
_critical = False
_deferred: TrialInterrupted | None = None


def _on_sigterm(signum: int, frame: Any) -> None:
    global _deferred
    # The executor sets SWEEPER_DEADLINE; a stop at or after it is the time limit.
    deadline = float(os.environ.get("SWEEPER_DEADLINE") or "inf")
    if time.time() >= deadline - 2.0:
        stop = TrialInterrupted("stopped at its time limit (cluster.timeout_min)", "timeout")
    else:
        stop = TrialInterrupted(f"stopped by {signal.Signals(signum).name}")
    if _critical:
        _deferred = stop
        return
    raise stop


def _enter_critical() -> None:
    global _critical
    _critical = True


def _leave_critical() -> None:
    """End the critical section; a stop that arrived during it is raised now."""
    global _critical, _deferred
    _critical = False
    stop, _deferred = _deferred, None
    if stop is not None:
        raise stop


def run_one(paths: SweepPaths, sweep: DictConfig, trial: pa.Table) -> Status:
    """Run one trial and write its row; never raises for the task's own failures."""
    row = trial.to_pylist()[0]
    trial_id = int(row["trial_id"])
    target = paths.result(trial_id)
    if read_status(target) == Status.COMPLETED.value:
        return Status.COMPLETED
    started = dt.datetime.now(dt.timezone.utc)
    ctx = context.TrialContext(trial_id, paths.root, paths.checkpoint_dir(trial_id),
                               curve=_curve_so_far(paths, trial_id))
    outcome = TrialOutcome(Status.FAILED, started, started, attempt=read_attempt(target) + 1)
    try:
        cfg = trial_config(str(paths.root), row)
        outcome.config_yaml = _yaml(cfg)
        _set_hydra_config(str(paths.root), row)
        fn = taskref.load(str(sweep.variants[int(row["variant"])].task_fn))
        seed_everything(int(row["seed"]))
        if OmegaConf.select(cfg, "tracking.tensorboard", default=False):
            ctx.tensorboard_dir = paths.root / "tensorboard" / f"trial-{trial_id:06d}"
        with context.activate(ctx):
            value = fn(cfg)
        _enter_critical()
        outcome.metrics = to_metrics(value, str(sweep.search.metric))
        outcome.status = Status.COMPLETED
        context.close_tracking(ctx, {str(s.key): row[str(s.key)] for s in sweep.params},
                               dict(outcome.metrics))
    except TrialInterrupted as ex:
        _enter_critical()
        outcome.status, outcome.error = Status(ex.status), str(ex)
    except BaseException as ex:  # every failure becomes a row
        _enter_critical()
        outcome.error = f"{type(ex).__name__}: {ex}"
        if isinstance(ex, SystemExit):
            outcome.error = f"the task called sys.exit({ex.code!r})"
        outcome.traceback = traceback.format_exc()
        if isinstance(ex, KeyboardInterrupt):
            outcome.status = Status.CANCELLED
    _enter_critical()
    outcome.finished_at = dt.datetime.now(dt.timezone.utc)
    outcome.curve = ctx.curve
    outcome.device = provenance.device_name()
    outcome.torch_version = provenance.torch_version()
    outcome.provenance = _provenance(sweep)
    write_result(paths, trial, outcome)
    print(f"[sweeper] trial {trial_id}: {outcome.status.value}"
          + (f" ({outcome.error})" if outcome.error else ""), flush=True)
    _leave_critical()
    return outcome.status


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


def write_orphan(paths: SweepPaths, trial_id: int, status: Status, error: str,
                 started_at: dt.datetime | None = None) -> None:
    """Write the row of a trial whose process died before it could write one itself."""
    sweep = load_sweep(str(paths.root))
    now = dt.datetime.now(dt.timezone.utc)
    outcome = TrialOutcome(status, started_at or now, now, error=error,
                           attempt=read_attempt(paths.result(trial_id)) + 1,
                           provenance=_provenance(sweep))
    write_result(paths, read_trials(paths, [trial_id]), outcome)


def _yaml(cfg: DictConfig) -> str:
    try:
        return OmegaConf.to_yaml(cfg, resolve=True)
    except Exception:  # an interpolation that only resolves inside the task
        return OmegaConf.to_yaml(cfg, resolve=False)


STOPPING = (Status.CANCELLED, Status.TIMEOUT, Status.REQUEUED)


def run_rows(sweep_dir: Path, rows: pa.Table) -> list[Status]:
    """Run the given rows of the trial table in order, skipping completed trials.

    Stops early when a trial is stopped from outside (cancelled, timed out, requeued) or the
    scheduler's warning arrived between trials; the statuses of the trials that ran come back.
    """
    paths = SweepPaths(sweep_dir)
    sweep = load_sweep(str(paths.root))
    signal.signal(signal.SIGTERM, _on_sigterm)
    statuses: list[Status] = []
    for i in range(rows.num_rows):
        if context.stop_requested():
            break
        try:
            statuses.append(run_one(paths, sweep, rows.slice(i, 1)))
        except TrialInterrupted:
            break  # stopped right after a trial's row was written: start no other
        if statuses[-1] in STOPPING:
            break
    return statuses


def exit_code(statuses: Sequence[Status], expected: int) -> int:
    """0 if every trial completed, 130 if stopped early, 1 if any failed."""
    if any(s in STOPPING for s in statuses) or len(statuses) < expected:
        return 130
    return 0 if all(s == Status.COMPLETED for s in statuses) else 1


def rows_by_id(sweep_dir: Path, trial_ids: Sequence[int]) -> pa.Table:
    """The trial table's rows for these ids, in this order."""
    table = read_trials(SweepPaths(sweep_dir), trial_ids)
    by_id = {tid: i for i, tid in enumerate(table.column("trial_id").to_pylist())}
    missing = sorted(set(trial_ids) - set(by_id))
    if missing:
        raise SweepDirError(
            f"trial ids {missing[:5]} are not in {sweep_dir}/trials.parquet ({table.num_rows} "
            "found); an array larger than the sweep? size it to the trial count"
        )
    return table.take([by_id[t] for t in trial_ids])


def run_trials(sweep_dir: Path, trial_ids: Sequence[int]) -> int:
    """Run trials by id in this process; returns the exit code (see :func:`exit_code`)."""
    return exit_code(run_rows(sweep_dir, rows_by_id(sweep_dir, trial_ids)), len(trial_ids))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sweeper.runner",
        description="Run trials of a planned sweep in this process (what array tasks run).")
    parser.add_argument("sweep_dir", type=Path)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--trials", help="comma-separated trial ids")
    which.add_argument("--launch", type=int, help="a launch record's number (SLURM array tasks)")
    parser.add_argument("--task-offset", type=int, default=0,
                        help="with --launch: this array's first task within the launch")
    args = parser.parse_args(argv)
    try:
        if "SLURM_JOB_ID" in os.environ:
            from sweeper.slurm_job import main as job_main

            return job_main(args.sweep_dir, args.trials, args.launch, args.task_offset)
        if args.trials is None:
            parser.error("--launch runs inside a SLURM array task only")
        return run_trials(args.sweep_dir, [int(x) for x in args.trials.split(",") if x.strip()])
    except SweepDirError as ex:
        print(f"sweeper: error: {ex}", file=sys.stderr)
        return ex.exit_code


if __name__ == "__main__":
    sys.exit(main())
