"""Planning: expand the space, compose each config variant once, freeze it all on disk.

A *variant* is one combination of swept config-group choices. Each is composed by
Hydra exactly once, here, which also validates it; trials are that frozen variant
plus value overrides. Workers never compose again from YAML that may have changed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from sweeper import __version__, taskref
from sweeper.console import shell_path
from sweeper.errors import ConfigError, SweepDirError, closest
from sweeper.overrides import SweepRequest, parse_overrides
from sweeper.paths import SweepPaths
from sweeper.provenance import git_state
from sweeper.record import SweepRecord, VariantRecord
from sweeper.schema import ClusterConf, SearchConf, check_task_nodes
from sweeper.space import Param
from sweeper.strategies import Design, Strategy, make_strategy
from sweeper.trials import ParamColumn, build_table, read_trials, write_trials

__all__ = ["Plan", "Variant", "apply_cluster_overrides", "plan_sweep"]

Composer = Callable[[list[str]], DictConfig]
_MISSING = object()


@dataclass(frozen=True)
class Variant:
    choices: tuple[str, ...]
    config: DictConfig
    hydra: DictConfig | None
    config_hash: str


@dataclass(frozen=True)
class Plan:
    paths: SweepPaths
    table: pa.Table
    record: SweepRecord
    fingerprint: str
    existed: bool
    added: int = 0  # rows appended to an existing table (a larger budget)

    @property
    def n_trials(self) -> int:
        return self.table.num_rows


def _flat_keys(node: Any, prefix: str = "") -> list[str]:
    if not isinstance(node, dict):
        return []
    keys = []
    for k, v in node.items():
        keys.append(f"{prefix}{k}")
        keys.extend(_flat_keys(v, f"{prefix}{k}."))
    return keys


def _reapply(cfg: DictConfig, fixed: Sequence[str], is_group: Callable[[str], bool]) -> None:
    """Apply the command line's value overrides again, so they beat cluster_overrides."""
    for o in parse_overrides([s for s in fixed if not is_group(s.split("=")[0].lstrip("+~"))]):
        if not o.is_delete():
            OmegaConf.update(cfg, o.key_or_group, o.value(), merge=True,
                             force_add=o.is_add() or o.is_force_add())


def apply_cluster_overrides(task: DictConfig, fixed: Sequence[str],
                            is_group: Callable[[str], bool]) -> None:
    """Merge ``cluster_overrides`` into ``task``; command-line values still win over them."""
    overrides = task.get("cluster_overrides")
    if not overrides:
        return
    try:
        with open_dict(task):
            task.merge_with(overrides)
            _reapply(task, fixed, is_group)
    except OmegaConfBaseException as ex:
        raise ConfigError(
            f"cluster_overrides do not fit the config: {str(ex).splitlines()[0]}; "
            "every key in cluster_overrides must exist in the composed config"
        ) from None


def _freeze(full: DictConfig, cluster: bool, fixed: Sequence[str],
            is_group: Callable[[str], bool]) -> tuple[DictConfig, DictConfig | None]:
    hydra = full.get("hydra")
    task = full.copy()
    with open_dict(task):
        task.pop("hydra", None)
    if cluster:
        apply_cluster_overrides(task, fixed, is_group)
    return task, hydra


def _check_params(cfg: DictConfig, params: Sequence[Param], where: str) -> None:
    """Every searched key exists (unless added with +) and every value fits its node."""
    keys = _flat_keys(OmegaConf.to_container(cfg, resolve=False))
    probe = cfg.copy()
    for p in params:
        if p.group:
            continue
        if not p.prefix and OmegaConf.select(cfg, p.key, default=_MISSING,
                                             throw_on_missing=False) is _MISSING:
            raise ConfigError(
                f"'{p.key}' is not a key of the config{where}{closest(p.key, keys)} "
                f"(to add a new key, write '+{p.key}')"
            )
        values = list(p.choices) if p.kind == "categorical" else [p.low, p.high]
        for value in values:
            try:
                with open_dict(probe) if p.prefix else _nullctx():
                    OmegaConf.update(probe, p.key, value, merge=True, force_add=bool(p.prefix))
            except OmegaConfBaseException as ex:
                raise ConfigError(
                    f"{p.key}={value!r} does not fit the config{where}: "
                    f"{str(ex).splitlines()[0]}; change the value or the config's type"
                ) from None


