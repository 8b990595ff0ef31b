"""Optuna's own plots of the sweep's study (see :mod:`sweeper.analysis.study_view`), each drawn
twice from the same arguments: interactive (``optuna.visualization``, plotly) for index.html,
and as a PNG (``optuna.visualization.matplotlib``; no kaleido, no browser) for a quick look.

A plot the study cannot show (too few trials, one searched key) is not drawn, and says why
in one line; so is one that Optuna refuses.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sweeper.analysis.data import ReportData
from sweeper.analysis.importance import MIN_TRIALS
from sweeper.analysis.plots import pyplot, y_scale
from sweeper.analysis.study_view import completed_trials, objectives, target_args, varying
from sweeper.state import TrialState

__all__ = ["Figure", "draw", "history", "pruned_ends", "static"]


@dataclass(frozen=True)
class Figure:
    """One Optuna plot: drawn (``plotly`` and ``png`` set) or not (``skipped`` says why)."""

    name: str  # the PNG's file stem, and the figure's id in index.html
    title: str
    plotly: Any = None
    png: Path | None = None
    skipped: str = ""


@dataclass(frozen=True)
class _Plot:
    """What to call: ``function`` has the same name and arguments in both Optuna backends."""

    name: str
    title: str
    function: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    skipped: str = ""


def _curved(study: Any) -> list[Any]:
    """The trials Optuna's intermediate-values plot draws: failed ones are left out."""
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED,
                                                    TrialState.RUNNING))


def _need(ok: bool, why: str) -> str:
    return "" if ok else why


def _plots(study: Any, data: ReportData, importance: dict[str, float]) -> list[_Plot]:
    """Every Optuna plot for this study, in page order, each drawable or with its reason."""
    done = len(completed_trials(study))
    keys = varying(study, [*importance, *(k for k in data.params if k not in importance)])
    target, pair = target_args(data), keys[:2]
    no_trials = _need(done > 0, "no completed trials yet")
    no_keys = no_trials or _need(bool(keys), "no searched key varies among the completed trials")
    few = no_trials or _need(bool(importance), f"needs {MIN_TRIALS} completed trials and a key "
                                               f"that varies among them; has {done} and {len(keys)}")
    one_key = no_trials or _need(len(pair) == 2, "needs two keys that vary among the completed "
                                                 f"trials; has {len(pair)}")
    no_curves = _need(any(t.intermediate_values for t in _curved(study)),
                      f"no trial reported {data.metric} per epoch")
    plots = [
        _Plot("history", "optimization history", "plot_optimization_history", target, no_trials),
        _Plot("importance", "parameter importance (PED-ANOVA)", "plot_param_importances",
              {**target, "params": keys}, few),
        _Plot("slices", "slices: the metric against each key", "plot_slice",
              {**target, "params": keys}, no_keys),
        _Plot("contour", f"contour: {' x '.join(pair)}", "plot_contour",
              {**target, "params": pair}, one_key),
        _Plot("parallel", "parallel coordinates", "plot_parallel_coordinate",
              {**target, "params": keys}, no_keys),
        _Plot("intermediate", "intermediate values (x: pruned here)", "plot_intermediate_values",
              {}, no_curves),
    ]
    if len(study.directions) > 1:
        plots.append(_Plot("pareto_front", "Pareto front", "plot_pareto_front",
                           {"target_names": [m for m, _ in objectives(data)]}, no_trials))
    return plots


def pruned_ends(study: Any) -> list[tuple[int, float, int]]:
    """(step, value, trial number) where each pruned trial's curve stops."""
    from optuna.trial import TrialState

    ends = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,)):
        if trial.intermediate_values:
            step = max(trial.intermediate_values)
            ends.append((step, trial.intermediate_values[step], trial.number))
    return ends


def _mark_pruned_plotly(fig: Any, study: Any) -> None:
    import plotly.graph_objects as go

    ends = pruned_ends(study)
    if ends:
        fig.add_trace(go.Scatter(
            x=[s for s, _, _ in ends], y=[v for _, v, _ in ends], mode="markers", name=TrialState.PRUNED.value,
            text=[f"Trial{n} pruned" for _, _, n in ends], hoverinfo="text+x+y",
            marker={"symbol": "x", "size": 11, "color": "#d62728"}))


