"""The sweep as an Optuna study, built from its merged rows: what Optuna's plots draw and what
optuna-dashboard opens.

The sweep dir is the source of truth, so the study is rebuilt from the rows every time: a grid
or random sweep never had one, and an adaptive sweep's own study may hold asks that never
became rows. Each row is one trial; its curve gives the intermediate values.
"""

from __future__ import annotations

import datetime
import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from sweeper.analysis.data import ReportData
from sweeper.paths import SweepPaths, atomic_path
from sweeper.state import TrialState

if TYPE_CHECKING:
    import optuna

    from sweeper.record import SweepRecord

__all__ = ["completed_trials", "distribution", "objectives", "pareto_trials", "study_from_rows",
           "study_journal", "target_args", "varying", "write_journal"]

_NOT_RUN = frozenset({TrialState.NOT_SUBMITTED, TrialState.MISSING})


def objectives(data: ReportData) -> list[tuple[str, str]]:
    """(metric, direction) per objective of the study: the search's metrics when it has several
    (see :attr:`ReportData.objectives`), else the report's metric."""
    return list(data.objectives) or [(data.metric, data.direction)]


def target_args(data: ReportData) -> dict[str, Any]:
    """The keyword arguments that make an Optuna plot or importance evaluator look at the
    report's metric, also in a multi-objective study (where Optuna must be told which)."""
    names = [m for m, _ in objectives(data)]
    if len(names) == 1:
        return {"target_name": data.metric}
    index = names.index(data.metric)
    return {"target": lambda t: t.values[index], "target_name": data.metric}


def completed_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    from optuna.trial import TrialState as Optuna

    return study.get_trials(deepcopy=False, states=(Optuna.COMPLETE,))


def varying(study: optuna.Study, keys: list[str]) -> list[str]:
    """The keys whose completed trials hold more than one value: the others explain nothing."""
    done = completed_trials(study)
    return [k for k in keys if len({repr(t.params.get(k)) for t in done if k in t.params}) > 1]


def _primitive(value: Any) -> Any:
    """A value a study can hold: numpy scalars become Python ones, anything else a string."""
    value = value.item() if hasattr(value, "item") else value
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)


_CASTS = {"int": int, "float": float}


def _cell(spec: Mapping[str, Any], raw: Any) -> tuple[bool, Any]:
    """(present, value) of one param cell: an empty cell is a value only where None is a choice;
    a range's value has its kind's type (a column with gaps holds ints as floats)."""
    if raw is None or (isinstance(raw, float) and math.isnan(raw)) or raw is pd.NA:
        return None in spec.get("choices", ()), None
    cast = _CASTS.get(spec.get("kind", "categorical"), _primitive)
    return True, cast(_primitive(raw))


def _on_grid(values: list[float], low: float, step: float) -> bool:
    return all(abs((v - low) / step - round((v - low) / step)) < 1e-8 for v in values)


def _range(spec: Mapping[str, Any], values: list[Any]) -> Any:
    """An int or float range that holds every value the rows have, so a space narrowed after
    trials ran still loads; a value off the step grid drops the step, one <= 0 the log scale."""
    import optuna.distributions as d

    cast = _CASTS[spec["kind"]]
    bounds = [cast(v) for v in (spec.get("low"), spec.get("high"), *values) if v is not None]
    low, high = min(bounds), max(bounds)
    log = bool(spec.get("log")) and low > 0
    step = None if log or not spec.get("step") else cast(spec["step"])
    if step is not None and not _on_grid([cast(v) for v in values], low, step):
        step = None
    if cast is int:
        return d.IntDistribution(int(low), int(high), log=log, step=int(step or 1))
    return d.FloatDistribution(low, high, log=log, step=step)


def distribution(spec: Mapping[str, Any], values: list[Any]) -> Any:
    """The Optuna distribution of one searched key: its space record, widened to ``values``
    (the row cells). Categoricals list the values the rows hold, in the space's order first:
    the cells of an encoded key are override strings, not the space's choices.

    >>> distribution({"kind": "int", "low": 4, "high": 16, "step": 4}, [8, 12])
    IntDistribution(high=16, log=False, low=4, step=4)
    """
    import optuna.distributions as d

    if spec.get("kind", "categorical") != "categorical":
        return _range(spec, values)
    known = [_primitive(c) for c in spec.get("choices", ())]
    return d.CategoricalDistribution(list(dict.fromkeys([c for c in known if c in values] + values)))


def _distributions(data: ReportData) -> dict[str, Any]:
    out = {}
    for key in data.params:
        if key not in data.results:
            continue
        spec = data.space_of(key)
        values = [v for ok, v in (_cell(spec, c) for c in data.results[key]) if ok]
        if values or spec.get("kind", "categorical") != "categorical":
            out[key] = distribution(spec, list(dict.fromkeys(values)))
    return out


def _values(row: pd.Series, names: list[str]) -> list[float] | None:
    """The row's objective values, or None unless every one is a finite number."""
    try:
        values = [float(row[n]) for n in names]
    except (KeyError, TypeError, ValueError):
        return None
    return values if all(math.isfinite(v) for v in values) else None


