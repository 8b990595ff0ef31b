"""``sweeper report DIR``: the plots people look at, the best config, and what to search next.

Works on any sweep dir, local or SLURM, finished or still running (it reports what has
finished). Needs pandas, matplotlib, plotly and Optuna, never torch. The plots come from an
Optuna study built from the rows (:mod:`sweeper.analysis.study_view`), which optuna-dashboard
opens too.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from sweeper.analysis import optuna_plots, plots
from sweeper.analysis.advice import advice
from sweeper.analysis.data import ReportData, ended_badly, load, pareto_front, selection_scores
from sweeper.analysis.html import OptunaSection, cell, page
from sweeper.analysis.importance import importances
from sweeper.analysis.optuna_plots import Figure
from sweeper.analysis.study_view import pareto_trials, study_from_rows, study_journal, write_journal
from sweeper.paths import SweepPaths, atomic_path
from sweeper.state import TrialState

__all__ = ["Report", "ReportOptions", "app_task", "build_report", "launcher", "markdown_table",
           "run_command", "space_table", "status_table"]


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
    #: trains once from best_config.yaml (the sweeper command, or the user's own app)
    train_command: str = ""
    #: Optuna's plots of the study built from the rows, drawn or with why not
    figures: list[Figure] = field(default_factory=list)
    #: the journal optuna-dashboard opens: the sweep's own study, or the report's copy
    journal: Path | None = None


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


def markdown_table(frame: pd.DataFrame) -> str:
    """``frame`` as a Markdown table (top_k.md), with the same cells as index.html."""
    cells = [[cell(v) for v in row] for row in frame.to_numpy()]
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |",
             "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines) + "\n"


def space_table(space: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The searched keys, one row each. The space records leave out unset fields, so a row
    without one shows an empty cell, and a range says whether it is log-scaled: yes or no."""
    rows = [{**spec, **({"log": "yes" if spec.get("log") else "no"}
                        if spec.get("kind", "categorical") != "categorical" else {})}
            for spec in space]
    frame = pd.DataFrame(rows).astype(object)
    return frame.where(frame.notna(), "")


def _counts_as(status: Any) -> str:
    state = TrialState.parse(status)
    if state is not None and state.is_settled():
        return "finished"  # pruned too: stopped early on purpose, not a failure
    if ended_badly(status):
        return "failed or stopped"
    return "queued or running" if state is not None and state.is_active() else "not run yet"


def status_table(results: pd.DataFrame) -> pd.DataFrame:
    """Trials per status, in the order `sweeper status` lists them, with what each counts as."""
    counts = results["status"].value_counts()
    known = [s.value for s in TrialState if s.value in counts.index]
    order = known + sorted((s for s in counts.index if s not in known), key=str)
    return pd.DataFrame([{"status": s, "trials": int(counts[s]), "counts as": _counts_as(s)}
                         for s in order], columns=["status", "trials", "counts as"])