class _nullctx:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


# Where and how a sweep runs is not what it computes: these nodes stay out of the hash, so
# resuming with another partition, memory or metric is the same sweep.
_NOT_HASHED = ("cluster", "search", "cluster_overrides", "report", "tracking")


def _config_hash(task: DictConfig) -> str:
    body = {k: v for k, v in OmegaConf.to_container(task, resolve=False).items()  # type: ignore[union-attr]
            if k not in _NOT_HASHED}
    text = OmegaConf.to_yaml(OmegaConf.create(body), resolve=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _variants(request: SweepRequest, columns: dict[str, np.ndarray], compose: Composer,
              cluster: bool, is_group: Callable[[str], bool], n: int
              ) -> tuple[list[Variant], np.ndarray]:
    groups = request.space.groups
    if groups:
        stacked = np.stack([columns[g.key] for g in groups], axis=1)
        combos, variant_ids = np.unique(stacked, axis=0, return_inverse=True)
    else:
        combos, variant_ids = np.zeros((1, 0), dtype=np.int64), np.zeros(n, dtype=np.int64)
    variants = []
    for combo in combos:
        choices = tuple(f"{g.override_key}={g.labels[i]}" for g, i in zip(groups, combo, strict=True))
        task, hydra = _freeze(compose([*request.fixed, *choices]), cluster, request.fixed, is_group)
        where = f" (variant {', '.join(choices)})" if choices else ""
        check_task_nodes(task)
        _check_params(task, request.space.params, where)
        variants.append(Variant(choices, task, hydra, _config_hash(task)))
    return variants, np.asarray(variant_ids, dtype=np.int64).reshape(-1)


def _task_ref(task: DictConfig, fallback: str | None) -> str:
    ref = OmegaConf.select(task, "task.fn", default=None)
    if ref is None and fallback is None:
        raise ConfigError("the config sets no task.fn; set it, e.g. task.fn=mypkg.train:main")
    ref = str(ref if ref is not None else fallback)
    taskref.check(ref)
    return ref


# The budget (n_trials, caps) may grow on resume, and the metric only ranks: the same sweep.
_NOT_FINGERPRINTED = ("space", "metric", "direction", "max_grid_size", "max_trials", "n_trials",
                      "allow_truncate", "max_retries")


def _fingerprint(search: SearchConf, variants: Sequence[Variant], specs: Sequence[ParamColumn],
                 space: Sequence[Param]) -> str:
    blob = json.dumps({
        "format": 2,
        "search": {k: v for k, v in dataclasses.asdict(search).items()
                   if k not in _NOT_FINGERPRINTED},
        "variants": [v.config_hash for v in variants],
        "params": [dataclasses.asdict(s) for s in specs],
        "space": [repr(p) for p in space],
    }, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _space_record(p: Param) -> dict[str, Any]:
    # Drop unset fields, but keep zeros: low=0.0 is a bound, not an absence.
    record = {k: v for k, v in dataclasses.asdict(p).items()
              if v is not None and v is not False and v != () and v != ""}
    if "choices" in record:
        record["choices"] = [c if isinstance(c, (int, float, str, bool)) else str(c)
                             for c in p.choices]
    return record


def _guard_dir(paths: SweepPaths, fingerprint: str) -> SweepRecord | None:
    """The dir's record when it already holds this sweep (None for a fresh dir); refuse
    another sweep's dir, or one whose sweep.yaml cannot be read."""
    if paths.sweep_yaml.is_file():
        old = SweepRecord.load(paths)  # unreadable: its own message, never "a different sweep"
        if old.fingerprint != fingerprint:
            raise SweepDirError(
                f"{paths.root} holds a different sweep (fingerprint {old.fingerprint}, this one "
                f"{fingerprint}: another space, method or config), and results are never "
                "mixed; start a fresh dir with hydra.sweep.dir=<new path>, or resume that "
                f"sweep with `sweeper resume {shell_path(paths.root)}`"
            )
        read_trials(paths, trial_ids=[])
        return old
    if paths.results_dir.is_dir() and any(paths.results_dir.iterdir()):
        raise SweepDirError(
            f"{paths.root} has results but no sweep.yaml, so it cannot be checked; "
            "use a fresh dir with hydra.sweep.dir=<new path>"
        )
    return None


def _make_dir(paths: SweepPaths) -> None:
    try:
        paths.root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=paths.root, prefix=".write-test-"):
            pass
    except OSError as ex:
        raise SweepDirError(
            f"cannot write to the sweep dir {paths.root} ({ex.strerror or ex}); choose a "
            "writable place with hydra.sweep.dir=<path>"
        ) from None


def plan_sweep(
    paths: SweepPaths,
    search: SearchConf,
    request: SweepRequest,
    compose: Composer,
    *,
    cluster: ClusterConf,
    executor: str,
    is_group: Callable[[str], bool],
    task_fallback: str | None = None,
    command: Sequence[str] = (),
    config_source: tuple[str, str] = ("", ""),
    check: Callable[[SweepRecord, int], None] | None = None,
    workers: int = 1,
    design: Design | None = None,
) -> Plan:
    """Expand, compose, validate and write ``trials.parquet`` and ``sweep.yaml``.

    ``design`` gives the trials explicitly (a campaign's cross-validation and final stages)
    instead of the method's strategy. ``executor`` is where the sweep runs (``local`` or ``slurm``, already resolved); SLURM
    sweeps, and sweeps planned inside a SLURM job, get ``cluster_overrides``. ``check(record,
    n_trials)`` runs after the dir is found usable and before anything is written (the
    executor checks its settings there). Planning into a dir that holds the same sweep keeps
    its trial table and results, appends the rows of a larger budget, and records the latest
    cluster settings. A dir whose local sweep is running is refused before anything changes.
    """
    import os

    from sweeper.driver import refuse_if_live
    from sweeper.locks import dir_lock
    from sweeper.study import check_study_settings

    check_study_settings(search, workers)
    if search.adaptive:
        from sweeper.strategies import check_search
        from sweeper.strategies.adaptive import VariantsOnly

        check_search(search)
        strategy: Strategy = VariantsOnly(search.max_trials)
    else:
        strategy = make_strategy(search)
    design = design or strategy.propose(request.space.params)
    if search.cross_validation.enabled:
        design, request = _with_folds(design, request, search)
    columns = {p.key: data for p, data in design.columns}
    applied = executor == "slurm" or "SLURM_JOB_ID" in os.environ
    variants, variant_ids = _variants(request, columns, compose, applied, is_group,
                                      design.n_trials)
    refs = [_task_ref(v.config, task_fallback) for v in variants]
    seeds = [int(OmegaConf.select(v.config, "seed", default=search.seed)) for v in variants]
    table, specs = build_table(request, design, variant_ids, [v.config_hash for v in variants], seeds)
    if search.adaptive:  # its rows come as workers ask for trials
        from sweeper.asking import add_number_column

        table = add_number_column(table.slice(0, 0))
    fingerprint = _fingerprint(search, variants, specs, request.space.params)
    _make_dir(paths)
    with dir_lock(paths.lock, "the sweep dir", timeout_s=60):
        refuse_if_live(paths)
        old = _guard_dir(paths, fingerprint)
        record = _sweep_record(paths, search, request, cluster, variants, refs, specs,
                               fingerprint, executor, applied, command)
        record = record.replace(config_dir=config_source[0], config_name=config_source[1])
        if old is not None:
            record = record.replace(created_at=old.created_at, sweep_id=old.sweep_id)
        if check is not None:
            check(record, table.num_rows)
        added = 0
        if old is None:
            write_trials(table, paths, fingerprint)
        else:
            added = _extend(paths, table)
        record.save(paths)
    return Plan(paths, read_trials(paths) if added else table, record, fingerprint,
                old is not None, added)


def _with_folds(design: Design, request: SweepRequest, search: SearchConf
                ) -> tuple[Design, SweepRequest]:
    """Each planned trial as ``n_folds`` runs, one per fold (the fold varies fastest): the
    fold is one more searched key, and the number of folds a fixed override."""
    from sweeper.space import SearchSpace, param_from_yaml

    cv = search.cross_validation
    if cv.n_folds < 2:
        raise ConfigError(f"search.cross_validation.n_folds must be at least 2, got "
                          f"{cv.n_folds}; e.g. 5")
    if cv.aggregation not in ("mean", "median"):
        raise ConfigError(f"search.cross_validation.aggregation must be mean or median, got "
                          f"{cv.aggregation!r}")
    k = cv.n_folds
    configs = int(search.n_trials or 1) if search.adaptive else design.n_trials
    if configs * k > search.max_trials:  # checked before anything per fold is built
        raise ConfigError(f"search.cross_validation.n_folds={k:,} makes {configs * k:,} runs of "
                          f"{configs:,} config(s), over search.max_trials="
                          f"{search.max_trials:,}; lower n_folds, or raise search.max_trials")
    fold = param_from_yaml(cv.fold_key, list(range(k)))
    if fold.key in request.space.keys:
        raise ConfigError(f"{fold.key} is searched and is also search.cross_validation's "
                          "fold_key; remove it from the space")
    columns = tuple((p, np.repeat(data, k)) for p, data in design.columns)
    columns += ((fold, np.tile(np.arange(k, dtype=np.int64), design.n_trials)),)
    n_folds = f"{cv.n_folds_key}={k}"
    entries = (*request.entries, (n_folds.split("=")[0], n_folds), (fold.override_key, fold))
    return (Design(design.n_trials * k, columns),
            SweepRequest(SearchSpace((*request.space.params, fold)), entries))


def _extend(paths: SweepPaths, table: pa.Table) -> int:
    """Append the planned rows beyond those the dir holds (a larger budget); returns how many.

    The rows it holds must be the plan's first ones: draws are prefix-stable, so growing a
    random sweep keeps every earlier trial.
    """
    from sweeper.trials import append_trials, read_trials_columns

    held = read_trials_columns(paths, ["trial_id", "config_hash"])
    if table.num_rows <= held.num_rows:
        return 0
    planned = table.column("config_hash").slice(0, held.num_rows)
    if not planned.equals(held.column("config_hash")):
        raise SweepDirError(
            f"{paths.root} holds trials that this plan does not start with, so it cannot grow "
            "that table; plan into a fresh dir with hydra.sweep.dir=<new path>"
        )
    append_trials(paths, table.slice(held.num_rows))
    return table.num_rows - held.num_rows


def _sweep_record(paths: SweepPaths, search: SearchConf, request: SweepRequest,
                  cluster: ClusterConf, variants: Sequence[Variant], refs: Sequence[str],
                  specs: Sequence[ParamColumn], fingerprint: str, executor: str,
                  applied: bool, command: Sequence[str]) -> SweepRecord:
    commit, dirty = git_state(Path.cwd())
    return SweepRecord(
        fingerprint=fingerprint, executor=executor, search=search, cluster=cluster,
        space=tuple(_space_record(p) for p in request.space.params), params=tuple(specs),
        variants=tuple(VariantRecord(v.choices, ref, v.config_hash, v.config, v.hydra)
                       for v, ref in zip(variants, refs, strict=True)),
        fixed_overrides=tuple(request.fixed), cluster_overrides_applied=applied,
        command=tuple(command), cwd=str(Path.cwd()), python=sys.executable,
        git_commit=commit, git_dirty=dirty, created_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        sweep_id=uuid.uuid4().hex[:12],
        sweeper_version=__version__, sweep_dir=str(paths.root))
