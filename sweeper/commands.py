"""The commands that work from a sweep dir alone: merge, status, resume, cancel."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import time
from pathlib import Path
from typing import Any

from rich.table import Table

from sweeper.console import err, fmt, out, shell_path
from sweeper.errors import ConfigError
from sweeper.paths import SweepPaths

__all__ = ["add_cancel", "add_merge", "add_next", "add_report", "add_resume", "add_status"]



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
                      f"{' ...' if len(lost) > 10 else ''}; `sweeper resume {shell_path(paths.root)}` reruns them")
        if not args.watch or (state.queue_ok and not state.active):
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
        err.print(f"[sweeper] stopped. Continue with `sweeper resume {shell_path(paths.root)}`")
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
              f"SLURM array(s); continue later with `sweeper resume {shell_path(paths.root)}`")
    return 0


def add_cancel(p: argparse.ArgumentParser) -> None:
    p.set_defaults(func=_cancel)


def _pairs(text: str | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in filter(None, (text or "").split(",")):
        name, sep, weight = part.partition("=")
        try:
            out[name.strip()] = float(weight) if sep else 1.0
        except ValueError:
            raise ConfigError(f"--select takes metric=weight pairs, got {part!r}; e.g. "
                              "--select val_loss=0.8,train_time_s=0.2") from None
    return out


def _report_options(args: argparse.Namespace, paths: SweepPaths) -> Any:
    from omegaconf import OmegaConf

    from sweeper.report import ReportOptions
    from sweeper.runner import load_sweep

    node = OmegaConf.select(load_sweep(str(paths.root)).variants[0].config, "report", default=None)
    conf = OmegaConf.to_container(node) if node is not None else {}
    assert isinstance(conf, dict)
    pareto = args.pareto.split(",") if args.pareto else list(conf.get("pareto") or [])
    if pareto and len(pareto) != 2:
        raise ConfigError(f"--pareto takes two metrics, got {pareto}; e.g. --pareto val_loss,train_time_s")
    heatmap = args.heatmap.split(",") if args.heatmap else []
    if heatmap and len(heatmap) != 2:
        raise ConfigError(f"--heatmap takes two searched keys, got {heatmap}")
    return ReportOptions(
        select=_pairs(args.select) if args.select else dict(conf.get("select") or {}),
        maximize=args.maximize or list(conf.get("maximize") or []), pareto=pareto,
        top_k=args.top_k or int(conf.get("top_k") or 10), heatmap=heatmap,
        metric=args.metric, direction=args.direction)


def _report(args: argparse.Namespace) -> int:
    from sweeper.report import build_report, run_command

    paths = _paths(args)
    report = build_report(paths, _report_options(args, paths))
    data = report.data
    table = Table(title=f"best {min(5, len(report.top))} of {len(data.done)} completed trials "
                        f"({len(data.results)} in all)")
    for name in report.top.columns:
        table.add_column(str(name))
    for row in report.top.head(5).itertuples(index=False):
        table.add_row(*(fmt(v) for v in row))
    out.print(table)
    if report.importance:
        out.print("importance: " + ", ".join(f"{k} {v:.2f}" for k, v in report.importance.items()))
    for note in report.notes:
        out.print(f"next: {note}")
    out.print(f"[sweeper] report: {paths.report_dir / 'index.html'} ({len(report.files)} files)")
    if report.best is not None:
        out.print(f"[sweeper] train from the best config: {run_command(paths.report_dir)}")
    return 0


def add_report(p: argparse.ArgumentParser) -> None:
    p.add_argument("--select", help="pick the best by a weighted score of normalised metrics, "
                                    "e.g. val_loss=0.8,train_time_s=0.2 (default: report.select)")
    p.add_argument("--maximize", nargs="*", help="metrics in --select/--pareto where higher is better")
    p.add_argument("--pareto", help="two metrics to draw the Pareto front of, e.g. val_loss,train_time_s")
    p.add_argument("--heatmap", help="two searched keys for the heatmap (default: the two most important)")
    p.add_argument("--top-k", type=int, help="how many trials in top_k and the curves (10)")
    p.add_argument("--metric", help="rank by this metric (default: search.metric)")
    p.add_argument("--direction", choices=["minimize", "maximize"])
    p.set_defaults(func=_report)


def _next(args: argparse.Namespace) -> int:
    import yaml

    from sweeper.report import ReportOptions, ranked
    from sweeper.report.advice import next_search
    from sweeper.report.data import load

    paths = _paths(args)
    data = load(paths)
    order = ranked(data, ReportOptions())
    if order.empty:
        raise ConfigError(f"{paths.root} has no completed trial with {data.metric} yet; "
                          "`sweeper next` narrows around the best one")
    best = order.iloc[0]
    target = args.out or paths.report_dir / "search" / "next.yaml"
    body = {"defaults": [{"override /hydra/sweeper": "sweeper"}], "hydra": {"mode": "MULTIRUN"},
            "search": next_search(data, best, args.method)}
    header = (f"# @package _global_\n# Narrowed around trial {best['trial_id']} of {paths.root} "
              f"({data.metric}={best[data.metric]:.6g}) by `sweeper next`.\n")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(header + yaml.safe_dump(body, sort_keys=False))
    # Keep what the sweep fixed (scenario=..., cluster=...), not its old search settings.
    fixed = [o for o in data.sweep.get("fixed_overrides", [])
             if not o.lstrip("+~").startswith(("search", "hydra"))]
    out.print(f"[sweeper] wrote {target}")
    if target.parent.name != "search":
        out.print("[sweeper] copy it into your conf/search/ to use it as +search=NAME")
        return 0
    command = ["python", "-m", "sweeper", "--config-dir", str(target.parent.parent),
               f"+search={target.stem}", *fixed]
    out.print(f"[sweeper] run it: {' '.join(shlex.quote(c) for c in command)}")
    return 0


def add_next(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", choices=["grid", "random"], default="grid",
                   help="the next search's method (grid: 3 values per range)")
    p.add_argument("--out", type=Path, help="where to write it (default: DIR/report/search/next.yaml)")
    p.set_defaults(func=_next)
