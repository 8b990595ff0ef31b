"""The sweep's Optuna study: where it lives, its sampler and pruner, and its distributions.

Adaptive sweeps (tpe, gp, cmaes) ask it for trials; sweeps with a pruner, of any method,
report each epoch's metric to it. The sweep dir stays the source of truth for rows; the study
holds what Optuna needs (params, intermediate values, trial states). Optuna does all the
sampling, pruning and storage: this module only builds its objects from ``search.*`` and
turns every bad setting into one line that lists the valid ones.

Storage: by default a journal file in the sweep dir (``study.journal``: no server; Optuna's
file lock serialises writers). ``search.storage`` may name a database URL instead:
PostgreSQL for many workers on many nodes; SQLite only for one worker (it has no row locks,
and breaks on NFS).
"""

from __future__ import annotations

import inspect
import sys
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from sweeper.errors import ConfigError, closest
from sweeper.state import TrialState

if TYPE_CHECKING:
    import optuna

    from sweeper.paths import SweepPaths
    from sweeper.record import SweepRecord
    from sweeper.results import TrialOutcome
    from sweeper.schema import SearchConf

__all__ = ["OPTUNA_COLUMN", "PRUNERS", "SAMPLERS", "StudyLink", "check_study_settings",
           "distributions", "make_pruner", "make_sampler", "open_study", "storage_url",
           "study_name", "tell_outcome"]

#: The trial table's column with each adaptive trial's Optuna trial number.
OPTUNA_COLUMN = "optuna_trial"

#: search.method -> the Optuna sampler class it uses.
SAMPLERS = {"tpe": "TPESampler", "gp": "GPSampler", "cmaes": "CmaEsSampler",
            "random": "RandomSampler", "qmc": "QMCSampler", "grid": "GridSampler"}
#: search.pruner.type -> the Optuna pruner class.
PRUNERS = {"none": "NopPruner", "median": "MedianPruner", "percentile": "PercentilePruner",
           "successive_halving": "SuccessiveHalvingPruner", "hyperband": "HyperbandPruner",
           "wilcoxon": "WilcoxonPruner", "threshold": "ThresholdPruner",
           "patient": "PatientPruner"}
_PRUNER_ALIASES = {"asha": "successive_halving", "sha": "successive_halving", "nop": "none"}
JOURNAL_NAME = "study.journal"


def study_name(record: SweepRecord) -> str:
    """One study per sweep dir, also in a database shared by many sweeps: the fingerprint
    says what it computes, the sweep id (made when the dir was first planned) which dir."""
    return f"sweeper-{record.fingerprint}" + (f"-{record.sweep_id}" if record.sweep_id else "")


def _kind(name: Any, table: Mapping[str, str], aliases: Mapping[str, str], where: str) -> str:
    """``name`` (short name or Optuna class name, any case) as a key of ``table``."""
    text = str(name)
    by_class = {cls.lower(): short for short, cls in table.items()}
    key = aliases.get(text.lower(), text.lower())
    key = by_class.get(key, key)
    if key not in table:
        options = sorted(table)
        raise ConfigError(f"unknown {where} {text!r}{closest(text.lower(), options)}; options: "
                          f"{', '.join(options)} (or the Optuna class name, e.g. "
                          f"{next(iter(table.values()))})")
    return key


