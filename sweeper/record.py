"""The sweep record, ``sweep.yaml``: one typed, frozen owner with one reader and one writer.

It freezes what a sweep computes (the composed config variants, the searched parameters and
their encodings) and how it was planned (search and cluster settings, the executor resolved
at plan time, the command, git state). Every command reads it through :meth:`SweepRecord.load`;
nothing caches it behind the caller's back, so a long-lived process never reads a stale one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from sweeper.errors import SweepDirError
from sweeper.paths import SweepPaths, atomic_path
from sweeper.schema import ClusterConf, SearchConf, validate
from sweeper.trials import ParamColumn

__all__ = ["FORMAT", "SweepRecord", "VariantRecord"]

FORMAT = 2


@dataclass(frozen=True)
class VariantRecord:
    """One composed combination of config-group choices, frozen at plan time."""

    choices: tuple[str, ...]
    task_fn: str
    config_hash: str
    config: DictConfig
    hydra: DictConfig | None


@dataclass(frozen=True)
class SweepRecord:
    """What ``sweep.yaml`` holds; see the module docstring."""

    fingerprint: str
    executor: str  # local | slurm, resolved when the sweep was planned
    search: SearchConf
    cluster: ClusterConf
    space: tuple[Mapping[str, Any], ...]
    params: tuple[ParamColumn, ...]
    variants: tuple[VariantRecord, ...]
    fixed_overrides: tuple[str, ...] = ()
    cluster_overrides_applied: bool = False
    command: tuple[str, ...] = ()
    cwd: str = "."
    python: str = "python3"
    git_commit: str | None = None
    git_dirty: bool | None = None
    created_at: str = ""
    # made once, when the dir is first planned: two sweeps of the same config (the same
    # fingerprint) in one shared database still get studies of their own
    sweep_id: str = ""
    sweeper_version: str = ""
    sweep_dir: str = ""
    config_dir: str = ""  # the primary config dir, and the config's name: to plan it again
    config_name: str = ""
    _cache: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def param_keys(self) -> list[str]:
        return [p.key for p in self.params]

    def variant_container(self, variant: int) -> dict[str, Any]:
        """The variant's config as plain containers, parsed once per record."""
        key = ("container", variant)
        if key not in self._cache:
            self._cache[key] = OmegaConf.to_container(self.variants[variant].config, resolve=False)
        return self._cache[key]

    def replace(self, **changes: Any) -> SweepRecord:
        return dataclasses.replace(self, **changes)

    @classmethod
    def load(cls, paths: SweepPaths) -> SweepRecord:
        """Read ``sweep.yaml``; a missing or damaged file is a SweepDirError with the fix."""
        path = paths.sweep_yaml
        if not path.is_file():
            raise SweepDirError(f"{path} does not exist; {paths.root} is not a planned sweep dir")
        try:
            node = OmegaConf.load(path)
            assert isinstance(node, DictConfig)
            return cls._from_node(node)
        except SweepDirError:
            raise
        except Exception as ex:
            raise SweepDirError(
                f"{path} is unreadable ({type(ex).__name__}: {str(ex).splitlines()[0] if str(ex) else ''}); "
                "restore it from a backup, or plan the sweep afresh in a new dir"
            ) from None

    @classmethod
    def _from_node(cls, node: DictConfig) -> SweepRecord:
        search = validate({k: v for k, v in node.search.items() if k != "n_trials_planned"},
                          SearchConf, "search")
        cluster = validate(node.cluster, ClusterConf, "cluster")
        # Format 1 had no executor; it applied cluster_overrides exactly when planned for SLURM.
        applied = bool(node.get("cluster_overrides_applied", False))
        executor = node.get("executor") or ("slurm" if applied else "local")
        variants = tuple(
            VariantRecord(tuple(v.choices), str(v.task_fn), str(v.config_hash), v.config,
                          v.get("hydra"))
            for v in node.variants)
        git = node.get("git") or {}
        return cls(
            fingerprint=str(node.fingerprint), executor=str(executor), search=search,
            cluster=cluster, space=tuple(OmegaConf.to_container(node.space) or ()),  # type: ignore[arg-type]
            params=tuple(ParamColumn(**p) for p in OmegaConf.to_container(node.params)),  # type: ignore[union-attr,arg-type]
            variants=variants, fixed_overrides=tuple(node.get("fixed_overrides") or ()),
            cluster_overrides_applied=applied,
            command=tuple(node.get("command") or ()), cwd=str(node.get("cwd") or "."),
            python=str(node.get("python") or "python3"), git_commit=git.get("commit"),
            git_dirty=git.get("dirty"), created_at=str(node.get("created_at") or ""),
            sweep_id=str(node.get("sweep_id") or ""),
            sweeper_version=str(node.get("sweeper_version") or ""),
            sweep_dir=str(node.get("sweep_dir") or ""),
            config_dir=str(node.get("config_dir") or ""),
            config_name=str(node.get("config_name") or ""))

    def to_node(self) -> DictConfig:
        record = {
            "format": FORMAT, "fingerprint": self.fingerprint,
            "sweeper_version": self.sweeper_version, "created_at": self.created_at,
            "sweep_id": self.sweep_id,
            "command": list(self.command), "cwd": self.cwd, "python": self.python,
            "git": {"commit": self.git_commit, "dirty": self.git_dirty},
            "executor": self.executor,
            "search": {k: v for k, v in dataclasses.asdict(self.search).items() if k != "space"},
            "space": [dict(s) for s in self.space],
            "fixed_overrides": list(self.fixed_overrides),
            "params": [dataclasses.asdict(p) for p in self.params],
            "cluster": dataclasses.asdict(self.cluster),
            "cluster_overrides_applied": self.cluster_overrides_applied,
            "variants": [{"choices": list(v.choices), "task_fn": v.task_fn,
                          "config_hash": v.config_hash, "config": v.config, "hydra": v.hydra}
                         for v in self.variants],
            "sweep_dir": self.sweep_dir,
            "config_dir": self.config_dir,
            "config_name": self.config_name,
        }
        return OmegaConf.create(record)

    def save(self, paths: SweepPaths) -> None:
        """Write ``sweep.yaml`` atomically (readers never see half a file)."""
        with atomic_path(paths.sweep_yaml) as tmp:
            OmegaConf.save(self.to_node(), tmp, resolve=False)


def report_node(record: SweepRecord) -> dict[str, Any]:
    """The ``report:`` settings of the sweep's (first) config variant, as plain data."""
    node = OmegaConf.select(record.variants[0].config, "report", default=None)
    conf = OmegaConf.to_container(node) if node is not None else {}
    return {str(k): v for k, v in conf.items()} if isinstance(conf, dict) else {}


def hydra_node(record: SweepRecord, variant: int) -> DictConfig | None:
    """A fresh, writable copy of the variant's ``hydra`` node (None when it has none)."""
    key = ("hydra", variant)
    if key not in record._cache:
        node = record.variants[variant].hydra
        record._cache[key] = (None if node is None else
                              OmegaConf.to_container(node, resolve=False))
    data = record._cache[key]
    if data is None:
        return None
    hydra = OmegaConf.create({"hydra": data})
    with open_dict(hydra):
        return hydra
