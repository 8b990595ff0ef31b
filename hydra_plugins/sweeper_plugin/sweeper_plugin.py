"""Hydra's entry point for sweeper: select it with ``hydra/sweeper=sweeper``.

Hydra imports every module under ``hydra_plugins`` at each start-up (in every
process), so this module stays tiny and imports the real work lazily.
"""

from __future__ import annotations

from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper

from sweeper.schema import SweeperPluginConf

ConfigStore.instance().store(group="hydra/sweeper", name="sweeper", node=SweeperPluginConf,
                             provider="sweeper")


class TrialTableSweeper(Sweeper):
    """Expands the search space into a frozen trial table and runs it (see sweeper.hydra_sweeper)."""

    def __init__(self, params: dict[str, str] | None = None, dry_run: bool = False,
                 retry_failed: bool = False, wait: bool = False) -> None:
        self.settings = SweeperPluginConf(params=params, dry_run=dry_run,
                                          retry_failed=retry_failed, wait=wait)
        self.config: Any = None
        self.hydra_context: Any = None
        self.task_function: Any = None

    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        # No Hydra launcher: sweeper's own executors run the trials.
        self.hydra_context = hydra_context
        self.task_function = task_function
        self.config = config

    def sweep(self, arguments: list[str]) -> Any:
        from sweeper.hydra_sweeper import run_sweep

        return run_sweep(self.config, self.hydra_context, self.task_function, arguments,
                         self.settings)
