"""The commands that work from a sweep dir alone: merge, status, resume, cancel."""

from __future__ import annotations

import argparse
import dataclasses
import time
from typing import Any

from rich.table import Table

from sweeper.console import err, fmt, out
from sweeper.errors import ConfigError
from sweeper.paths import SweepPaths

__all__ = ["add_cancel", "add_merge", "add_resume", "add_status"]



def _paths(args: argparse.Namespace) -> SweepPaths:
    paths = SweepPaths(args.dir)
    if not paths.sweep_yaml.is_file():
        raise ConfigError(
            f"{paths.root} is not a sweep dir (it has no sweep.yaml); pass the dir a sweep "
            "printed when it started, e.g. multirun/2026-11-23/10-00-00"
        )
    return paths


def print_top(results: Any, metric: str, direction: str, keys: list[str], k: int = 5) -> None:
    from sweeper.merge import top_trials

    top = top_trials(results, metric, direction, k)
    table = Table(title=f"top {top.num_rows} by {metric} ({direction})")
    for name in ["trial_id", metric, *keys]:
        table.add_column(name)
    for row in top.to_pylist():
        table.add_row(*(fmt(row.get(n)) for n in ["trial_id", metric, *keys]))
    out.print(table)


def merge_and_show(paths: SweepPaths, metric: str | None = None, direction: str | None = None,
                   top: int = 5) -> None:
    """Merge the sweep dir's results and print the counts and the best trials."""
    from sweeper.merge import merge
    from sweeper.runner import load_sweep

    sweep = load_sweep(str(paths.root))
    result = merge(paths)
    for path, why in result.skipped:
        err.print(f"[sweeper] skipped {path}: {why}")
    counts = result.results.group_by("status").aggregate([("trial_id", "count")]).to_pylist()
    summary = ", ".join(f"{c['trial_id_count']} {c['status']}" for c in counts)
    out.print(f"[sweeper] {result.results.num_rows} trials ({summary}) -> {paths.merged}; "
              f"{result.curves.num_rows} curve points -> {paths.curves}")
    print_top(result.results, metric or str(sweep.search.metric),
              direction or str(sweep.search.direction), [str(p.key) for p in sweep.params], top)


def _merge(args: argparse.Namespace) -> int:
    merge_and_show(_paths(args), args.metric, args.direction, args.top)
    return 0


def add_merge(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metric", help="rank by this metric (default: search.metric)")
    p.add_argument("--direction", choices=["minimize", "maximize"],
                   help="default: search.direction")
    p.add_argument("--top", type=int, default=5, help="how many best trials to print (5)")
    p.set_defaults(func=_merge)


def _state_table(paths: SweepPaths, n_trials: int, state: Any) -> Table:
    table = Table(title=f"{paths.root}: {n_trials} trials")
    table.add_column("state")
    table.add_column("trials", justify="right")
    order = ["completed", "running", "pending", "requeued", "failed", "timeout", "cancelled",
             "lost", "unknown", "not run yet"]
    counts = state.counts()
    for name in sorted(counts, key=lambda s: order.index(s) if s in order else len(order)):
        table.add_row(name, str(counts[name]))
    return table


def _status(args: argparse.Namespace) -> int:
    from sweeper.runner import load_sweep
    from sweeper.status import sweep_state

    paths = _paths(args)
    n_trials = int(load_sweep(str(paths.root)).n_trials)
    while True:
        state = sweep_state(paths, n_trials, grace_s=args.grace_s)
        out.print(_state_table(paths, n_trials, state))
        if not state.queue_ok:
            err.print("[sweeper] squeue failed: queued trials show as unknown")
        if state.accounting_ok is False:
            err.print("[sweeper] sacct is unavailable: states come from the queue and result files")
        lost = [f"{tid} ({why})" if why else str(tid) for tid, why in
                ((t, state.details.get(t, "")) for t, s in state.states.items() if s == "lost")]
        if lost:
            err.print(f"[sweeper] lost (left the queue without a result): {', '.join(lost[:10])}"
                      f"{' ...' if len(lost) > 10 else ''}; `sweeper resume {paths.root}` reruns them")
        if not args.watch or not state.active:
            return 0
        try:
            time.sleep(args.poll_interval_s)
        except KeyboardInterrupt:
            return 0


def add_status(p: argparse.ArgumentParser) -> None:
    p.add_argument("--watch", action="store_true", help="refresh until no trial is queued")
    p.add_argument("--poll-interval-s", type=float, default=10.0, help="with --watch (10)")
    p.add_argument("--grace-s", type=float, default=30.0,
                   help="a task gone from the queue this long without a result is lost (30)")
    p.set_defaults(func=_status)


def _resume(args: argparse.Namespace) -> int:
    from sweeper.executors import make_executor
    from sweeper.launch import run_pending
    from sweeper.runner import load_sweep
    from sweeper.schema import ClusterConf, validate
    from sweeper.trials import read_trials

    paths = _paths(args)
    sweep = load_sweep(str(paths.root))
    cluster = validate(sweep.cluster, ClusterConf, "cluster")
    if args.max_parallel is not None:
        cluster = dataclasses.replace(cluster, max_parallel=args.max_parallel)
    trials = read_trials(paths)
    executor = make_executor(cluster)
    executor.wait = args.wait
    err.print(f"[sweeper] resuming {paths.root} on: {executor.describe()}")
    result = run_pending(paths, sweep, trials, executor, args.retry_failed)
    finish(paths, result)
    return result.exit_code


def finish(paths: SweepPaths, result: Any) -> None:
    """After a launch: say how to continue, or merge and show the best trials."""
    if result.job_ids and not result.statuses:
        return
    if result.interrupted:
        err.print(f"[sweeper] stopped. Continue with `sweeper resume {paths.root}`")
        return
    done = ", ".join(f"{n} {s}" for s, n in sorted(result.statuses.items())) or "nothing run"
    err.print(f"[sweeper] finished: {done}")
    merge_and_show(paths)


def add_resume(p: argparse.ArgumentParser) -> None:
    p.add_argument("--retry-failed", action="store_true", help="also rerun failed trials")
    p.add_argument("--max-parallel", type=int, help="local: trials at once (default: as planned)")
    p.add_argument("--wait", action="store_true", help="slurm: block until the trials end")
    p.set_defaults(func=_resume)


def _cancel(args: argparse.Namespace) -> int:
    from sweeper.executors.local import cancel_local
    from sweeper.executors.slurm import cancel_arrays

    paths = _paths(args)
    local = cancel_local(paths)
    arrays = cancel_arrays(paths)
    out.print(f"[sweeper] asked {local} local sweep process(es) to stop and cancelled {arrays} "
              f"SLURM array(s); continue later with `sweeper resume {paths.root}`")
    return 0


def add_cancel(p: argparse.ArgumentParser) -> None:
    p.set_defaults(func=_cancel)
