"""The Hydra sweeper: overrides + search space -> frozen trial table -> executor.

Hydra only accepts sweepers under the ``hydra_plugins`` namespace, so
``hydra_plugins/sweeper_plugin`` holds a thin class that delegates here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from rich.table import Table

from sweeper import taskref
from sweeper.console import err as console
from sweeper.console import fmt, shell_path
from sweeper.errors import SweeperError
from sweeper.executors import LaunchResult, make_executor, resolve_executor
from sweeper.overrides import build_request
from sweeper.paths import SweepPaths
from sweeper.planner import Plan, plan_sweep
from sweeper.schema import ClusterConf, SearchConf, SweeperPluginConf, validate
from sweeper.sweep import finish, run_pending

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


def _config_source(master: DictConfig) -> tuple[str, str]:
    """The primary config dir and the config's name, so the sweep can be planned again."""
    sources = OmegaConf.select(master, "hydra.runtime.config_sources", default=None) or []
    main = next((s for s in sources if s.get("provider") == "main"), None)
    name = OmegaConf.select(master, "hydra.job.config_name", default=None)
    return (str(main.path) if main is not None and main.schema == "file" else "",
            str(name) if name else "")


def _executor_kind(cluster: ClusterConf, sweep_dir: str) -> str:
    """Where to run: as the user asked, or, for ``auto`` in a dir planned before, where it
    was planned (a sweep never switches between local and SLURM behind the user's back)."""
    if cluster.executor == "auto":
        from sweeper.record import SweepRecord

        paths = SweepPaths(Path(sweep_dir))
        if paths.sweep_yaml.is_file():
            return SweepRecord.load(paths).executor
    return resolve_executor(cluster)


def _task_fallback(task_function: Any) -> str | None:
    """The task when the config names none: the user's own @hydra.main function."""
    if getattr(task_function, "_sweeper_entry", False):
        return os.environ.get("SWEEPER_TASK_FALLBACK")
    return taskref.ref_for(task_function)


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
    kind = _executor_kind(cluster, master.hydra.sweep.dir)
    loader = hydra_context.config_loader
    params = [f"{k}={v}" for k, v in (settings.params or {}).items()]
    request = build_request(search.space, [*params, *arguments], _is_group(loader), loader,
                            search.seed)
    fallback = _task_fallback(task_function)
    paths = SweepPaths(master.hydra.sweep.dir)
    executor = make_executor(cluster, kind)
    plan = plan_sweep(paths, search, request, _composer(loader, master), cluster=cluster,
                      executor=kind, is_group=_is_group(loader), task_fallback=fallback,
                      command=list(arguments), config_source=_config_source(master),
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
