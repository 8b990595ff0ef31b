"""Adaptive trials: ask the study, give each asked trial a row, tell it how the trial ended.

A worker (the local driver, as a slot frees up; a SLURM array task, in a loop) calls
:meth:`Asker.ask`. Under the sweep dir's lock it first settles trials whose worker died
(:meth:`Asker.recover`), then checks the budget (``search.n_trials`` across all workers), asks
Optuna and appends the trial's row to the trial table, ids continuing from the highest. The
row carries the Optuna trial number (``optuna_trial``) and the Optuna trial the sweeper id
(user attr ``trial_id``), so status, merge, report and resume treat adaptive trials like
static ones.

The trial's own process tells the study how it ended (:class:`sweeper.study.StudyLink`): completed with its
metric(s), pruned, or failed. A trial stopped from outside (cancelled, timed out, its process
killed) is left running in the study; the next ask finds it gone from the sweep (its marker
dead, its element out of the queue), tells it as failed and asks its parameters again, at
most ``search.max_retries`` times, so the budget is never silently lost. The journal storage
has no heartbeat; this detection works for every storage.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from sweeper.folds import TRIALS_ATTR, settle, trial_ids_of
from sweeper.paths import SweepPaths
from sweeper.record import SweepRecord
from sweeper.schema import fold_key
from sweeper.state import TrialState
from sweeper.study import OPTUNA_COLUMN, PRIOR_ATTR

if TYPE_CHECKING:
    import optuna

__all__ = ["OPTUNA_COLUMN", "Asker", "add_number_column", "durations_s", "fits_before",
           "request_of"]

_LOST = "sweeper_lost"
_REPLACES = "sweeper_replaces"  # on a trial asked again with --retry-failed: the failed one's number
_RETRIES = "sweeper_retries"


def add_number_column(table: pa.Table, numbers: Collection[int] | None = None) -> pa.Table:
    """The trial table with its ``optuna_trial`` column (adaptive sweeps)."""
    values = pa.array(list(numbers) if numbers is not None else [0] * table.num_rows, pa.int64())
    return table.append_column(OPTUNA_COLUMN, values)


def request_of(record: SweepRecord) -> Any:
    """The sweep's space as planned, rebuilt from the record (the rows of asked trials are
    built by the same code as planned ones, so their columns and hashes agree)."""
    from sweeper.overrides import SweepRequest
    from sweeper.space import Param, SearchSpace

    params = []
    for spec in record.space:
        fields = dict(spec)
        for name in ("choices", "labels"):
            if name in fields:
                fields[name] = tuple(fields[name])
        params.append(Param(**fields))
    entries: list[tuple[str, Any]] = [(s.split("=")[0], s) for s in record.fixed_overrides]
    entries += [(p.override_key, p) for p in params]
    return SweepRequest(SearchSpace(tuple(params)), tuple(entries))


def _variant_seed(record: SweepRecord, variant: int) -> int:
    from omegaconf import OmegaConf

    return int(OmegaConf.select(record.variants[variant].config, "seed",
                                default=record.search.seed))


@dataclass
class Asker:
    """Hands out the adaptive trials of one worker (see the module docstring)."""

    paths: SweepPaths
    record: SweepRecord
    stream: int = 0  # this worker's sampler stream (its seed offset)
    study: optuna.Study = field(init=False)

    def __post_init__(self) -> None:
        from sweeper.study import distributions, make_sampler, open_study

        self.study = open_study(self.paths, self.record,
                                make_sampler(self.record.search, self.stream))
        self.dists = distributions(self.record)
        self.request = request_of(self.record)
        self._variants = {v.choices: i for i, v in enumerate(self.record.variants)}
        self.fold = fold_key(self.record.search.cross_validation)

    # -- the budget -------------------------------------------------------------------------
    def used(self) -> int:
        """Trials that count against n_trials: every asked one, less those lost to a dead
        worker (their parameters are asked again)."""
        trials = self.study.get_trials(deepcopy=False)
        replaced = {t.user_attrs[_REPLACES] for t in trials if _REPLACES in t.user_attrs}
        return sum(1 for t in trials if not t.user_attrs.get(_LOST) and t.number not in replaced
                   and PRIOR_ATTR not in t.user_attrs)

    def left(self) -> int:
        return max(0, int(self.record.search.n_trials or 0) - self.used())

    def has_waiting(self) -> bool:
        return self.waiting() > 0

    def waiting(self) -> int:
        """Trials asked again (after a loss, or with --retry-failed), waiting for a worker."""
        import optuna

        return len(self.study.get_trials(deepcopy=False,
                                         states=(optuna.trial.TrialState.WAITING,)))

    def to_ask(self) -> int:
        """Trials still to hand out: the budget left, and those waiting to run again."""
        return self.left() + self.waiting()

    # -- asking -----------------------------------------------------------------------------
    def ask(self, active_here: Collection[int] = ()) -> pa.Table | None:
        """The next trial's row (appended to the table), or None when the budget is spent.

        ``active_here`` are trials this worker runs now (alive, whatever their marker says).
        """
        from sweeper.locks import dir_lock
        from sweeper.trials import append_trials

        with dir_lock(self.paths.lock, "the sweep dir", timeout_s=300):
            self.recover(active_here)
            if self.left() <= 0 and not self.has_waiting():
                return None  # (a waiting trial, asked again after a loss, is in the budget)
            trial = self.study.ask(self.dists)
            rows = append_trials(self.paths, self._rows(trial.params, trial.number))
            tids = [int(t) for t in rows.column("trial_id").to_pylist()]
            trial.set_user_attr("trial_id", tids[0])
            if self.fold is not None:  # a cross-validated config: its folds' rows
                trial.set_user_attr(TRIALS_ATTR, tids)
        return rows

    def _rows(self, params: Mapping[str, Any], number: int) -> pa.Table:
        """The asked trial's row, or with cross-validation one row per fold (fold fastest)."""
        if self.fold is None:
            return self._row(params, number)
        k = int(self.record.search.cross_validation.n_folds)
        return pa.concat_tables([self._row({**params, self.fold: f}, number)
                                 for f in range(k)])

    def _row(self, params: Mapping[str, Any], number: int) -> pa.Table:
        from sweeper.strategies import Design
        from sweeper.trials import build_table

        columns = []
        for p in self.request.space.params:
            value = params[p.key]
            if p.key == self.fold:
                data = np.array([int(value)], dtype=np.int64)  # the fold's choices are 0..k-1
            elif p.kind == "categorical":
                options = list(self.dists[p.key].choices)  # type: ignore[attr-defined]
                data = np.array([options.index(value)], dtype=np.int64)
            else:
                data = np.array([value], dtype=np.int64 if p.kind == "int" else np.float64)
            columns.append((p, data))
        groups = tuple(f"{p.override_key}={p.labels[int(d[0])]}" for p, d in columns if p.group)
        variant = self._variants[groups]
        table, _ = build_table(self.request, Design(1, tuple(columns)),
                               np.array([variant], dtype=np.int64),
                               [v.config_hash for v in self.record.variants],
                               [_variant_seed(self.record, i)
                                for i in range(len(self.record.variants))])
        return add_number_column(table, [number])

    def retry_failed(self) -> int:
        """``resume --retry-failed``: ask the parameters of failed trials again (their rows
        stay as they are); returns how many. Call under the sweep dir's lock."""
        import optuna

        trials = self.study.get_trials(deepcopy=False)
        replaced = {t.user_attrs[_REPLACES] for t in trials if _REPLACES in t.user_attrs}
        failed = [t for t in trials if t.state is optuna.trial.TrialState.FAIL
                  and not t.user_attrs.get(_LOST) and t.number not in replaced]
        for t in failed:
            self.study.enqueue_trial(dict(t.params), user_attrs={
                "retry_of": t.user_attrs.get("trial_id"), _REPLACES: t.number})
        return len(failed)

    def in_doubt(self) -> bool:
        """Whether a trial running in the study looks gone from the sweep but is not yet
        judged lost (its element just left the queue without a row): a worker with nothing
        left to ask waits for the verdict, and runs the trial again if it is lost."""
        import optuna

        running = self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,
                                                                optuna.trial.TrialState.WAITING))
        if not running:
            return False
        if any(t.state is optuna.trial.TrialState.WAITING for t in running):
            return True
        from sweeper.status import sweep_state

        states = sweep_state(self.paths).states
        return any(all(states.get(tid) is not TrialState.RUNNING for tid in trial_ids_of(t))
                   for t in running)

    # -- trials whose worker died -----------------------------------------------------------
    def recover(self, active_here: Collection[int] = (), none_starting: bool = False) -> list[int]:
        """Tell the study about running trials that no worker runs any more; ask their
        parameters again (up to ``search.max_retries``). Call under the sweep dir's lock.
        ``none_starting``: no other worker may be starting a trial it just asked (a local
        driver's start), so an asked trial without a marker is lost at once.
        Returns the sweeper ids of the trials found lost."""
        import optuna

        running = self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        running = [t for t in running if not set(trial_ids_of(t)) & set(active_here)]
        if not running:
            return []
        from sweeper.status import sweep_state

        states = sweep_state(self.paths).states
        lost = []
        for t in running:
            tids = trial_ids_of(t)
            found: list[TrialState | None] = [states.get(tid) for tid in tids] if tids \
                else [TrialState.LOST]
            if any(s is None or s.is_active() for s in found) or (
                    not none_starting and _just_asked(self.paths, t, tids, found)):
                continue  # queued, running, just ended and its row is on its way, or between folds
            if tids and settle(self.paths, self.record, self.study, t.number, tids):
                continue  # its rows are final, but its tell never reached the study
            self._lose(t, tids)
            lost += tids
        return lost

    def _lose(self, t: optuna.trial.FrozenTrial, tids: list[int]) -> None:
        import optuna

        retries = int(t.user_attrs.get(_RETRIES, 0))
        again = retries < self.record.search.max_retries
        self.study._storage.set_trial_user_attr(t._trial_id, _LOST, True)
        self.study.tell(t.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
        what = (f"trial {tids[0]}" if len(tids) == 1 else f"the config of trials {tids}"
                if tids else f"optuna trial {t.number} (no row yet)")
        if again:
            self.study.enqueue_trial(dict(t.params), user_attrs={
                _RETRIES: retries + 1, "retry_of": tids[0] if tids else None})
        note = (f"it stopped mid-trial (its worker killed, cancelled or out of time); told the study it failed and asked its parameters "
                f"again (retry {retries + 1} of {self.record.search.max_retries})" if again else
                f"it stopped mid-trial, and its parameters were retried "
                f"search.max_retries={self.record.search.max_retries} times already; not again")
        print(f"[sweeper] {what}: {note}", file=sys.stderr, flush=True)
        for tid in tids:
            _mark_lost(self.paths, self.record, tid, note)


#: A trial asked this recently, with no marker yet, is on its way to its worker's process
#: (another worker asked it, released the lock, and starts it now): not lost.
ASK_GRACE_S = 60.0


def _just_asked(paths: SweepPaths, t: optuna.trial.FrozenTrial, tids: list[int],
                found: list[TrialState | None]) -> bool:
    """Whether a trial without a marker was asked (or its config's previous fold ended) so
    recently that its worker is still starting it."""
    import datetime as dt

    if TrialState.NOT_SUBMITTED not in found or t.datetime_start is None:
        return False
    latest = t.datetime_start.timestamp()
    for tid, state in zip(tids, found, strict=False):
        if state is not TrialState.NOT_SUBMITTED:  # a fold that ended: when its row came
            try:
                latest = max(latest, paths.result(tid).stat().st_mtime)
            except OSError:
                pass
    return dt.datetime.now().timestamp() - latest < ASK_GRACE_S


def _mark_lost(paths: SweepPaths, record: SweepRecord, tid: int, note: str) -> None:
    """Give the lost trial a row (failed, without traceback), unless a stopped one is there."""
    from sweeper.results import read_state
    from sweeper.runner import write_orphan

    if read_state(paths.result(tid)) is not None:
        return
    try:
        write_orphan(paths, record, tid, TrialState.FAILED, note)
    except Exception as ex:  # the study knows; the row is a courtesy
        print(f"[sweeper] could not write the row of lost trial {tid}: {ex}", file=sys.stderr)


def durations_s(study: optuna.Study) -> list[float]:
    """How long the completed trials took, for a worker to judge whether the next fits."""
    import optuna

    out = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        if t.datetime_start and t.datetime_complete and PRIOR_ATTR not in t.user_attrs:
            out.append((t.datetime_complete - t.datetime_start).total_seconds())
    return out


def fits_before(deadline: float, durations: list[float], margin_s: float) -> bool:
    """Whether a trial, judged by the 90th percentile of finished ones, ends before the
    deadline (with a margin for writing its row). With none finished, it is tried.

    >>> fits_before(time.time() + 100, [10.0, 20.0], 30.0)
    True
    >>> fits_before(time.time() + 100, [10.0, 90.0], 30.0)
    False
    """
    if not durations:
        return True
    expected = float(np.percentile(durations, 90))
    return time.time() + expected + margin_s < deadline
