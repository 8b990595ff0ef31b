"""What the SLURM controller knows: limits, the queue, accounting. Every call is bounded
by a timeout and degrades instead of hanging: no sacct means fewer details, not a stall."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from functools import lru_cache

from sweeper.errors import ConfigError

__all__ = ["accounting_states", "max_array_size", "queue_states", "requeue", "scancel"]

_TIMEOUT_S = 30


def _run(argv: Sequence[str], timeout_s: float = _TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout_s, check=False)


@lru_cache(maxsize=1)
def max_array_size() -> int:
    """The cluster's MaxArraySize: array indices must stay below it (SLURM's default is 1001)."""
    try:
        out = _run(["scontrol", "show", "config"]).stdout
    except (OSError, subprocess.TimeoutExpired) as ex:
        raise ConfigError(f"cannot read the SLURM config with `scontrol show config` ({ex}); "
                          "is this a SLURM login node?") from None
    for line in out.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "MaxArraySize":
            return int(value.strip())
    return 1001


def queue_states(job_ids: Sequence[str]) -> dict[str, str] | None:
    """'<array job>_<task>' -> squeue state (PENDING, RUNNING, ...) for tasks still queued;
    None when the queue cannot be read (then nothing may be assumed gone)."""
    if not job_ids:
        return {}
    try:
        r = _run(["squeue", "-h", "-r", "-o", "%i|%T", "-j", ",".join(job_ids)])
    except (OSError, subprocess.TimeoutExpired):
        return None
    if r.returncode != 0:
        # squeue fails when none of the ids is known any more: then none is queued.
        return {} if "Invalid job id" in r.stderr else None
    states = {}
    for line in r.stdout.splitlines():
        job, _, state = line.partition("|")
        if "_" in job:
            states[job.strip()] = state.strip()
    return states


def accounting_states(job_ids: Sequence[str], attempts: int = 3) -> dict[str, dict[str, str]] | None:
    """'<array job>_<task>' -> sacct fields (State, ExitCode, End) in one call, with back-off;
    None when accounting is unavailable. Parsing is submitit's (it expands array ranges)."""
    if not job_ids:
        return {}
    from submitit.slurm.slurm import SlurmInfoWatcher

    argv = ["sacct", "-X", "--parsable2", "-o", "JobID,State,ExitCode,End", "-j", ",".join(job_ids)]
    for attempt in range(attempts):
        try:
            r = _run(argv)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if r.returncode == 0:
            return SlurmInfoWatcher().read_info(r.stdout)
        time.sleep(2**attempt)  # sacct fails transiently while slurmdbd is busy
    return None


def scancel(job_ids: Sequence[str]) -> None:
    if job_ids:
        _run(["scancel", *job_ids])


def requeue(job_id: str) -> bool:
    """Put one array element back in the queue (its siblings are untouched).

    SLURM holds a requeued job for two minutes before it may start again; the element is
    made eligible at once (best effort: a cluster may not let users move it earlier).
    """
    try:
        ok = _run(["scontrol", "requeue", job_id], timeout_s=60).returncode == 0
        if ok:
            _run(["scontrol", "update", f"jobid={job_id}", "StartTime=now"], timeout_s=10)
        return ok
    except (OSError, subprocess.TimeoutExpired):
        return False
