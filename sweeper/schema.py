"""Config schemas: dataclasses without logic. YAML files only supply values.

The dataclasses hold every default, once: :func:`register_schemas` puts them in Hydra's
ConfigStore as ``sweeper_schema``, which ``conf/base.yaml`` composes first, so YAML files
set only what differs (``cluster/slurm.yaml`` sets just ``executor: slurm``) and every key
can still be overridden on the command line. Each schema is checked with :func:`validate`,
so a misspelt key is an error that names the closest valid key, never a silent no-op.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from sweeper.errors import ConfigError, closest

__all__ = ["SLURM_TIMEOUT_MIN", "ClusterConf", "CrossValidationConf", "ReportConf", "SearchConf",
           "SweeperPluginConf",
           "TrackingConf", "check_task_nodes", "fold_key", "register_schemas", "validate"]

#: Static methods write every trial at plan time; adaptive ones ask Optuna as workers free up.
STATIC_METHODS = ("grid", "random", "qmc")
ADAPTIVE_METHODS = ("tpe", "gp", "cmaes")
SEARCH_METHODS = STATIC_METHODS + ADAPTIVE_METHODS
EXECUTORS = ("auto", "local", "slurm")
DIRECTIONS = ("minimize", "maximize")
# SLURM's time limit per array task when cluster.timeout_min is null. A limit is always sent:
# without one a job gets the partition's default, often days, and waits longer for backfill.
SLURM_TIMEOUT_MIN = 60


@dataclass
class CrossValidationConf:
    # each trial becomes n_folds runs (rows with the fold in `fold_key`), ranked by the
    # aggregate of their metric; the spread is kept
    enabled: bool = False
    n_folds: int = 5
    # mean | median
    aggregation: str = "mean"
    # the task's config keys that pick the fold and give the number of folds (the built-in
    # task's; write +key for a key your config lacks)
    fold_key: str = "data.fold"
    n_folds_key: str = "data.n_folds"


def fold_key(cv: Any) -> str | None:
    """A cross-validated sweep's fold key as its rows and study name it (without the ``+`` a
    key the task's config lacks is written with); None when the sweep does not cross-validate."""
    return str(cv.fold_key).lstrip("+") if cv.enabled else None


@dataclass
class SearchConf:
    # grid | random | qmc (static: every trial planned up front)
    # tpe | gp | cmaes (adaptive: Optuna asks for the next trial as a worker frees up)
    method: str = "grid"
    # random: how many trials; grid: an optional cap (an error if it would cut the grid)
    n_trials: int | None = None
    # grid: with n_trials below the grid size, keep the first n_trials instead of failing
    allow_truncate: bool = False
    # seed of the random strategy, and the trial seed when the config has no `seed` key
    seed: int = 0
    # the metric that ranks trials, as returned by the task; a list of metrics, e.g.
    # [val_loss, train_time_s], with a list of directions, is a multi-objective search
    metric: Any = "val_loss"
    # minimize | maximize (or a list, one per metric)
    direction: Any = "minimize"
    # adaptive methods and pruning: where the Optuna study lives. null: a journal file in the
    # sweep dir (no server; safe for the workers of one machine, see README before NFS);
    # postgresql://user@host/db for many workers across nodes; sqlite:///path for one worker
    storage: str | None = None
    # keyword arguments of the Optuna sampler class, e.g. {n_startup_trials: 10};
    # `type: TPESampler` may name the class (it must agree with method)
    sampler: dict[str, Any] = field(default_factory=dict)
    # early stopping, fed by what the task reports with sweeper.report(...) per epoch:
    # {type: none | median | percentile | successive_halving | hyperband | wilcoxon |
    # threshold | patient, ...keyword arguments of the Optuna pruner}; patient wraps another
    # ({type: patient, patience: 3, wrapped: {type: median}})
    pruner: dict[str, Any] = field(default_factory=lambda: {"type": "none"})
    # adaptive: a trial whose worker died (killed, node lost) is told as failed and asked
    # again with the same parameters, at most this many times
    max_retries: int = 3
    # refuse sweeps of more trials than this, for every method (a typo can ask for billions);
    # checked from the space's sizes before anything is listed or drawn
    max_trials: int = 100_000
    # the older name of the grid's limit: when set, grids are held to it instead of max_trials
    max_grid_size: int | None = None
    # dotted config key -> list (categorical) or {type: ..., ...}; see README
    space: dict[str, Any] = field(default_factory=dict)
    # k-fold cross-validation of every trial (grid, random, qmc): see CrossValidationConf
    cross_validation: CrossValidationConf = field(default_factory=CrossValidationConf)

    @property
    def metrics(self) -> list[str]:
        """The metric names, one per objective."""
        return [str(m) for m in self.metric] if isinstance(self.metric, (list, tuple)) \
            else [str(self.metric)]

    @property
    def directions(self) -> list[str]:
        """One direction per metric (a single direction applies to all)."""
        if isinstance(self.direction, (list, tuple)):
            return [str(d) for d in self.direction]
        return [str(self.direction)] * len(self.metrics)

    @property
    def adaptive(self) -> bool:
        return self.method in ADAPTIVE_METHODS

    @property
    def pruning(self) -> bool:
        return str((self.pruner or {}).get("type", "none")).lower() not in ("none", "nop",
                                                                           "noppruner")

    @property
    def uses_study(self) -> bool:
        """Adaptive sweeps and pruned ones keep an Optuna study."""
        return self.adaptive or self.pruning


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
    # wall-clock limit per trial (local) or per array task (slurm), minutes;
    # null: no limit locally, SLURM_TIMEOUT_MIN (60) on SLURM
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
    # slurm, adaptive methods: array tasks, each a worker that asks for trials until the
    # study has n_trials (null: array_parallelism); at most array_parallelism run at once
    workers: int | None = None
    # slurm: trials run one after another inside one array task
    trials_per_task: int = 1
    # slurm: at most this many tasks per array (null: the cluster's MaxArraySize)
    max_array_size: int | None = None
    # slurm: automatic requeues of a timed-out or preempted array task
    max_retries: int = 3
    # slurm: seconds before the time limit at which trials are asked to checkpoint
    signal_delay_s: int = 120


