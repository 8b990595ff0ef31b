"""Executors: where trials run. ``local`` (processes on this machine) and ``slurm``."""

from __future__ import annotations

import shutil

from sweeper.errors import ConfigError, closest
from sweeper.executors._base import Executor, LaunchResult
from sweeper.schema import EXECUTORS, ClusterConf

__all__ = ["Executor", "LaunchResult", "make_executor", "resolve_executor"]


def resolve_executor(cluster: ClusterConf) -> str:
    """``local`` or ``slurm``: ``auto`` picks slurm when ``sbatch`` is on PATH."""
    if cluster.executor not in EXECUTORS:
        raise ConfigError(
            f"unknown cluster.executor {cluster.executor!r}{closest(cluster.executor, EXECUTORS)}; "
            f"options: {', '.join(EXECUTORS)}"
        )
    if cluster.executor == "auto":
        return "slurm" if shutil.which("sbatch") else "local"
    return cluster.executor


def make_executor(cluster: ClusterConf, kind: str | None = None) -> Executor:
    """The executor for ``kind`` (local or slurm; default: resolved from the cluster settings)."""
    kind = kind or resolve_executor(cluster)
    if kind == "slurm":
        from sweeper.executors.slurm import SlurmExecutor

        return SlurmExecutor(cluster)
    from sweeper.executors.local import LocalExecutor

    if cluster.timeout_min is not None and cluster.timeout_min <= 0:
        raise ConfigError(f"cluster.timeout_min must be positive, got {cluster.timeout_min}; "
                          "or null for no limit")
    if cluster.max_parallel is not None and cluster.max_parallel < 1:
        raise ConfigError(
            f"cluster.max_parallel must be at least 1, got {cluster.max_parallel}; "
            "or leave it null for one trial per CPU (or GPU)"
        )
    return LocalExecutor(cluster.max_parallel, cluster.cpus_per_trial, cluster.trials_per_gpu,
                         cluster.timeout_min)
