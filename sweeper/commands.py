"""The commands that work from a sweep dir alone: merge, status, resume, cancel."""

from __future__ import annotations

import argparse
import dataclasses
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


def _status(args: argparse.Namespace) -> int:
    from sweeper.results import read_statuses
    from sweeper.runner import load_sweep

    paths = _paths(args)
    sweep = load_sweep(str(paths.root))
    statuses = read_statuses(paths)
    counts: dict[str, int] = {}
    for s in statuses.values():
        counts[s] = counts.get(s, 0) + 1
    counts["not run yet"] = int(sweep.n_trials) - len(statuses)
    table = Table(title=f"{paths.root}: {sweep.n_trials} trials")
    table.add_column("state")
    table.add_column("trials", justify="right")
    for state, n in counts.items():
        table.add_row(state, str(n))
    out.print(table)
    return 0


def add_status(p: argparse.ArgumentParser) -> None:
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
    err.print(f"[sweeper] resuming {paths.root} on: {executor.describe()}")
    result = run_pending(paths, sweep, trials, executor, args.retry_failed)
    finish(paths, result)
    return result.exit_code


def finish(paths: SweepPaths, result: Any) -> None:
    """After a launch: say how to continue, or merge and show the best trials."""
    if result.job_ids:
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
    p.set_defaults(func=_resume)


def _cancel(args: argparse.Namespace) -> int:
    from sweeper.executors.local import cancel_local

    paths = _paths(args)
    stopped = cancel_local(paths)
    out.print(f"[sweeper] asked {stopped} local sweep process(es) to stop; "
              f"continue later with `sweeper resume {paths.root}`")
    return 0


def add_cancel(p: argparse.ArgumentParser) -> None:
    p.set_defaults(func=_cancel)
