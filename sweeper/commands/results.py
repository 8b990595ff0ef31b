"""Commands on a sweep's results: merge, report, next, rerun."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import tempfile
from pathlib import Path
from typing import Any

from rich.table import Table

from sweeper.commands._common import sweep_paths as _paths
from sweeper.console import err, fmt, out
from sweeper.errors import ConfigError, closest
from sweeper.paths import SweepPaths
from sweeper.state import TrialState

__all__ = ["add_merge", "add_next", "add_report", "add_rerun", "check_metric"]


def _merge(args: argparse.Namespace) -> int:
    from sweeper.merge import merge
    from sweeper.record import SweepRecord
    from sweeper.sweep import print_top

    paths = _paths(args)
    record = SweepRecord.load(paths)
    # A dir that cannot be written (a colleague's) still gives the table: merge says why.
    result = merge(paths, out=args.out)
    metric = args.metric or record.search.metrics[0]
    check_metric(result.results, metric, record.param_keys)
    _say_merged(result, args.out)
    if record.search.cross_validation.enabled:
        from sweeper.sweep import print_cv

        print_cv(result.results.to_pandas(), record, metric, args.direction, args.top)
        return 0
    print_top(result.results, metric, args.direction or record.search.directions[0],
              record.param_keys, args.top)
    return 0


def _say_merged(result: Any, out_dir: Path | None) -> None:
    for path, why in result.skipped:
        err.print(f"[sweeper] skipped {path}: {why}")
    rows = result.results
    counts = rows.group_by("status").aggregate([("trial_id", "count")]).to_pylist()
    summary = ", ".join(f"{c['trial_id_count']} {c['status']}" for c in counts)
    summary = f"{rows.num_rows} trials ({summary})"
    if result.written:
        out.print(f"[sweeper] {summary} -> {result.results_path}; "
                  f"{result.curves.num_rows} curve points -> {result.curves_path}")
    elif out_dir is not None:
        raise ConfigError(f"--out {out_dir} cannot be written ({result.write_error}); pass a "
                          "dir you can write")
    else:
        err.print(f"[sweeper] {summary}, merged but not written: {result.write_error}; "
                  "write them elsewhere with --out DIR")


#: Numeric result columns that identify or place a row: never a metric to rank by.
_NOT_METRICS = frozenset({"trial_id", "variant", "seed", "attempt", "slurm_array_task_id"})


def check_metric(results: Any, metric: str, params: list[str]) -> None:
    """Refuse a metric the results do not have (once some trial has completed), naming the
    closest one and the options, as ``report`` does."""
    import pyarrow.compute as pc
    import pyarrow.types as pt

    if metric in results.column_names:
        return
    if not pc.any(pc.equal(results.column("status"), TrialState.COMPLETED.value)).as_py():
        return  # no trial has returned metrics yet: the empty table is the truth
    names = [f.name for f in results.schema if f.name not in _NOT_METRICS
             and f.name not in params and (pt.is_integer(f.type) or pt.is_floating(f.type))]
    raise ConfigError(f"the results have no metric {metric!r}{closest(metric, names)}; "
                      f"metrics: {', '.join(names) or 'none'}; pass one with --metric")


def add_merge(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metric", help="rank by this metric (default: search.metric)")
    p.add_argument("--direction", choices=["minimize", "maximize"],
                   help="default: search.direction")
    p.add_argument("--top", type=int, default=5, help="how many best trials to print (5)")
    p.add_argument("--out", type=Path, metavar="OUTDIR",
                   help="write results.parquet and curves.parquet here, not into DIR (for a "
                        "sweep dir you cannot write)")
    p.set_defaults(func=_merge)


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


@dataclasses.dataclass(frozen=True)
class _ReportPaths(SweepPaths):
    """A sweep dir whose report goes to another dir (``report --out``)."""

    report_out: Path = Path("report")

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "report_out", Path(self.report_out).absolute())

    @property
    def report_dir(self) -> Path:
        return self.report_out


def _unwritable(path: Path) -> str | None:
    """Why ``path`` (a dir, made if missing) cannot be written, or None. Tried in its nearest
    existing dir, creating nothing: the mode bits say little (root writes through them; a
    read-only file system or an ACL refuses in other ways)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        return f"{path} cannot be made ({probe} is not a directory)"
    try:
        with tempfile.TemporaryFile(dir=probe, prefix=".write-test-"):
            pass
    except OSError as ex:
        return f"{path} is not writable ({ex.strerror or ex})"
    return None