def _write_text(path: Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def _check_heatmap(data: ReportData, keys: Sequence[str]) -> None:
    for key in keys:
        if key not in data.params:
            from sweeper.errors import ConfigError, closest

            raise ConfigError(f"--heatmap key {key!r} was not searched{closest(key, data.params)}; "
                              f"searched keys: {', '.join(data.params)}")


def _top(order: pd.DataFrame, data: ReportData, options: ReportOptions) -> pd.DataFrame:
    columns = ["trial_id", data.metric, *(["score"] if options.select else []),
               *[m for m in options.select if m != data.metric], *data.params]
    return order.head(options.top_k)[list(dict.fromkeys(c for c in columns if c in order))]


def _static(data: ReportData, options: ReportOptions, top: pd.DataFrame,
            values: dict[str, float], figures: list[Figure]) -> list[tuple[Path, str]]:
    """The PNGs index.html embeds, for a reader without scripts: Optuna's, where the hand-drawn
    ones were, and the plots Optuna has no equivalent for (its contour and intermediate values
    have theirs in the heatmap and the curves). The hand-drawn ones are saved here."""
    out = data.paths.report_dir
    ranked_keys = [*sorted(values, key=values.__getitem__, reverse=True),
                   *(k for k in data.params if k not in values)]
    hx, hy = (list(options.heatmap) or ranked_keys)[:2] if len(data.params) >= 2 else (None, None)
    optuna_png = {f.name: (f.png, f.title) for f in figures}
    images = [(_save(plots.heatmap(data, hx, hy), out / "heatmap.png"),
               f"{data.metric} over {hx} x {hy}"),
              *(optuna_png[name] for name in ("importance", "history", "parallel", "slices")),
              (_save(plots.curves(data, top["trial_id"].tolist()), out / "curves.png"),
               "learning curves"),
              (_save(plots.failures(data), out / "failures.png"), "failures")]
    if len(options.pareto) == 2 and len(data.done):
        a, b = options.pareto
        mask = pareto_front(data.done, a, b, options.maximize)
        images.append((_save(plots.pareto(data, a, b, mask), out / "pareto.png"),
                       f"Pareto front: {a} vs {b}"))
    images.append(optuna_png.get("pareto_front", (None, "")))
    return [(path, title) for path, title in images if path is not None]


def _dashboard(data: ReportData, study: Any) -> Path:
    """The journal optuna-dashboard opens: the sweep's own, or the rows' study written to the
    report dir (afresh each time, so it never shows trials the rows no longer have)."""
    from sweeper.study import study_name

    journal = study_journal(data.paths, data.sweep)
    if journal.is_relative_to(data.paths.report_dir):
        write_journal(study, journal, study_name(data.sweep))
    return journal


def _best_config(data: ReportData, best: pd.Series | None) -> tuple[str, str, str]:
    """The best trial's config to train from (a header, the YAML), and the command that does."""
    out = data.paths.report_dir
    if best is None or not best.get("config_yaml"):
        return "", "", run_command(out)
    body = _runnable(str(best["config_yaml"]))
    command = run_command(out, app_task(data, best))
    header = (f"# The best trial ({best['trial_id']}) of {data.paths.root}: "
              f"{data.metric}={best[data.metric]:.6g}. Train from it with:\n# {command}\n")
    return header, body, command


def build_report(paths: SweepPaths, options: ReportOptions) -> Report:
    """Write ``DIR/report/`` and return what it found."""
    data = load(paths, options.metric, options.direction)
    _check_heatmap(data, options.heatmap)
    out = paths.report_dir
    out.mkdir(parents=True, exist_ok=True)
    order = ranked(data, options)
    best = order.iloc[0] if len(order) else None
    top = _top(order, data, options)
    study = study_from_rows(data)
    values = importances(study, data)
    figures = optuna_plots.draw(study, data, out, values)
    journal = _dashboard(data, study)
    command = f"optuna-dashboard {shlex.quote(str(journal))}"
    files = [_write_text(out / "top_k.csv", top.to_csv(index=False)),
             _write_text(out / "top_k.md", markdown_table(top))]
    shown = _static(data, options, top, values, figures)
    pngs = [*(f.png for f in figures if f.png is not None), *(p for p, _ in shown)]
    files += [*dict.fromkeys(pngs), *([journal] if journal.is_relative_to(out) else [])]
    notes = [*advice(data, best), f"browse every trial interactively: {command}"]
    header, best_yaml, train = _best_config(data, best)
    if best_yaml:
        files.append(_write_text(out / "best_config.yaml", header + best_yaml))
    section = OptunaSection(figures, command, pareto_trials(study, data))
    cv = _cross_validation(data)
    if cv is not None:
        files.append(_write_text(out / "cv.csv", cv.to_csv(index=False)))
    files.append(_write_text(out / "index.html", page(
        f"Sweep report: {paths.root.name}", _facts(data), notes, top, shown,
        space_table(data.space), status_table(data.results), best_yaml, train, section, cv)))
    return Report(data, best, top, values, notes, files, train, figures, journal)


def _cross_validation(data: ReportData) -> pd.DataFrame | None:
    """A cross-validated sweep's configs: the metric's aggregate over their folds and its
    spread, best first (``cv.csv``); None for other sweeps."""
    from sweeper.crossval import cv_keys, cv_table

    cv = data.sweep.search.cross_validation
    if not cv.enabled:
        return None
    return cv_table(data.results, cv_keys(data.sweep), data.metric, data.direction,
                    cv.aggregation)


def _runnable(config_yaml: str) -> str:
    """The trial's config as a file to train from: `cluster_overrides` were applied when the
    sweep was planned, so they go (a second merge would undo the trial's searched values)."""
    import yaml

    cfg = yaml.safe_load(config_yaml)
    if isinstance(cfg, dict):
        cfg.pop("cluster_overrides", None)
        return str(yaml.safe_dump(cfg, sort_keys=False))
    return config_yaml


def app_task(data: ReportData, best: pd.Series) -> str | None:
    """The task reference when the sweep ran an app's own ``@hydra.main`` function, else None.
    Its config then names no ``task.fn``, so ``python -m sweeper`` alone would not know what
    to train: commands that run it again go through :func:`launcher`."""
    import yaml

    cfg = yaml.safe_load(str(best.get("config_yaml") or "")) or {}
    task = cfg.get("task") if isinstance(cfg, dict) else None
    if isinstance(task, dict) and task.get("fn"):
        return None
    variants = data.sweep.variants
    index = int(best["variant"]) if "variant" in best and 0 <= best["variant"] < len(variants) else 0
    return variants[index].task_fn if variants else None


def launcher(task: str | None) -> tuple[list[str], list[str]]:
    """The words around a Hydra command line that run the sweep's task again: ``python -m
    sweeper``, or the user's own app script when :func:`app_task` found one.

    >>> launcher("file:/home/me/app.py:train")
    (['python', '/home/me/app.py'], [])
    """
    if task is None:
        return ["python", "-m", "sweeper"], []
    if task.startswith("file:"):
        return ["python", task[len("file:"):].rpartition(":")[0]], []
    return ["python", "-m", "sweeper"], [f"+task.fn={task}"]


def run_command(report_dir: Path, task: str | None = None) -> str:
    """The command that trains once from ``best_config.yaml`` (``task``: see :func:`app_task`).

    >>> run_command(Path("/s/report"), "file:/home/me/app.py:train")
    'python /home/me/app.py --config-path /s/report --config-name best_config'
    """
    before, after = launcher(task)
    return shlex.join([*before, "--config-path", str(report_dir), "--config-name", "best_config",
                       *after])
