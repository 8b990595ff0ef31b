"""Executors: where trials run. ``local`` (processes on this machine) and ``slurm``."""

from __future__ import annotations

import shutil

from sweeper.errors import ConfigError, closest
from sweeper.executors._base import Executor, LaunchResult
from sweeper.schema import EXECUTORS, SLURM_TIMEOUT_MIN, ClusterConf

__all__ = ["Executor", "LaunchResult", "check_cluster", "make_executor", "resolve_executor"]

# cluster.* numbers: (smallest allowed, must it be strictly above?, what null means or an example).
# Checked for every executor, before planning: the sweep record keeps these settings, and a
# bad one must not wait in it for the executor that reads it.
_NUMBERS: dict[str, tuple[float, bool, str]] = {
    "max_parallel": (1, False, "or null for one trial per CPU (or GPU)"),
    "trials_per_gpu": (1, False, "e.g. 1"),
    "cpus_per_trial": (1, False, "or null for CPUs // max_parallel"),
    "timeout_min": (0, True, f"or null for no limit locally ({SLURM_TIMEOUT_MIN} min on SLURM)"),
    "mem_gb": (0, True, "e.g. 4"),
    "cpus_per_task": (1, False, "e.g. 1"),
    "gpus_per_task": (0, False, "or null for none"),
    "array_parallelism": (1, False, "e.g. 16"),
    "trials_per_task": (1, False, "e.g. 1"),
    "max_array_size": (1, False, "or null for the cluster's MaxArraySize"),
    "max_retries": (0, False, "e.g. 3, or 0 for no requeue"),
    "signal_delay_s": (0, False, "e.g. 120"),
}


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


def check_cluster(cluster: ClusterConf) -> None:
    """Refuse a ``cluster.*`` number out of range, whichever executor runs the sweep.

    >>> check_cluster(ClusterConf(max_parallel=-1))
    Traceback (most recent call last):
    sweeper.errors.ConfigError: cluster.max_parallel must be at least 1, got -1; or null for one trial per CPU (or GPU)
    """
    for name, (low, strict, fix) in _NUMBERS.items():
        value = getattr(cluster, name)
        if value is None or (value > low if strict else value >= low):
            continue
        rule = "positive" if strict else f"at least {low:g}"
        raise ConfigError(f"cluster.{name} must be {rule}, got {value}; {fix}")


def make_executor(cluster: ClusterConf, kind: str | None = None) -> Executor:
    """The executor for ``kind`` (local or slurm; default: resolved from the cluster settings)."""
    check_cluster(cluster)
    kind = kind or resolve_executor(cluster)
    if kind == "slurm":
        from sweeper.executors.slurm import SlurmExecutor

        return SlurmExecutor(cluster)
    from sweeper.executors.local import LocalExecutor

    return LocalExecutor(cluster.max_parallel, cluster.cpus_per_trial, cluster.trials_per_gpu,
                         cluster.timeout_min)