def _construct(cls: type, kwargs: Mapping[str, Any], where: str) -> Any:
    """``cls(**kwargs)``; an unknown keyword or a bad value is one line naming the valid ones."""
    params = inspect.signature(cls.__init__).parameters  # type: ignore[misc]
    valid = [n for n, p in params.items() if n != "self" and p.kind is not p.VAR_KEYWORD
             and not n.endswith("_func") and n not in ("wrapped_pruner", "independent_sampler")]
    for key in kwargs:
        if key not in valid:
            raise ConfigError(f"{where}.{key} is not a setting of optuna's {cls.__name__}"
                              f"{closest(key, valid)}; valid: {', '.join(valid)}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # experimental/deprecation notes: not the user's doing
            return cls(**kwargs)
    except (TypeError, ValueError) as ex:
        raise ConfigError(f"{where} is refused by optuna's {cls.__name__}: "
                          f"{str(ex).splitlines()[0]}; fix the value") from None


def _settings(node: Any, where: str) -> dict[str, Any]:
    if node is None:
        return {}
    if not isinstance(node, Mapping):
        raise ConfigError(f"{where} must be a mapping of settings, got {node!r}; e.g. "
                          f"{where}: {{type: median, n_startup_trials: 5}}")
    return dict(node)


def sampler_kind(search: SearchConf) -> str:
    """The method, checked against ``search.sampler.type`` when that names one too."""
    named = _settings(search.sampler, "search.sampler").get("type")
    if named is None:
        return search.method
    kind = _kind(named, SAMPLERS, {}, "search.sampler.type")
    if kind != search.method and search.method != "grid":
        raise ConfigError(f"search.sampler.type={named} disagrees with search.method="
                          f"{search.method}; keep one, e.g. search.method={kind}")
    return kind


def make_sampler(search: SearchConf, stream: int = 0) -> optuna.samplers.BaseSampler:
    """The Optuna sampler of an adaptive method, with ``search.sampler``'s keywords.

    Each worker process draws from its own ``stream``: workers that shared one seed would
    propose the same startup points at the same time.
    """
    import optuna

    kind = sampler_kind(search)
    kwargs = _settings(search.sampler, "search.sampler")
    kwargs.pop("type", None)
    cls = getattr(optuna.samplers, SAMPLERS[kind])
    if "seed" in inspect.signature(cls.__init__).parameters:
        seed = kwargs.get("seed", search.seed)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"search.sampler.seed must be a whole number, got {seed!r}")
        kwargs["seed"] = (seed * 1_000_003 + stream) % 2**32
    return _construct(cls, kwargs, "search.sampler")


def make_pruner(search: SearchConf) -> optuna.pruners.BasePruner:
    """The Optuna pruner ``search.pruner`` names (``none``: never prune)."""
    return _pruner(_settings(search.pruner, "search.pruner"), "search.pruner")


def _pruner(settings: dict[str, Any], where: str) -> optuna.pruners.BasePruner:
    import optuna

    kind = _kind(settings.pop("type", "none"), PRUNERS, _PRUNER_ALIASES, f"{where}.type")
    cls = getattr(optuna.pruners, PRUNERS[kind])
    if kind == "patient":
        inner = _settings(settings.pop("wrapped", None) or {"type": "none"}, f"{where}.wrapped")
        if "patience" not in settings:
            raise ConfigError(f"{where}.type=patient needs {where}.patience, e.g. "
                              f"{{type: patient, patience: 3, wrapped: {{type: median}}}}")
        wrapped = _pruner(inner, f"{where}.wrapped")
        return _construct_patient(cls, wrapped, settings, where)
    if kind == "percentile" and "percentile" not in settings:
        raise ConfigError(f"{where}.type=percentile needs {where}.percentile, e.g. 25.0")
    return _construct(cls, settings, where)


