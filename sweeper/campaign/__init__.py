"""Staged campaigns: ``python -m sweeper +campaign=hybrid`` runs coarse -> Bayesian -> narrowed
-> top-k cross-validated -> final as one command (see :mod:`sweeper.campaign.run`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from sweeper.campaign.run import BASE_DIR, CampaignRecord, StageState, is_campaign, run_stages
from sweeper.campaign.spec import check_campaign
from sweeper.errors import SweepDirError

__all__ = ["is_campaign", "run_campaign"]


def run_campaign(master: DictConfig, hydra_context: Any, task_function: Any,
                 arguments: list[str], settings: Any) -> Any:
    """Freeze the campaign (its stage list and its config variants), then run its stages."""
    from sweeper.console import err as console
    from sweeper.executors import LaunchResult, make_executor
    from sweeper.hydra_compat import (
        composer,
        config_source,
        executor_kind,
        is_group_of,
        task_fallback,
    )
    from sweeper.overrides import build_request
    from sweeper.paths import SweepPaths
    from sweeper.planner import plan_sweep
    from sweeper.schema import ClusterConf, SearchConf, validate
    from sweeper.strategies.adaptive import VariantsOnly

    node: dict[str, Any] = OmegaConf.to_container(master.campaign, resolve=True)  # type: ignore[assignment]
    camp, stages = check_campaign(node)
    cluster = validate(master.get("cluster"), ClusterConf, "cluster")
    root = Path(str(master.hydra.sweep.dir))
    kind = CampaignRecord.load(root).executor if is_campaign(root) and \
        cluster.executor == "auto" else executor_kind(cluster, str(root / BASE_DIR))
    executor = make_executor(cluster, kind)
    loader = hydra_context.config_loader
    is_group = is_group_of(loader)
    request = build_request(camp.space, arguments, is_group, loader, camp.seed)
    search = SearchConf(method="grid", metric=camp.metric, direction=camp.direction,
                        seed=camp.seed)
    fallback = task_fallback(task_function)
    plan_sweep(SweepPaths(root / BASE_DIR), search, request, composer(loader, master),
               cluster=cluster, executor=kind, is_group=is_group, task_fallback=fallback,
               command=list(arguments), config_source=config_source(master),
               design=VariantsOnly(search.max_trials).propose(request.space.params))
    if is_campaign(root):
        record = CampaignRecord.load(root)
        if record.campaign != node:
            raise SweepDirError(f"{root} holds another campaign (its stages or space differ); "
                                "start a fresh dir with hydra.sweep.dir=<new path>, or go on with "
                                f"`sweeper resume {root}`")
    else:
        from sweeper.campaign.run import stage_dirs

        record = CampaignRecord(node, [StageState(d) for d in stage_dirs(root, stages)], kind)
        record.save(root)
    console.print(f"[campaign] {camp.name}: {len(stages)} stages in {root}, on "
                  f"{executor.describe()}")
    if settings.dry_run:
        return LaunchResult()
    return run_stages(root, executor, wait=settings.wait)
