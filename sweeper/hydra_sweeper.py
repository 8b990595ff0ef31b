"""The Hydra sweeper: overrides + search space -> frozen trial table -> executor.

Hydra only accepts sweepers under the ``hydra_plugins`` namespace, so
``hydra_plugins/sweeper_plugin`` holds a thin class that delegates here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from omegaconf import DictConfig
from rich.table import Table

from sweeper import taskref
from sweeper.console import err as console
from sweeper.console import fmt, shell_path
from sweeper.errors import SweeperError
from sweeper.executors import LaunchResult, make_executor, resolve_executor
from sweeper.launch import run_pending
from sweeper.overrides import build_request
from sweeper.paths import SweepPaths
from sweeper.planner import Plan, plan_sweep
from sweeper.schema import ClusterConf, SearchConf, SweeperPluginConf, validate

__all__ = ["last_result", "run_sweep"]


#: The outcome of the latest sweep in this process, read by the CLI for its exit code.
last_result: LaunchResult | None = None


def _composer(loader: Any, master: DictConfig) -> Callable[[list[str]], DictConfig]:
    from sweeper.hydra_compat import translate

    def compose(overrides: list[str]) -> DictConfig:
        try:
            return loader.load_sweep_config(master, list(overrides))  # type: ignore[no-any-return,unused-ignore]
        except SweeperError:
            raise
        except Exception as ex:
            err = translate(ex)
            if err is None:
                raise
            raise err from None

    return compose


def _is_group(loader: Any) -> Callable[[str], bool]:
    def is_group(key: str) -> bool:
        try:
            return bool(loader.repository.group_exists(key))
        except Exception:
            return False

    return is_group


def _describe_space(plan: Plan) -> str:
    params = [p["key"] for p in plan.sweep.space]
    method = plan.sweep.search.method
    return f"{method} over {' x '.join(params)}" if params else "a single config (no searched keys)"


def _print_head(plan: Plan, rows: int = 5) -> None:
    keys = [str(p["key"]) for p in plan.sweep.params]
    table = Table(title=f"first {min(rows, plan.n_trials)} of {plan.n_trials} trials")
    for name in ["trial_id", *keys, "seed", "config_hash"]:
        table.add_column(name)
    for row in plan.table.slice(0, rows).to_pylist():
        table.add_row(*(fmt(row[k]) for k in ["trial_id", *keys, "seed", "config_hash"]))
    console.print(table)


def run_sweep(master: DictConfig, hydra_context: Any, task_function: Any,
              arguments: Sequence[str], settings: SweeperPluginConf) -> LaunchResult:
    """Plan the sweep into ``hydra.sweep.dir``, then run whatever it still needs."""
    global last_result
    search = validate(master.get("search"), SearchConf, "search")
    cluster = validate(master.get("cluster"), ClusterConf, "cluster")
    kind = resolve_executor(cluster)
    loader = hydra_context.config_loader
    params = [f"{k}={v}" for k, v in (settings.params or {}).items()]
    request = build_request(search.space, [*params, *arguments], _is_group(loader), loader,
                            search.seed)
    fallback = None if getattr(task_function, "_sweeper_entry", False) else taskref.ref_for(task_function)
    paths = SweepPaths(master.hydra.sweep.dir)
    executor = make_executor(cluster)
    executor.wait = settings.wait
    plan = plan_sweep(paths, search, request, _composer(loader, master), cluster=cluster,
                      apply_cluster_overrides=kind == "slurm" or "SLURM_JOB_ID" in os.environ,
                      is_group=_is_group(loader), task_fallback=fallback,
                      command=list(arguments),
                      check=lambda sweep, n: executor.check(paths, sweep, n))
    verb = "found" if plan.existed else "planned"
    console.print(f"[sweeper] {verb} {plan.n_trials} trials ({_describe_space(plan)}) "
                  f"in {paths.root}")
    console.print(f"[sweeper] runs on: {executor.describe()}")
    if settings.dry_run:
        _print_head(plan)
        console.print(f"[sweeper] dry run: nothing ran. Run it with the same command, or "
                      f"`sweeper resume {shell_path(paths.root)}`")
        last_result = LaunchResult()
        return last_result
    last_result = run_pending(paths, plan.sweep, plan.table, executor, settings.retry_failed)
    from sweeper.commands import finish

    finish(paths, last_result)
    return last_result
