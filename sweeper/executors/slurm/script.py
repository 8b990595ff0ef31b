"""The sbatch script of a launch: rendered by submitit, from the cluster settings.

No sweep path reaches an ``#SBATCH`` line (the log pattern is relative to the sweep dir,
where sbatch runs), and the command quotes python, ``$SLURM_SUBMIT_DIR`` and ``$1``; values
that do reach ``#SBATCH`` lines are quoted by submitit and must hold no control character.
"""

from __future__ import annotations

import math
import shlex
from typing import Any

from sweeper.errors import ConfigError, SweeperError
from sweeper.paths import SweepPaths
from sweeper.schema import SLURM_TIMEOUT_MIN, ClusterConf

__all__ = ["check_sbatch_values", "render_script"]


def render_script(cluster: ClusterConf, paths: SweepPaths, launch: int, python: str) -> str:
    """The script of launch ``launch``; its argument is the chunk's offset into the tasks.

    >>> "--launch 3" in render_script(ClusterConf(), SweepPaths("s"), 3, "python3")
    True
    """
    c = cluster
    extra: dict[str, Any] = {
        "output": paths.slurm_log_pattern,
        "signal": f"B:USR2@{c.signal_delay_s}",  # B: signal the batch shell = our python
        "requeue": True,
        **dict(c.additional_parameters),
    }
    command = (f'exec {shlex.quote(python)} -u -m sweeper.worker "$SLURM_SUBMIT_DIR" '
               f'--launch {launch} --task-offset "$1"')
    return _render(
        command=command, folder=paths.logs_dir, job_name="sweeper",
        partition=c.partition, time=math.ceil(c.timeout_min or SLURM_TIMEOUT_MIN),
        cpus_per_task=c.cpus_per_task, gpus_per_task=c.gpus_per_task, gres=c.gres,
        qos=c.qos, account=c.account, constraint=c.constraint, exclude=c.exclude,
        mem_gb=c.mem_gb, setup=list(c.setup), stderr_to_stdout=True,
        use_srun=False, additional_parameters=extra,
    )


def check_sbatch_values(cluster: ClusterConf) -> None:
    """Values that become #SBATCH lines must stay on their line: a newline would end the
    header (and the next line would run as a command)."""
    named = {f"cluster.{k}": getattr(cluster, k) for k in
             ("partition", "account", "qos", "gres", "constraint", "exclude")}
    for key, value in cluster.additional_parameters.items():
        named[f"cluster.additional_parameters key {key!r}"] = key
        named[f"cluster.additional_parameters.{key}"] = value
    for name, value in named.items():
        if isinstance(value, str) and any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
            raise ConfigError(f"{name}={value!r} holds a control character (a newline?); sbatch "
                              "options must be one line: remove it")


def _render(mem_gb: float, **kwargs: Any) -> str:
    """submitit's sbatch rendering. It is submitit's private API (``submitit>=1.5`` pins no
    upper bound): only its ValueError is about the user's settings; anything else means the
    installed submitit changed, and saying "check cluster settings" would blame the user."""
    try:
        from submitit.slurm.slurm import _convert_mem, _make_sbatch_string

        return _make_sbatch_string(mem=_convert_mem(mem_gb), **kwargs)
    except ValueError as ex:
        raise ConfigError(f"cannot render the sbatch script: {ex}; check cluster settings") from None
    except Exception as ex:
        from importlib.metadata import version

        raise SweeperError(
            f"cannot render the sbatch script with the installed submitit {version('submitit')}: "
            f"its private API changed ({type(ex).__name__}: {ex}); install the series sweeper "
            f"supports: pip install 'submitit>=1.5,<1.6'") from None
