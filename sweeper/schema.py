"""Config schemas: dataclasses without logic. YAML files only supply values.

Each schema is checked with :func:`validate`, so a misspelt key is an error that
names the closest valid key, never a silent no-op.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from sweeper.errors import ConfigError, closest

__all__ = ["ClusterConf", "SearchConf", "SweeperPluginConf", "validate"]

SEARCH_METHODS = ("grid", "random")
EXECUTORS = ("auto", "local", "slurm")
DIRECTIONS = ("minimize", "maximize")


@dataclass
class SearchConf:
    # grid | random (tpe, cmaes, gp and qmc come with adaptive search)
    method: str = "grid"
    # random: how many trials; grid: an optional cap (an error if it would cut the grid)
    n_trials: int | None = None
    # grid: with n_trials below the grid size, keep the first n_trials instead of failing
    allow_truncate: bool = False
    # seed of the random strategy, and the trial seed when the config has no `seed` key
    seed: int = 0
    # the metric that ranks trials, as returned by the task
    metric: str = "val_loss"
    # minimize | maximize
    direction: str = "minimize"
    # refuse grids with more points than this (a typo can make a grid huge)
    max_grid_size: int = 100_000
    # dotted config key -> list (categorical) or {type: ..., ...}; see README
    space: dict[str, Any] = field(default_factory=dict)


@dataclass
class ClusterConf:
    # auto | local | slurm; auto means slurm when `sbatch` is on PATH, else local
    executor: str = "auto"
    # local: trials at once; default: GPUs x trials_per_gpu when there are GPUs, else CPUs
    max_parallel: int | None = None
    # local: trials that share one GPU
    trials_per_gpu: int = 1
    # local: CPU threads per trial (torch, OpenMP); default: CPUs // max_parallel
    cpus_per_trial: int | None = None
    # wall-clock limit per trial (local) or per array task (slurm), minutes; null: none locally
    timeout_min: float | None = None
    # slurm: partition, account and qos to submit to (null: the cluster's default)
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    # slurm: memory per array task in GB; always sent, since a job without it takes the whole node
    mem_gb: float = 4.0
    # slurm: CPUs per array task
    cpus_per_task: int = 1
    # slurm: GPUs per array task (--gpus-per-task), or a raw --gres string
    gpus_per_task: int | None = None
    gres: str | None = None
    # slurm: node features (--constraint) and nodes to avoid (--exclude)
    constraint: str | None = None
    exclude: str | None = None
    # slurm: any other sbatch option, e.g. {mail-user: me@example.org}
    additional_parameters: dict[str, Any] = field(default_factory=dict)
    # slurm: shell lines run before the trials, e.g. "module load cuda"
    setup: list[str] = field(default_factory=list)
    # slurm: trials running at once across all arrays of the sweep (the %N throttle)
    array_parallelism: int = 16
    # slurm: trials run one after another inside one array task
    trials_per_task: int = 1
    # slurm: at most this many tasks per array (null: the cluster's MaxArraySize)
    max_array_size: int | None = None
    # slurm: automatic requeues of a timed-out or preempted array task
    max_retries: int = 3
    # slurm: seconds before the time limit at which trials are asked to checkpoint
    signal_delay_s: int = 120


@dataclass
class SweeperPluginConf:
    _target_: str = "hydra_plugins.sweeper_plugin.sweeper_plugin.TrialTableSweeper"
    # like BasicSweeper's: config key -> sweep grammar string, e.g. {optimizer.lr: "choice(0.1,0.01)"}
    params: dict[str, str] | None = None
    # plan only: write trials.parquet and sweep.yaml, run nothing
    dry_run: bool = False
    # rerun trials whose last attempt failed, when the sweep dir already has results
    retry_failed: bool = False
    # slurm: block until every trial has ended, with a progress bar
    wait: bool = False


T = TypeVar("T")


def validate(node: DictConfig | dict[str, Any] | None, schema: type[T], where: str) -> T:
    """Check ``node`` against ``schema`` and return it as a schema object.

    >>> validate({"method": "grid"}, SearchConf, "search").method
    'grid'
    """
    base = OmegaConf.structured(schema)
    try:
        merged = OmegaConf.merge(base, node if node is not None else {})
    except ConfigKeyError as ex:
        key = str(getattr(ex, "key", "") or "")
        names = [f.name for f in dataclasses.fields(schema)]  # type: ignore[arg-type]
        raise ConfigError(
            f"'{where}.{key}' is not a known setting{closest(key, names)} "
            f"(known: {', '.join(names)})"
        ) from None
    except ValidationError as ex:
        key = str(getattr(ex, "full_key", "") or getattr(ex, "key", ""))
        raise ConfigError(
            f"'{where}.{key}' has a value of the wrong type: {str(ex.msg or ex).splitlines()[0]}"
        ) from None
    return OmegaConf.to_object(merged)  # type: ignore[return-value]