def _mark_pruned_png(ax: Any, study: Any) -> None:
    ends = pruned_ends(study)
    if ends:
        ax.scatter([s for s, _, _ in ends], [v for _, v, _ in ends], marker="x", s=60,
                   color="#d62728", zorder=3, label=TrialState.PRUNED.value)
        ax.legend(bbox_to_anchor=(1.05, 1.0), loc="upper left")  # where Optuna puts it


def _history_scale_plotly(fig: Any, study: Any) -> None:
    values = [y for trace in fig.data if trace.y is not None for y in trace.y]
    if y_scale(np.array(values, dtype=float))[0] == "log":  # plotly has no symlog: linear then
        fig.update_yaxes(type="log")


def _history_scale_png(ax: Any, study: Any) -> None:
    values = [y for line in ax.get_lines() for y in line.get_ydata()]
    values += [y for points in ax.collections for _, y in points.get_offsets()]
    scale, options = y_scale(np.array(values, dtype=float))
    ax.set_yscale(scale, **options)


#: Touches Optuna's drawings lack: pruned trials marked where they stopped; the history on
#: the scale the report uses (one far-off trial would flatten the good ones).
_FINISH: dict[str, tuple[Callable[[Any, Any], None], Callable[[Any, Any], None]]] = {
    "intermediate": (_mark_pruned_plotly, _mark_pruned_png),
    "history": (_history_scale_plotly, _history_scale_png),
}


def _static(plot: _Plot, study: Any) -> Any:
    import matplotlib

    pyplot()  # headless before Optuna imports pyplot
    import optuna.visualization.matplotlib as backend

    with matplotlib.rc_context():  # Optuna sets its style globally: keep it off our own plots
        ax = np.ravel(getattr(backend, plot.function)(study, **plot.kwargs))[0]
        if plot.name in _FINISH:
            _FINISH[plot.name][1](ax, study)
        return ax.figure


def _png(plot: _Plot, study: Any, path: Path) -> Path:
    fig = _static(plot, study)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    pyplot().close(fig)
    return path


def static(name: str, study: Any, data: ReportData) -> Any:
    """The matplotlib Figure of one plot (``history``, ``slices``...), as its PNG shows it;
    None when the study cannot show it."""
    plot = next(p for p in _plots(study, data, {}) if p.name == name)
    if plot.skipped:
        return None
    with _quiet():
        return _static(plot, study)


def _interactive(plot: _Plot, study: Any) -> Any:
    import optuna.visualization as backend

    fig = getattr(backend, plot.function)(study, **plot.kwargs)
    if plot.name in _FINISH:
        _FINISH[plot.name][0](fig, study)
    return fig


def _one(plot: _Plot, study: Any, out: Path) -> Figure:
    if plot.skipped:
        return Figure(plot.name, plot.title, skipped=plot.skipped)
    try:
        return Figure(plot.name, plot.title, _interactive(plot, study),
                      _png(plot, study, out / f"{plot.name}.png"))
    except Exception as ex:  # a plot Optuna cannot draw is a note on the page, never a crash
        return Figure(plot.name, plot.title,
                      skipped=f"Optuna could not draw it ({type(ex).__name__}: "
                              f"{str(ex).splitlines()[0] if str(ex) else ''})")


def draw(study: Any, data: ReportData, out: Path, importance: dict[str, float]) -> list[Figure]:
    """Every Optuna plot of ``study``, in page order; PNGs go to ``out``. ``importance`` is
    :func:`~sweeper.analysis.importance.importances`: without it there is no importance plot,
    and the contour shows the two most important keys."""
    with _quiet():
        return [_one(p, study, out) for p in _plots(study, data, importance)]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Optuna's matplotlib backend is "experimental" and PED-ANOVA warns on small studies:
    notes for Optuna's developers, not for someone reading a sweep's report."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        yield


def history(data: ReportData) -> Any:
    """Optuna's optimization history of ``data`` as history.png shows it (on the y scale of
    :func:`y_scale`); None without completed trials."""
    from sweeper.analysis.study_view import study_from_rows

    return static("history", study_from_rows(data), data)
