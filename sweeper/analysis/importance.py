"""Parameter importance with Optuna's PED-ANOVA evaluator, on the study built from the rows.

PED-ANOVA needs only numpy (Optuna's fANOVA needs scikit-learn), and it answers the question a
sweep asks: which parameters separate the best trials from the rest.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from sweeper.analysis.data import ReportData
from sweeper.analysis.study_view import completed_trials, target_args, varying

if TYPE_CHECKING:
    import optuna

__all__ = ["MIN_TRIALS", "importances"]

#: PED-ANOVA compares the best trials with the rest: with fewer there is nothing to compare.
MIN_TRIALS = 3


def importances(study: optuna.Study, data: ReportData) -> dict[str, float]:
    """Importance of each searched key for the report's metric, most important first (empty
    with fewer than MIN_TRIALS completed trials, or when no key varies among them)."""
    from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances

    keys = varying(study, list(data.params))
    if len(completed_trials(study)) < MIN_TRIALS or not keys:
        return {}
    target = target_args(data).get("target")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PED-ANOVA warns on small studies; few trials still rank
        try:
            found = get_param_importances(study, evaluator=PedAnovaImportanceEvaluator(),
                                          params=keys, target=target)
        except (ValueError, RuntimeError, ZeroDivisionError):
            return {}
    return {k: float(v) for k, v in found.items()}