def _construct_patient(cls: type, wrapped: Any, settings: dict[str, Any], where: str) -> Any:
    valid = ["patience", "min_delta", "wrapped"]
    for key in settings:
        if key not in valid:
            raise ConfigError(f"{where}.{key} is not a setting of optuna's PatientPruner"
                              f"{closest(key, valid)}; valid: type, {', '.join(valid)}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "experimental": not the user's doing
            return cls(wrapped, **settings)
    except (TypeError, ValueError) as ex:
        raise ConfigError(f"{where} is refused by optuna's PatientPruner: "
                          f"{str(ex).splitlines()[0]}; fix the value") from None


def check_study_settings(search: SearchConf, n_workers: int = 1) -> None:
    """Everything about the study that can be wrong, checked before anything runs."""
    from sweeper.schema import DIRECTIONS

    metrics, directions = search.metrics, search.directions
    if len(directions) != len(metrics):
        raise ConfigError(f"search.direction has {len(directions)} entries for {len(metrics)} "
                          f"metrics {metrics}; give one per metric, e.g. "
                          f"[{', '.join(['minimize'] * len(metrics))}]")
    for d in directions:
        if d not in DIRECTIONS:
            raise ConfigError(f"unknown search.direction {d!r}{closest(d, DIRECTIONS)}; "
                              f"options: {', '.join(DIRECTIONS)}")
    if len(metrics) != len(set(metrics)):
        raise ConfigError(f"search.metric lists a metric twice: {metrics}; keep one of each")
    if len(metrics) > 1 and search.method not in ("tpe", "gp", "grid", "random", "qmc"):
        raise ConfigError(f"search.method={search.method} optimises one metric, got {metrics}; "
                          "use search.method=tpe (or gp) for several")
    if len(metrics) > 1 and search.pruning:
        raise ConfigError(f"pruning compares one metric across trials, got {metrics}; use one "
                          "metric or search.pruner.type=none")
    if search.adaptive:
        make_sampler(search)
    elif _settings(search.sampler, "search.sampler"):
        raise ConfigError(f"search.sampler is for the adaptive methods (tpe, gp, cmaes), but "
                          f"search.method={search.method} plans every trial up front; remove it")
    make_pruner(search)
    if search.max_retries < 0:
        raise ConfigError(f"search.max_retries must be 0 or more, got {search.max_retries}")
    url = search.storage or ""
    if url and "://" not in url:
        raise ConfigError(f"search.storage={url!r} is not a database URL; e.g. "
                          "postgresql://user@host/db, or null for a journal file in the sweep dir")
    if url.startswith("sqlite") and n_workers > 1:
        print(f"[sweeper] warning: search.storage is SQLite with {n_workers} workers. SQLite "
              "has no row locks (Optuna cannot hand waiting trials out safely) and corrupts on "
              "NFS; use the default journal file, or PostgreSQL across nodes", file=sys.stderr)


def storage_url(paths: SweepPaths, search: SearchConf) -> str:
    """Where the study lives, for humans (and optuna-dashboard)."""
    return search.storage or str(paths.root / JOURNAL_NAME)


def _storage(paths: SweepPaths, search: SearchConf) -> Any:
    import optuna

    if search.storage:
        try:
            return optuna.storages.RDBStorage(search.storage,
                                              engine_kwargs={"pool_pre_ping": True})
        except Exception as ex:
            raise ConfigError(f"cannot open search.storage={search.storage!r} "
                              f"({type(ex).__name__}: {str(ex).splitlines()[0]}); check the "
                              "URL, the server, and that its driver is installed "
                              "(pip install 'sweeper[postgres]' for PostgreSQL)") from None
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(paths.root / JOURNAL_NAME)))


