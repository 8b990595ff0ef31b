"""One training without a sweep: ``python -m sweeper`` with no search space."""

from __future__ import annotations

import os
from typing import Any

from omegaconf import DictConfig, OmegaConf

from sweeper import taskref
from sweeper.console import err as console
from sweeper.schema import ClusterConf, validate

__all__ = ["entry", "last_exit"]

#: Exit code of the latest single run in this process, read by the CLI.
last_exit: int | None = None


def entry(cfg: DictConfig) -> Any:
    """Hydra's task function for the CLI: run ``task.fn`` once and print its metrics."""
    global last_exit
    from hydra.core.hydra_config import HydraConfig

    from sweeper.planner import apply_cluster_overrides
    from sweeper.runner import seed_everything, to_metrics

    hydra_cfg = HydraConfig.get()
    cluster = validate(cfg.get("cluster"), ClusterConf, "cluster")
    if "SLURM_JOB_ID" in os.environ or cluster.executor == "slurm":
        choices = set(hydra_cfg.runtime.choices.keys())
        apply_cluster_overrides(cfg, list(hydra_cfg.overrides.task), lambda k: k in choices)
    ref = OmegaConf.select(cfg, "task.fn", default=None)
    taskref.check(str(ref) if ref is not None else "")
    fn = taskref.load(str(ref))
    seed_everything(int(OmegaConf.select(cfg, "seed", default=0)))
    metrics = to_metrics(fn(cfg), str(OmegaConf.select(cfg, "search.metric", default="val_loss")))
    console.print(
        "[sweeper] " + ", ".join(f"{k}={v:.6g}" for k, v in metrics.items())
    )
    last_exit = 0
    return metrics


entry._sweeper_entry = True  # type: ignore[attr-defined]
