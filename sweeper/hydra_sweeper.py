"""The Hydra sweeper: overrides + search space -> frozen trial table -> executor.

Hydra only accepts sweepers under the ``hydra_plugins`` namespace, so
``hydra_plugins/sweeper_plugin`` holds a thin class that delegates here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf
from rich.table import Table

from sweeper.console import err as console
from sweeper.console import fmt, shell_path
from sweeper.executors import LaunchResult, make_executor
from sweeper.hydra_compat import composer, config_source, executor_kind, is_group_of, task_fallback
from sweeper.overrides import build_request
from sweeper.paths import SweepPaths
from sweeper.planner import Plan, plan_sweep
from sweeper.schema import ClusterConf, SearchConf, SweeperPluginConf, validate
from sweeper.sweep import finish, run_pending

__all__ = ["last_result", "run_sweep"]


#: The outcome of the latest sweep in this process, read by the CLI for its exit code.
last_result: LaunchResult | None = None


def _describe_space(plan: Plan) -> str:
    params = [p["key"] for p in plan.record.space]
    method = plan.record.search.method
    return f"{method} over {' x '.join(params)}" if params else "a single config (no searched keys)"


def _print_head(plan: Plan, rows: int = 5) -> None:
    keys = plan.record.param_keys
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
    if OmegaConf.select(master, "campaign", default=None) is not None:
        from sweeper.campaign import run_campaign

        last_result = run_campaign(master, hydra_context, task_function, list(arguments),
                                   settings)
        return last_result
    search = validate(master.get("search"), SearchConf, "search")
    cluster = validate(master.get("cluster"), ClusterConf, "cluster")
    kind = executor_kind(cluster, master.hydra.sweep.dir)
    loader = hydra_context.config_loader
    params = [f"{k}={v}" for k, v in (settings.params or {}).items()]
    request = build_request(search.space, [*params, *arguments], is_group_of(loader), loader,
                            search.seed)
    fallback = task_fallback(task_function)
    paths = SweepPaths(master.hydra.sweep.dir)
    executor = make_executor(cluster, kind)
    plan = plan_sweep(paths, search, request, composer(loader, master), cluster=cluster,
                      executor=kind, is_group=is_group_of(loader), task_fallback=fallback,
                      command=list(arguments), config_source=config_source(master),
                      check=lambda record, n: executor.check(paths, record, n),
                      workers=executor.workers)
    verb = "found" if plan.existed else "planned"
    grown = f", {plan.added} added" if plan.added else ""
    count = (f"up to {search.n_trials} trials, asked as workers free up" if search.adaptive
             else f"{plan.n_trials} trials{grown}")
    console.print(f"[sweeper] {verb} {count} ({_describe_space(plan)}) in {paths.root}")
    console.print(f"[sweeper] runs on: {executor.describe()}")
    if settings.dry_run:
        _print_head(plan)
        console.print(f"[sweeper] dry run: nothing ran. Run it with the same command, or "
                      f"`sweeper resume {shell_path(paths.root)}`")
        last_result = LaunchResult()
        return last_result
    last_result = run_pending(paths, plan.record, plan.table, executor, settings.retry_failed,
                              wait=settings.wait)
    finish(paths, last_result)
    return last_result