def open_study(paths: SweepPaths, record: SweepRecord,
               sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
    """The sweep's study, created on first use (every process may call this)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    search = record.search
    directions: Any = search.directions
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.create_study(
            storage=_storage(paths, search), study_name=study_name(record),
            load_if_exists=True, sampler=sampler or optuna.samplers.RandomSampler(),
            pruner=make_pruner(search),
            directions=directions if len(directions) > 1 else None,
            direction=directions[0] if len(directions) == 1 else None)


def distributions(record: SweepRecord) -> dict[str, optuna.distributions.BaseDistribution]:
    """Each searched key as the Optuna distribution it is: log scales, int steps and
    categoricals map exactly. Config groups are categoricals over their option names;
    values a study cannot hold (lists, dicts) are categoricals over their override strings."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    from sweeper.schema import fold_key

    encodings = {p.key: p for p in record.params}
    fold = fold_key(record.search.cross_validation)
    out: dict[str, Any] = {}
    for spec in record.space:
        key = str(spec["key"])
        if key == fold:  # a config's folds are its steps, not a parameter
            continue
        if spec["kind"] == "categorical":
            by_value = encodings[key].encoding == "value" and not encodings[key].group
            out[key] = CategoricalDistribution(
                list(spec["choices"]) if by_value else list(spec["labels"]))
        elif spec["kind"] == "int":
            out[key] = IntDistribution(int(spec["low"]), int(spec["high"]),
                                       log=bool(spec.get("log")), step=int(spec.get("step") or 1))
        else:
            step = spec.get("step")
            out[key] = FloatDistribution(float(spec["low"]), float(spec["high"]),
                                         log=bool(spec.get("log")),
                                         step=float(step) if step is not None else None)
    return out


def holds(dist: Any, value: Any) -> bool:
    """Whether a study's trial can hold this value under this distribution (a categorical's
    choices, a range's bounds and step)."""
    try:
        return bool(dist._contains(dist.to_internal_repr(value)))
    except (ValueError, TypeError):
        return False


#: user attr of a trial added to a study from an earlier sweep's results (a campaign stage's
#: warm start): it informs the sampler, and is not one of the sweep's own trials
PRIOR_ATTR = "sweeper_prior"


def add_priors(study: optuna.Study, record: SweepRecord, rows: Sequence[Mapping[str, Any]],
               labels: Sequence[str]) -> int:
    """Add completed results of earlier sweeps to ``study`` as COMPLETE trials (user attr
    ``sweeper_prior`` = their label), so its sampler models from them at once; rows with a
    value outside this sweep's space, or without the metric(s), are left out. Returns how
    many were added."""
    import optuna

    dists = distributions(record)
    trials = []
    for row, label in zip(rows, labels, strict=True):
        params = {k: _plain(row.get(k)) for k in dists}
        if not all(v is not None and holds(dists[k], v) for k, v in params.items()):
            continue
        if (values := _values(record, row)) is None:
            continue
        trials.append(optuna.trial.create_trial(params=params, distributions=dists,
                                                values=values, user_attrs={PRIOR_ATTR: label}))
    study.add_trials(trials)
    return len(trials)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _values(record: SweepRecord, metrics: Mapping[str, Any]) -> list[float] | None:
    try:
        values = [float(metrics[m]) for m in record.search.metrics]
    except (KeyError, TypeError, ValueError):
        return None
    return values if all(np.isfinite(values)) else None


def tell_outcome(study: optuna.Study, number: int, state: TrialState, metrics: Mapping[str, Any],
          record: SweepRecord) -> None:
    import optuna

    if state is TrialState.COMPLETED and (values := _values(record, metrics)) is not None:
        study.tell(number, values, skip_if_finished=True)
    elif state is TrialState.PRUNED:
        study.tell(number, state=optuna.trial.TrialState.PRUNED, skip_if_finished=True)
    else:
        study.tell(number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)


class StudyLink:
    """A running trial's Optuna trial: what ``sweeper.report`` feeds (for pruning) and what
    is told when the trial ends. Any storage failure is said once and then ignored: the
    trial goes on without pruning, and a trial never told is recovered as lost later."""

    def __init__(self, paths: SweepPaths, record: SweepRecord, row: Mapping[str, Any]) -> None:
        import optuna

        self.record = record
        self.metric = record.search.metrics[0]
        self.study = open_study(paths, record)
        number = row.get(OPTUNA_COLUMN)
        if number is None:  # a static trial, pruned: its study trial starts with it
            number = self._add(row)
        self.number = int(number)
        storage = self.study._storage
        trial_id = storage.get_trial_id_from_study_id_trial_number(self.study._study_id,
                                                                    self.number)
        self.trial = optuna.trial.Trial(self.study, trial_id)
        self.broken = False

    #: a fold of a cross-validated config asks the pruner before it starts (folds are steps)
    checks_before_start = False

    def _add(self, row: Mapping[str, Any]) -> int:
        dists = distributions(self.record)
        params = {k: row[k] for k in dists if holds(dists[k], row[k])}  # others stay in the row
        return self._create(params, {k: dists[k] for k in params},
                            {"trial_id": int(row["trial_id"])})

    def _create(self, params: Mapping[str, Any], dists: Mapping[str, Any],
                attrs: Mapping[str, Any]) -> int:
        """A new RUNNING trial in the study; its number (not the study's last trial's, which
        another process may have added meanwhile)."""
        import optuna

        template = optuna.trial.create_trial(params=dict(params), distributions=dict(dists),
                                             state=optuna.trial.TrialState.RUNNING,
                                             user_attrs=dict(attrs))
        storage = self.study._storage
        trial_id = storage.create_new_trial(self.study._study_id, template_trial=template)
        return int(storage.get_trial_number_from_id(trial_id))

    def report(self, epoch: int, metrics: Mapping[str, float]) -> None:
        value = metrics.get(self.metric)
        if value is None or not np.isfinite(value) or self.broken:
            return
        try:
            self.trial.report(float(value), int(epoch))
        except Exception as ex:  # the trial goes on, unpruned
            self.broken = True
            print(f"[sweeper] could not report to the study ({type(ex).__name__}: {ex}); "
                  "this trial is not pruned", flush=True)

    def should_prune(self) -> bool:
        return not self.broken and bool(self.trial.should_prune())

    def tell(self, outcome: TrialOutcome) -> None:
        """Tell how the trial ended; stopped ones (cancelled, timed out, requeued) stay
        running in the study, for the next ask to recover or the requeued task to go on."""
        if outcome.status in (TrialState.COMPLETED, TrialState.PRUNED) or (
                outcome.status is TrialState.FAILED and outcome.traceback):
            tell_outcome(self.study, self.number, outcome.status, outcome.metrics or {}, self.record)
