"""sweeper's ``cluster`` config group for any Hydra app: ``cluster=auto|local|slurm``.

A user's own ``@hydra.main`` app then selects where trials run as sweeper's own conf does
(``cluster=local``), with every key of :class:`sweeper.schema.ClusterConf`, the one source of
their defaults (``sweeper_schema``, from the same module, holds the other nodes). The options
come from a config source of their own (``sweeper://``), searched after the app's conf dir,
rather than from the ConfigStore: Hydra matches a ConfigStore entry ``cluster/local`` against
every ``cluster/local.yaml`` of the same name (sweeper's own conf, or a user's), and warns on
each run. From a later source, an app's own files simply win.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.object_type import ObjectType
from hydra.plugins.config_source import ConfigLoadError, ConfigResult, ConfigSource
from hydra.plugins.search_path_plugin import SearchPathPlugin
from omegaconf import OmegaConf

from sweeper.schema import EXECUTORS, ClusterConf

#: group -> option names
GROUPS: dict[str, tuple[str, ...]] = {"cluster": EXECUTORS}


def _node(name: str) -> Any:
    # Every key, so `cluster.mem_gb=8` works without `sweeper_schema` too; plain values, not a
    # structured node: sweeper's own check (schema.validate) then judges every key, with its
    # "did you mean" hint, also one a user adds with `+cluster.key=...`.
    return OmegaConf.create(dataclasses.asdict(ClusterConf(executor=name)))


class SweeperConfigSource(ConfigSource):
    """Serves :data:`GROUPS` from the schema dataclasses; nothing is read from disk."""

    @staticmethod
    def scheme() -> str:
        return "sweeper"

    def load_config(self, config_path: str) -> ConfigResult:
        group, _, name = config_path.removesuffix(".yaml").rpartition("/")
        if name not in GROUPS.get(group, ()):
            raise ConfigLoadError(f"Config not found: {config_path}")
        return ConfigResult(config=_node(name), path=self.full_path(),
                            provider=self.provider, header={"package": None})

    def available(self) -> bool:
        return True

    def is_group(self, config_path: str) -> bool:
        return config_path.strip("/") in ("", *GROUPS)

    def is_config(self, config_path: str) -> bool:
        group, _, name = config_path.removesuffix(".yaml").rpartition("/")
        return name in GROUPS.get(group, ())

    def list(self, config_path: str, results_filter: ObjectType | None) -> list[str]:
        path = config_path.strip("/")
        if path == "":
            return [] if results_filter == ObjectType.CONFIG else sorted(GROUPS)
        if results_filter == ObjectType.GROUP:
            return []
        return sorted(GROUPS.get(path, ()))


class SweeperSearchPath(SearchPathPlugin):
    """Puts sweeper's groups last in every app's search path, so the app's own files win."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        search_path.append(provider="sweeper", path="sweeper://")