@dataclass
class ReportConf:
    # a weighted score of normalised metrics picks the best, e.g. {val_loss: 0.8, train_time_s: 0.2};
    # empty: search.metric alone
    select: dict[str, float] = field(default_factory=dict)
    # metrics in select or pareto where higher is better
    maximize: list[str] = field(default_factory=list)
    # two metrics, e.g. [val_loss, train_time_s], to draw their Pareto front; empty: none
    pareto: list[str] = field(default_factory=list)
    # trials in top_k.csv and in the curves plot
    top_k: int = 10


@dataclass
class TrackingConf:
    # true: TensorBoard event files in SWEEP_DIR/tensorboard/ (pip install sweeper[tensorboard])
    tensorboard: bool = False


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
    if isinstance(node, DictConfig):
        # A typed node accepts keys added with `+key=`, but merging keeps only its fields:
        # plain containers let a misspelt key reach the check below.
        node = OmegaConf.to_container(node, resolve=True)  # type: ignore[assignment]
    base = OmegaConf.structured(schema)
    try:
        merged = OmegaConf.merge(base, node if node is not None else {})
    except ConfigKeyError as ex:
        key = str(getattr(ex, "key", "") or "")
        path = str(getattr(ex, "full_key", "") or key)
        names = [f.name for f in dataclasses.fields(_nested(schema, path))]
        raise ConfigError(
            f"'{where}.{path}' is not a known setting{closest(key, names)} "
            f"(known: {', '.join(names)})"
        ) from None
    except ValidationError as ex:
        key = str(getattr(ex, "full_key", "") or getattr(ex, "key", ""))
        raise ConfigError(
            f"'{where}.{key}' has a value of the wrong type: {str(ex.msg or ex).splitlines()[0]}"
        ) from None
    return OmegaConf.to_object(merged)  # type: ignore[return-value]


def _nested(schema: type, path: str) -> type:
    """The dataclass that holds the last key of a dotted path (a nested settings node)."""
    for part in path.split(".")[:-1]:
        types = {f.name: f.default_factory for f in dataclasses.fields(schema)}
        inner = types.get(part)
        if not (isinstance(inner, type) and dataclasses.is_dataclass(inner)):
            break
        schema = inner
    return schema


def check_task_nodes(cfg: DictConfig) -> None:
    """Check the ``report:`` and ``tracking:`` nodes of a composed config, when present.

    >>> check_task_nodes(OmegaConf.create({"report": {"selct": {"val_loss": 1.0}}}))
    Traceback (most recent call last):
    sweeper.errors.ConfigError: 'report.selct' is not a known setting; did you mean 'select'? (known: select, maximize, pareto, top_k)
    """
    nodes = {}
    for where in ("report", "tracking"):
        node = OmegaConf.select(cfg, where, default=None, throw_on_missing=False)
        if node is not None and not isinstance(node, DictConfig):
            raise ConfigError(f"'{where}' must be a mapping of settings, got {node!r}; e.g. "
                              f"{where}: {{}} (the keys are in sweeper/schema.py)")
        nodes[where] = node
    validate(nodes["tracking"], TrackingConf, "tracking")
    report = validate(nodes["report"], ReportConf, "report")
    if report.pareto and len(report.pareto) != 2:
        raise ConfigError(f"report.pareto takes two metrics, got {report.pareto}; e.g. "
                          "pareto: [val_loss, train_time_s], or [] for none")
    if report.top_k < 1:
        raise ConfigError(f"report.top_k must be at least 1, got {report.top_k}; e.g. top_k: 10")


def register_schemas() -> None:
    """Store the defaults as ``sweeper_schema`` in Hydra's ConfigStore, which ``base.yaml``
    composes first; call it before composing (Hydra's plugin module does, at start-up)."""
    from hydra.core.config_store import ConfigStore

    # Plain values, not structured nodes: every key exists for command-line overrides, and
    # validate() and check_task_nodes() judge them, with their "did you mean" hints, where a
    # structured node would fail inside Hydra's composition with a bare "not in 'SearchConf'".
    schemas = {"search": SearchConf, "cluster": ClusterConf, "report": ReportConf,
               "tracking": TrackingConf}
    node = {name: dataclasses.asdict(schema()) for name, schema in schemas.items()}
    ConfigStore.instance().store(name="sweeper_schema", node=node, provider="sweeper")


# When Hydra is loaded already (the CLI imports it before this module), register now. Importing
# Hydra here would cost `merge` and `status` a tenth of a second, for nothing.
if "hydra.core.config_store" in sys.modules:
    register_schemas()
