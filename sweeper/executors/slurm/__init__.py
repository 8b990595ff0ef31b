"""The SLURM backend, in one place (submitit's three roles):

- ``executor``: submit throttled job arrays, wait for them, cancel them (the driver side);
- ``job``: inside an array task: pick its trials, honour the time-limit warning, requeue;
- ``queue``: every call to squeue, sacct, scontrol and scancel, each bounded by a timeout;
- ``records``: launch records (which trials went to which array);
- ``script``: the sbatch script, rendered by submitit.
"""

from __future__ import annotations

from sweeper.executors.slurm.executor import SlurmExecutor, cancel_arrays

__all__ = ["SlurmExecutor", "cancel_arrays"]
