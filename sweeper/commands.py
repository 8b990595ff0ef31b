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


def _merge(args: argparse.Namespace) -> int:
    from sweeper.sweep import merge_and_show

    merge_and_show(_paths(args), args.metric, args.direction, args.top)
    return 0


def add_merge(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metric", help="rank by this metric (default: search.metric)")
    p.add_argument("--direction", choices=["minimize", "maximize"],
                   help="default: search.direction")
    p.add_argument("--top", type=int, default=5, help="how many best trials to print (5)")
    p.set_defaults(func=_merge)


def _state_table(paths: SweepPaths, state: Any) -> Table:
    from sweeper.state import ORDER

    counts = state.counts()
    table = Table(title=f"{paths.root}: {sum(counts.values())} trials")
    table.add_column("state")
    table.add_column("trials", justify="right")
    for name in sorted(counts, key=ORDER.index):
        table.add_row(name.value, str(counts[name]))
    return table


def _status(args: argparse.Namespace) -> int:
    from sweeper.status import SweepWatcher

    paths = _paths(args)
    watcher = SweepWatcher(paths, grace_s=args.grace_s)
    while True:
        state = watcher.poll()
        out.print(_state_table(paths, state))
        _status_notes(paths, state)
        if not args.watch or (state.queue_ok and not state.active):
            return 0
        try:
            time.sleep(args.poll_interval_s)
        except KeyboardInterrupt:
            return 0


def _status_notes(paths: SweepPaths, state: Any) -> None:
    from sweeper.state import TrialState

    if not state.queue_ok:
        err.print("[sweeper] squeue failed: queued trials show as unknown")
    if state.accounting_ok is False:
        err.print("[sweeper] sacct is unavailable: states come from the queue and result files")
    running = state.running_here()
    if running:
        err.print(f"[sweeper] running: trials {_id_list(running)}")
    lost = [f"{tid} ({why})" if why else str(tid) for tid, why in
            ((t, state.details.get(t, "")) for t, s in state.states.items()
             if s is TrialState.LOST)]
    if lost:
        err.print(f"[sweeper] lost (ended without a result): {', '.join(lost[:10])}"
                  f"{' ...' if len(lost) > 10 else ''}; `sweeper resume {shell_path(paths.root)}` reruns them")


def _id_list(ids: list[int], limit: int = 20) -> str:
    return ", ".join(map(str, ids[:limit])) + (" ..." if len(ids) > limit else "")


def add_status(p: argparse.ArgumentParser) -> None:
    p.add_argument("--watch", action="store_true", help="refresh until no trial is queued")
    p.add_argument("--poll-interval-s", type=float, default=10.0, help="with --watch (10)")
    p.add_argument("--grace-s", type=float, default=30.0,
                   help="an array task that left the queue this long ago (sacct's end time, "
                        "else when status first saw it gone) without a result is lost (30)")
    p.set_defaults(func=_status)


def _resume(args: argparse.Namespace) -> int:
    from sweeper.executors import make_executor
    from sweeper.record import SweepRecord
    from sweeper.sweep import finish, run_pending
    from sweeper.trials import read_trials

    paths = _paths(args)
    record = SweepRecord.load(paths)
    cluster = record.cluster
    if args.max_parallel is not None:
        cluster = dataclasses.replace(cluster, max_parallel=args.max_parallel)
    if args.n_trials is not None:
        record = _grow(paths, record, args.n_trials)
    # Where it was planned: resuming on another machine never switches local <-> SLURM.
    executor = make_executor(cluster, record.executor)
    table = read_trials(paths)
    err.print(f"[sweeper] resuming {paths.root} on: {executor.describe()}")
    result = run_pending(paths, record, table, executor, args.retry_failed, wait=args.wait)
    finish(paths, result)
    return result.exit_code


def _grow(paths: SweepPaths, record: Any, n_trials: int) -> Any:
    """Extend the sweep's budget to ``n_trials`` (random: the same seeded stream goes on)."""
    from sweeper.growth import grow

    return grow(paths, record, n_trials)


def add_resume(p: argparse.ArgumentParser) -> None:
    p.add_argument("--retry-failed", action="store_true", help="also rerun failed trials")
    p.add_argument("--max-parallel", type=int, help="local: trials at once (default: as planned)")
    p.add_argument("--wait", action="store_true", help="slurm: block until the trials end")
    p.add_argument("--n-trials", type=int, metavar="N",
                   help="grow the sweep to N trials first (random: the same seeded draws go "
                        "on, so the first trials are unchanged; a grid cannot grow)")
    p.set_defaults(func=_resume)


def _cancel(args: argparse.Namespace) -> int:
    from sweeper.driver import cancel_local
    from sweeper.executors.slurm import cancel_arrays

    paths = _paths(args)
    local, note = cancel_local(paths)
    if note:
        err.print(f"[sweeper] {note}")
    arrays, failure = cancel_arrays(paths)
    if failure:
        err.print(f"[sweeper] {failure}; nothing on SLURM was cancelled")
    out.print(f"[sweeper] asked {local} local sweep process(es) to stop and cancelled {arrays} "
              f"SLURM array(s); continue later with `sweeper resume {shell_path(paths.root)}`")
    return 1 if failure else 0


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
    from sweeper.analysis import ReportOptions
    from sweeper.record import SweepRecord, report_node

    conf = report_node(SweepRecord.load(paths))
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
    from sweeper.analysis import build_report, run_command

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
    out.print(f"[sweeper] report: {paths.report_index} ({len(report.files)} files)")
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

    from sweeper.analysis import ReportOptions, ranked
    from sweeper.analysis.advice import next_search
    from sweeper.analysis.data import load

    paths = _paths(args)
    data = load(paths)
    order = ranked(data, ReportOptions())
    if order.empty:
        raise ConfigError(f"{paths.root} has no completed trial with {data.metric} yet; "
                          "`sweeper next` narrows around the best one")
    best = order.iloc[0]
    target = args.out or paths.next_search
    body = {"defaults": [{"override /hydra/sweeper": "sweeper"}], "hydra": {"mode": "MULTIRUN"},
            "search": next_search(data, best, args.method)}
    header = (f"# @package _global_\n# Narrowed around trial {best['trial_id']} of {paths.root} "
              f"({data.metric}={best[data.metric]:.6g}) by `sweeper next`.\n")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(header + yaml.safe_dump(body, sort_keys=False))
    # Keep what the sweep fixed (scenario=..., cluster=...), not its old search settings.
    fixed = [o for o in data.sweep.fixed_overrides
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
