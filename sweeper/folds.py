"""Cross-validation in the study: a config is one Optuna trial, and its folds are its steps.

With ``search.cross_validation`` each config runs as ``n_folds`` trials of the sweep (rows
with the fold in ``fold_key``), which may run in parallel. When the sweep keeps a study
(adaptive methods, or a pruner), the config's folds share one Optuna trial:

- each completed fold reports its metric at step = its fold (so Optuna's ``WilcoxonPruner``
  compares configs fold by fold, as it is meant to);
- a fold about to start asks the pruner first, and one that a finished fold already shows
  clearly worse than the best config is recorded ``pruned`` without training (so is a fold
  that learns it mid-run, through ``sweeper.should_prune()``);
- the fold that ends the config tells the study the aggregate of its folds' metric (mean or
  median, as the sweep says), with their std as user attr ``<metric>_std``.

Adaptive sweeps ask the config once and append its fold rows together (the Optuna trial
lists them in user attr ``sweeper_trials``); static sweeps create the config's trial when its
first fold starts, under the sweep dir's lock, keyed by the id of its fold 0.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from sweeper.paths import SweepPaths
from sweeper.record import SweepRecord
from sweeper.schema import fold_key
from sweeper.state import TrialState
from sweeper.study import StudyLink, distributions, holds

if TYPE_CHECKING:
    import optuna

    from sweeper.results import TrialOutcome

__all__ = ["CONFIG_ATTR", "TRIALS_ATTR", "FoldLink", "aggregate", "read_row", "settle",
           "trial_ids_of"]

TRIALS_ATTR = "sweeper_trials"  # the sweeper ids of a config's fold rows
CONFIG_ATTR = "sweeper_config"  # a static config's key: the id of its fold 0


def trial_ids_of(t: optuna.trial.FrozenTrial) -> list[int]:
    """The sweeper trials (rows) an Optuna trial stands for: its folds, or its one row."""
    ids = t.user_attrs.get(TRIALS_ATTR)
    if ids:
        return [int(i) for i in ids]
    tid = t.user_attrs.get("trial_id")
    return [] if tid is None else [int(tid)]


def read_row(paths: SweepPaths, tid: int) -> dict[str, Any] | None:
    """A trial's result row, or None when it has none (yet)."""
    import pyarrow.parquet as pq

    try:
        row: dict[str, Any] = pq.read_table(paths.result(tid)).to_pylist()[0]
        return row
    except (OSError, pa.ArrowException, IndexError):
        return None


def aggregate(rows: Sequence[Mapping[str, Any]], metrics: Sequence[str],
              how: str = "mean") -> dict[str, float]:
    """The metrics' aggregate over completed folds, and each one's std (``<metric>_std``).

    >>> aggregate([{"loss": 1.0}, {"loss": 3.0}], ["loss"])
    {'loss': 2.0, 'loss_std': 1.4142135623730951}
    """
    out: dict[str, float] = {}
    for m in metrics:
        values = np.array([float(r[m]) for r in rows if r.get(m) is not None], dtype=float)
        if len(values) == 0:
            continue
        out[m] = float(np.median(values) if how == "median" else np.mean(values))
        out[f"{m}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return out


def settle(paths: SweepPaths, record: SweepRecord, study: optuna.Study, number: int,
           tids: Sequence[int]) -> bool:
    """Tell the study how a config (or a single trial) ended, once every one of its rows is
    final: failed if any fold failed, pruned if any was pruned, else the aggregate of their
    metric(s). False, and nothing told, while a row is missing or was stopped from outside
    (its process died: a failed row without traceback; cancelled; timed out)."""
    from sweeper.study import tell_outcome

    found = [read_row(paths, tid) for tid in tids]
    rows = [r for r in found if r is not None]
    if not rows or len(rows) < len(found):
        return False
    states = [TrialState.parse(r.get("status")) for r in rows]
    if any(s not in (TrialState.COMPLETED, TrialState.PRUNED, TrialState.FAILED)
           or (s is TrialState.FAILED and not r.get("traceback"))
           for s, r in zip(states, rows, strict=True)):
        return False
    done = [r for s, r in zip(states, rows, strict=True) if s is TrialState.COMPLETED]
    if TrialState.FAILED in states:
        state = TrialState.FAILED
    elif TrialState.PRUNED in states:
        state = TrialState.PRUNED
    else:
        state = TrialState.COMPLETED
    metrics = aggregate(done, record.search.metrics, record.search.cross_validation.aggregation)
    if len(tids) > 1:
        trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id,
                                                                          number)
        for key, value in metrics.items():
            if key.endswith("_std"):
                study._storage.set_trial_user_attr(trial_id, key, value)
    tell_outcome(study, number, state, metrics, record)
    return True


class FoldLink(StudyLink):
    """A cross-validation fold's link to its config's Optuna trial (see the module docstring)."""

    def __init__(self, paths: SweepPaths, record: SweepRecord, row: Mapping[str, Any]) -> None:
        key = fold_key(record.search.cross_validation)
        assert key is not None
        self.paths = paths
        self.fold = int(row[key])
        self.n_folds = int(record.search.cross_validation.n_folds)
        super().__init__(paths, record, row)

    def _add(self, row: Mapping[str, Any]) -> int:
        """A static sweep's config trial: the one its other folds made, or a new one."""
        import optuna

        from sweeper.locks import dir_lock

        first = int(row["trial_id"]) - self.fold  # folds vary fastest, ids are consecutive
        with dir_lock(self.paths.lock, "the sweep dir", timeout_s=300):
            for t in self.study.get_trials(deepcopy=False,
                                           states=(optuna.trial.TrialState.RUNNING,)):
                if t.user_attrs.get(CONFIG_ATTR) == first:
                    return t.number
            dists = distributions(self.record)
            params = {k: row[k] for k in dists if holds(dists[k], row[k])}
            return self._create(params, {k: dists[k] for k in params}, {
                "trial_id": first, CONFIG_ATTR: first,
                TRIALS_ATTR: list(range(first, first + self.n_folds))})

    checks_before_start = True

    def should_prune(self) -> bool:
        """The pruner's verdict on the config by its folds so far (those other processes
        reported included); False when the study cannot be read."""
        if self.broken:
            return False
        try:
            frozen = self.study._storage.get_trial(self.trial._trial_id)
            return bool(self.study.pruner.prune(self.study, frozen))
        except Exception as ex:
            print(f"[sweeper] could not ask the pruner ({type(ex).__name__}: {ex}); going on",
                  file=sys.stderr, flush=True)
            return False

    def report(self, epoch: int, metrics: Mapping[str, float]) -> None:
        """Epochs are not the config's steps (its folds are): nothing to report mid-fold."""

    def tell(self, outcome: TrialOutcome) -> None:
        """Report this fold's metric at its step; the last fold of the config tells the study."""
        from sweeper.locks import dir_lock

        value = (outcome.metrics or {}).get(self.metric)
        if outcome.status is TrialState.COMPLETED and value is not None \
                and np.isfinite(float(value)):
            try:
                self.trial.report(float(value), self.fold)
            except Exception as ex:
                print(f"[sweeper] could not report fold {self.fold} to the study "
                      f"({type(ex).__name__}: {ex})", file=sys.stderr, flush=True)
        tids = trial_ids_of(self.study._storage.get_trial(self.trial._trial_id))
        with dir_lock(self.paths.lock, "the sweep dir", timeout_s=300):
            settle(self.paths, self.record, self.study, self.number, tids)