def _state(status: Any, values: list[float] | None) -> Any:
    """The Optuna state of a row: a completed row without its metric failed, as Optuna says of a
    NaN; a row not run yet waits and a queued or running one runs (neither has failed)."""
    from optuna.trial import TrialState as Optuna

    state = TrialState.parse(status)
    if state is TrialState.COMPLETED:
        return Optuna.COMPLETE if values is not None else Optuna.FAIL
    if state is TrialState.PRUNED:
        return Optuna.PRUNED
    if state in _NOT_RUN:
        return Optuna.WAITING
    return Optuna.RUNNING if state is not None and state.is_active() else Optuna.FAIL


def _intermediate(data: ReportData) -> dict[int, dict[int, float]]:
    """trial_id -> {epoch: the metric}, finite values only (a NaN epoch is no step)."""
    curves = data.curves
    if curves.empty or data.metric not in curves:
        return {}
    rows = curves[["trial_id", "epoch", data.metric]].dropna()
    rows = rows[rows[data.metric].map(lambda v: math.isfinite(float(v)))]
    return {int(tid): {int(e): float(v) for e, v in zip(g["epoch"], g[data.metric], strict=True)}
            for tid, g in rows.groupby("trial_id")}


def _local(stamp: Any) -> datetime.datetime:
    """A row's time as Optuna keeps times: naive, in local time."""
    moment = pd.Timestamp(stamp).to_pydatetime()
    return moment.astimezone().replace(tzinfo=None) if moment.tzinfo else moment


def _times(trial: Any, row: pd.Series) -> None:
    """The row's start and end, where it has both, in place of the moment the report ran."""
    start, end = row.get("started_at"), row.get("finished_at")
    if trial.datetime_complete is None or pd.isna(start) or pd.isna(end):
        return
    trial.datetime_start = _local(start)
    trial.datetime_complete = max(_local(end), trial.datetime_start)


def _trial(row: pd.Series, data: ReportData, dists: dict[str, Any],
           steps: dict[int, dict[int, float]]) -> Any:
    import optuna

    values = _values(row, [m for m, _ in objectives(data)])
    state = _state(row["status"], values)
    params = {}
    for key in dists:
        ok, value = _cell(data.space_of(key), row[key])
        if ok:
            params[key] = value
    attrs = {"trial_id": int(row["trial_id"]), "status": str(row["status"])}
    if isinstance(row.get("error"), str):
        attrs["error"] = row["error"].splitlines()[0][:200]
    keep = state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    trial = optuna.trial.create_trial(
        state=state, values=values if keep else None, params=params,
        distributions={k: dists[k] for k in params}, user_attrs=attrs,
        intermediate_values=steps.get(int(row["trial_id"]), {}))
    _times(trial, row)
    return trial


def study_from_rows(data: ReportData) -> optuna.Study:
    """An in-memory study with one trial per result row, in trial id order (trial number i is
    the i-th row; user attr ``trial_id`` is sweeper's id).

    Completed rows are COMPLETE with their metric(s), pruned rows PRUNED, rows not run yet
    WAITING, queued or running ones RUNNING, the rest FAIL. Several search metrics make a
    multi-objective study (``directions=``), whose objectives are named after the metrics.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    goals = objectives(data)
    directions: Any = [d for _, d in goals]
    study = optuna.create_study(directions=directions)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([m for m, _ in goals])
    dists, steps = _distributions(data), _intermediate(data)
    rows = data.results.sort_values("trial_id")
    study.add_trials([_trial(row, data, dists, steps) for _, row in rows.iterrows()])
    return study


def pareto_trials(study: optuna.Study, data: ReportData) -> pd.DataFrame | None:
    """The rows of the trials on the study's Pareto front, by the report's metric; None when
    the study has one objective."""
    if len(study.directions) < 2:
        return None
    front = {t.user_attrs["trial_id"] for t in study.best_trials}
    rows = data.results[data.results["trial_id"].isin(front)]
    columns = ["trial_id", *(m for m, _ in objectives(data)), *(k for k in data.params if k in rows)]
    return rows.sort_values([data.metric, "trial_id"],
                            ascending=[data.direction == "minimize", True])[columns]


def study_journal(paths: SweepPaths, record: SweepRecord) -> Path:
    """The journal file optuna-dashboard opens for this sweep: the sweep's own study (adaptive
    and pruned sweeps keep one, unless ``search.storage`` names a database) when it has one,
    else the one the report writes. Either holds the study :func:`sweeper.study.study_name`.

    >>> from types import SimpleNamespace as NS
    >>> study_journal(SweepPaths(Path("/s")), NS(search=NS(storage=None))).as_posix()
    '/s/report/study.journal'
    """
    from sweeper.study import JOURNAL_NAME

    own = paths.root / JOURNAL_NAME
    if record.search.storage is None and own.is_file():
        return own
    return paths.report_dir / JOURNAL_NAME


def write_journal(study: optuna.Study, path: Path, name: str) -> Path:
    """``study`` as a fresh journal file at ``path``, as study ``name``: written beside, then
    renamed over the last one, so a dashboard never reads half a journal or stale trials."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    with atomic_path(path) as tmp:
        tmp.unlink()  # the backend appends: start from nothing
        copy = optuna.create_study(storage=JournalStorage(JournalFileBackend(str(tmp))),
                                   study_name=name, directions=study.directions)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            copy.set_metric_names(list(study.metric_names or []))
        copy.add_trials(study.get_trials(deepcopy=False))
    return path