def _report(args: argparse.Namespace) -> int:
    from sweeper.analysis import build_report

    paths = _paths(args)
    options = _report_options(args, paths)
    if args.out is not None:
        paths = _ReportPaths(paths.root, args.out)
    why = _unwritable(paths.report_dir)
    if why and args.out is not None:
        raise ConfigError(f"--out {args.out}: {why}; pass a dir you can write")
    if why:
        return _report_unwritten(paths, options, why)
    report = build_report(paths, options)
    _print_best(report.top, len(report.data.done), len(report.data.results))
    if report.importance:
        out.print("importance: " + ", ".join(f"{k} {v:.2f}" for k, v in report.importance.items()))
    for note in report.notes:
        out.print(f"next: {note}")
    out.print(f"[sweeper] report: {paths.report_index} ({len(report.files)} files)")
    if report.best is not None:
        out.print(f"[sweeper] train from the best config: {report.train_command}")
    return 0


def _print_best(top: Any, n_done: int, n_all: int) -> None:
    table = Table(title=f"best {min(5, len(top))} of {n_done} completed trials ({n_all} in all)")
    for name in top.columns:
        table.add_column(str(name))
    for row in top.head(5).itertuples(index=False):
        table.add_row(*(fmt(v) for v in row))
    out.print(table)


def _report_unwritten(paths: SweepPaths, options: Any, why: str) -> int:
    """A sweep dir that cannot be written (a colleague's): the best trials, and nothing written."""
    from sweeper.analysis import ranked
    from sweeper.analysis.data import load

    data = load(paths, options.metric, options.direction)
    order = ranked(data, options)
    columns = ["trial_id", data.metric, *(["score"] if options.select else []), *data.params]
    _print_best(order[[c for c in dict.fromkeys(columns) if c in order]], len(data.done),
                len(data.results))
    err.print(f"[sweeper] report not written: {why}; write it elsewhere with --out DIR")
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
    p.add_argument("--out", type=Path, metavar="OUTDIR",
                   help="write the report here, not into DIR/report/ (for a sweep dir you "
                        "cannot write)")
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
    _write_search(target, header + yaml.safe_dump(body, sort_keys=False))
    # Keep what the sweep fixed (scenario=..., cluster=...), not its old search settings.
    fixed = [o for o in data.sweep.fixed_overrides
             if not o.lstrip("+~").startswith(("search", "hydra"))]
    out.print(f"[sweeper] wrote {target}")
    if target.parent.name != "search":
        out.print("[sweeper] copy it into your conf/search/ to use it as +search=NAME")
        return 0
    from sweeper.analysis import app_task, launcher

    before, after = launcher(app_task(data, best))
    command = [*before, "--config-dir", str(target.parent.parent), f"+search={target.stem}",
               *fixed, *after]
    out.print(f"[sweeper] run it: {' '.join(shlex.quote(c) for c in command)}")
    return 0


def _write_search(target: Path, text: str) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    except OSError as ex:  # a colleague's sweep dir
        raise ConfigError(f"cannot write {target} ({ex.strerror or ex}); pass --out PATH "
                          "somewhere you can write") from None


def add_next(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", choices=["grid", "random", "qmc", "tpe", "gp", "cmaes"],
                   default="grid", help="the next search's method (grid: 3 values per range; "
                   "the others: 20 trials)")
    p.add_argument("--out", type=Path, help="where to write it (default: DIR/report/search/next.yaml)")
    p.set_defaults(func=_next)


def _rerun(args: argparse.Namespace) -> int:
    from sweeper.rerun import rerun

    return rerun(_paths(args).root, args.trial_id, args.out, args.rtol, args.threads)


def add_rerun(p: argparse.ArgumentParser) -> None:
    p.add_argument("trial_id", type=int, metavar="ID", help="the trial to run again")
    p.add_argument("--out", type=Path, metavar="OUTDIR",
                   help="the scratch dir (default: DIR/rerun/trial-NNNNNN-<time>-<random>/)")
    p.add_argument("--rtol", type=float, default=1e-6,
                   help="relative tolerance for a metric to count as reproduced (1e-6)")
    p.add_argument("--threads", type=int,
                   help="CPU threads for the task (default: what the sweep's trials had)")
    p.set_defaults(func=_rerun)
