"""Parameter importance with Optuna's PED-ANOVA evaluator, on a study built from the results.

PED-ANOVA needs only numpy (Optuna's fANOVA needs scikit-learn), and it answers the question a
sweep asks: which parameters separate the best trials from the rest.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from sweeper.analysis.data import ReportData

__all__ = ["distribution", "importances"]


def _primitive(value: Any) -> Any:
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)


def distribution(spec: dict[str, Any], values: list[Any]) -> Any:
    """The Optuna distribution of one searched key, from its space record."""
    import optuna.distributions as d

    kind = spec.get("kind", "categorical")
    if kind == "categorical":
        choices = tuple(dict.fromkeys(_primitive(c) for c in spec.get("choices", values)))
        return d.CategoricalDistribution(choices)
    low, high = spec.get("low", min(values)), spec.get("high", max(values))
    if kind == "int":
        return d.IntDistribution(int(low), int(high), log=bool(spec.get("log")),
                                 step=int(spec.get("step") or 1))
    return d.FloatDistribution(float(low), float(high), log=bool(spec.get("log")),
                               step=spec.get("step"))


def importances(data: ReportData) -> dict[str, float]:
    """Importance of each searched key for the metric (empty when there is too little data)."""
    import optuna
    from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances

    done = data.done
    keys = [k for k in data.params if k in done and done[k].nunique() > 1]
    if len(done) < 4 or not keys:
        return {}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = {k: distribution(data.space_of(k), done[k].tolist()) for k in keys}
    trials = []
    for _, row in done.iterrows():
        value = float(row[data.metric])
        if not math.isfinite(value):
            continue
        params = {k: _primitive(row[k].item() if hasattr(row[k], "item") else row[k]) for k in keys}
        trials.append(optuna.trial.create_trial(params=params, distributions=dists, value=value))
    study = optuna.create_study(direction=optuna.study.StudyDirection[data.direction.upper()])
    study.add_trials(trials)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PED-ANOVA warns on small studies; few trials still rank
        try:
            found = get_param_importances(study, evaluator=PedAnovaImportanceEvaluator())
        except (ValueError, RuntimeError, ZeroDivisionError):
            return {}
    return {k: float(v) for k, v in found.items()}
