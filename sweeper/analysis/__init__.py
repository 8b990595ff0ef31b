"""``sweeper report DIR``: the plots people look at, the best config, and what to search next.

Works on any sweep dir, local or SLURM, finished or still running (it reports what has
finished). Needs pandas, matplotlib and Optuna, never torch.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from sweeper.analysis import plots
from sweeper.analysis.advice import advice
from sweeper.analysis.data import ReportData, load, pareto_front, selection_scores
from sweeper.analysis.importance import importances
from sweeper.paths import SweepPaths, atomic_path

__all__ = ["Report", "ReportOptions", "build_report"]


@dataclass
class ReportOptions:
    """How to pick the best trial and what to draw (the `report:` config node, or flags)."""

    select: Mapping[str, float] = field(default_factory=dict)
    maximize: Sequence[str] = ()
    pareto: Sequence[str] = ()
    top_k: int = 10
    heatmap: Sequence[str] = ()
    metric: str | None = None
    direction: str | None = None


@dataclass
class Report:
    data: ReportData
    best: pd.Series | None
    top: pd.DataFrame
    importance: dict[str, float]
    notes: list[str]
    files: list[Path]


def ranked(data: ReportData, options: ReportOptions) -> pd.DataFrame:
    """Completed trials, best first: by the weighted score when `select` is set."""
    done = data.done.copy()
    if done.empty:
        return done
    if options.select:
        done["score"] = selection_scores(done, options.select, options.maximize)
        return done.sort_values(["score", "trial_id"])
    return done.sort_values([data.metric, "trial_id"], ascending=[data.direction == "minimize", True])


def _save(fig: Any, path: Path) -> Path | None:
    if fig is None:
        return None
    fig.savefig(path, dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def _facts(data: ReportData) -> dict[str, str]:
    r = data.results
    started, finished = r.get("started_at"), r.get("finished_at")
    wall = (finished.max() - started.min()).total_seconds() if started is not None and started.notna().any() else 0.0
    busy = float(r["duration_s"].sum()) if "duration_s" in r else 0.0
    return {
        "sweep dir": str(data.paths.root),
        "search": f"{data.sweep.search.method}, {len(r)} trials, metric {data.metric} ({data.direction})",
        "wall time": (f"{wall / 60:.1f} min" if wall >= 120 else f"{wall:.0f} s")
                     + " (first trial start to last trial end)",
        "compute used": f"{busy / 3600:.2f} trial-hours ({busy / max(len(data.done), 1):.1f} s per completed trial)",
        "made": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _markdown(frame: pd.DataFrame) -> str:
    cells = [[f"{v:.6g}" if isinstance(v, float) else str(v) for v in row] for row in frame.to_numpy()]
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |",
             "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines) + "\n"


def _write_text(path: Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def build_report(paths: SweepPaths, options: ReportOptions) -> Report:
    """Write ``DIR/report/`` and return what it found."""
    data = load(paths, options.metric, options.direction)
    for key in options.heatmap:
        if key not in data.params:
            from sweeper.errors import ConfigError, closest

            raise ConfigError(f"--heatmap key {key!r} was not searched{closest(key, data.params)}; "
                              f"searched keys: {', '.join(data.params)}")
    out = paths.report_dir
    out.mkdir(parents=True, exist_ok=True)
    order = ranked(data, options)
    best = order.iloc[0] if len(order) else None
    columns = ["trial_id", data.metric, *(["score"] if options.select else []),
               *[m for m in options.select if m != data.metric], *data.params]
    top = order.head(options.top_k)[list(dict.fromkeys(c for c in columns if c in order))]
    values = importances(data)
    ranked_keys = sorted(values, key=values.get, reverse=True) or list(data.params)  # type: ignore[arg-type]
    hx, hy = (list(options.heatmap) or ranked_keys)[:2] if len(data.params) >= 2 else (None, None)
    files = [_write_text(out / "top_k.csv", top.to_csv(index=False)),
             _write_text(out / "top_k.md", _markdown(top))]
    images = [
        (plots.heatmap(data, hx, hy), "heatmap.png", f"{data.metric} over {hx} x {hy}"),
        (plots.importance(data, values), "importance.png", "parameter importance"),
        (plots.history(data), "history.png", "optimization history"),
        (plots.parallel(data), "parallel.png", "parallel coordinates"),
        (plots.slices(data), "slices.png", "slices"),
        (plots.curves(data, top["trial_id"].tolist()), "curves.png", "learning curves"),
        (plots.failures(data), "failures.png", "failures"),
    ]
    if len(options.pareto) == 2 and len(data.done):
        a, b = options.pareto
        mask = pareto_front(data.done, a, b, options.maximize)
        images.append((plots.pareto(data, a, b, mask), "pareto.png", f"Pareto front: {a} vs {b}"))
    shown = [(p, title) for fig, name, title in images if (p := _save(fig, out / name)) is not None]
    files += [p for p, _ in shown]
    notes = advice(data, best)
    best_yaml = _runnable(str(best["config_yaml"])) if best is not None and best.get("config_yaml") else ""
    if best is not None and best_yaml:
        header = (f"# The best trial ({best['trial_id']}) of {paths.root}: "
                  f"{data.metric}={best[data.metric]:.6g}. Train from it with:\n"
                  f"# {run_command(out)}\n")
        files.append(_write_text(out / "best_config.yaml", header + best_yaml))
    counts = data.results["status"].value_counts().rename_axis("status").reset_index(name="trials")
    space = pd.DataFrame([{k: v for k, v in s.items()} for s in data.space])
    from sweeper.analysis.html import page

    files.append(_write_text(out / "index.html", page(
        f"Sweep report: {paths.root.name}", _facts(data), notes, top, shown, space, counts,
        best_yaml, run_command(out))))
    return Report(data, best, top, values, notes, files)


def _runnable(config_yaml: str) -> str:
    """The trial's config as a file to train from: `cluster_overrides` were applied when the
    sweep was planned, so they go (a second merge would undo the trial's searched values)."""
    import yaml

    cfg = yaml.safe_load(config_yaml)
    if isinstance(cfg, dict):
        cfg.pop("cluster_overrides", None)
        return str(yaml.safe_dump(cfg, sort_keys=False))
    return config_yaml


def run_command(report_dir: Path) -> str:
    """The command that trains once from ``best_config.yaml``."""
    return (f"python -m sweeper --config-path {shlex.quote(str(report_dir))} "
            "--config-name best_config")
