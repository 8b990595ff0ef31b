"""Hydra's entry point for sweeper: select it with ``hydra/sweeper=sweeper``.

Hydra imports every module under ``hydra_plugins`` at each start-up (in every
process), so this module stays tiny and imports the real work lazily. The config groups
a user's own app selects (``cluster=local``) live beside it, in ``config_groups``.
"""

from __future__ import annotations

import sys
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper

from sweeper.schema import SweeperPluginConf, register_schemas

ConfigStore.instance().store(group="hydra/sweeper", name="sweeper", node=SweeperPluginConf,
                             provider="sweeper")
register_schemas()  # the defaults every config composes first (`sweeper_schema`)


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

        def run() -> Any:
            return run_sweep(self.config, self.hydra_context, self.task_function, arguments,
                             self.settings)

        if getattr(self.task_function, "_sweeper_entry", False):
            return run()  # the sweeper command prints errors and picks the exit code itself
        return _exit_like_the_cli(run)


def _exit_like_the_cli(run: Any) -> Any:
    """In a user's own ``@hydra.main`` app, end as ``sweeper run`` does: a bad input is one
    line and exit 2, failed trials exit 1, Ctrl-C 130. Hydra itself would print a traceback
    for the first and exit 0 for the others, which a script or CI job cannot tell from success."""
    from sweeper.errors import SweeperError

    try:
        result = run()
    except SweeperError as ex:
        print(f"sweeper: error: {ex}", file=sys.stderr)
        raise SystemExit(ex.exit_code) from None
    if result.exit_code:
        raise SystemExit(result.exit_code)
    return result
