"""What the SLURM controller knows: limits, the queue, accounting. Every call is bounded
by a timeout and degrades instead of hanging: no sacct means fewer details, not a stall."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from sweeper.errors import ConfigError

__all__ = ["Queued", "accounting_states", "epoch_s", "max_array_size", "not_on_path",
           "queue_states", "requeue", "scancel", "time_left_s"]

_TIMEOUT_S = 30


def _run(argv: Sequence[str], timeout_s: float = _TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout_s, check=False)


def not_on_path(tool: str) -> str:
    """Why SLURM cannot be used from this machine, and the way out."""
    return (f"{tool} is not on PATH, so this machine cannot submit to SLURM: use cluster=local, "
            "or run on a login node where sbatch exists")


@lru_cache(maxsize=1)
def max_array_size() -> int:
    """The cluster's MaxArraySize: array indices must stay below it (SLURM's default is 1001)."""
    try:
        out = _run(["scontrol", "show", "config"]).stdout
    except FileNotFoundError:
        raise ConfigError(not_on_path("scontrol")) from None
    except (OSError, subprocess.TimeoutExpired) as ex:
        raise ConfigError(f"cannot read the SLURM config with `scontrol show config` ({ex}); "
                          "is this a SLURM login node?") from None
    for line in out.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "MaxArraySize":
            return int(value.strip())
    return 1001


@dataclass(frozen=True)
class Queued:
    """One array element in the queue: its state, and when its current run started."""

    state: str
    started_at: float | None = None  # epoch seconds; None while it waits

    @property
    def running(self) -> bool:
        return self.state in _RUNNING


_RUNNING = frozenset({"RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED", "STOPPED"})


def epoch_s(text: str) -> float | None:
    """A time as squeue and sacct print it (the local time zone, without one), in epoch
    seconds; None for N/A, Unknown and the like."""
    try:
        return time.mktime(time.strptime(text.strip(), "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None  # N/A, Unknown


def queue_states(job_ids: Sequence[str]) -> dict[str, Queued] | None:
    """'<array job>_<task>' -> its queue entry, for tasks still queued; None when the queue
    cannot be read (then nothing may be assumed gone)."""
    if not job_ids:
        return {}
    try:
        r = _run(["squeue", "-h", "-r", "-o", "%i|%T|%S", "-j", ",".join(job_ids)])
    except (OSError, subprocess.TimeoutExpired):
        return None
    if r.returncode != 0:
        # squeue fails when none of the ids is known any more: then none is queued.
        return {} if "Invalid job id" in r.stderr else None
    states = {}
    for line in r.stdout.splitlines():
        job, state, start = ([*line.split("|"), "", ""])[:3]
        if "_" in job:
            queued = Queued(state.strip(), epoch_s(start))
            states[job.strip()] = Queued(queued.state, queued.started_at if queued.running else None)
    return states


def accounting_states(job_ids: Sequence[str], attempts: int = 2) -> dict[str, dict[str, str]] | None:
    """'<array job>_<task>' -> sacct fields (State, ExitCode, End) in one call, retried once
    after 1 s; None when accounting is unavailable. Callers ask only for elements that left
    the queue (sites rate-limit sacct). Parsing is submitit's (it expands array ranges)."""
    if not job_ids:
        return {}
    from submitit.slurm.slurm import SlurmInfoWatcher

    argv = ["sacct", "-X", "--parsable2", "-o", "JobID,State,ExitCode,End", "-j", ",".join(job_ids)]
    for attempt in range(attempts):
        if attempt:
            time.sleep(1.0)  # sacct fails transiently while slurmdbd is busy
        try:
            r = _run(argv, timeout_s=20)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if r.returncode == 0:
            return SlurmInfoWatcher().read_info(r.stdout)
    return None


def scancel(job_ids: Sequence[str]) -> str | None:
    """Cancel these jobs; None when scancel succeeded, else why it did not."""
    if not job_ids:
        return None
    try:
        r = _run(["scancel", *job_ids])
    except FileNotFoundError:
        return "scancel is not on PATH (run `sweeper cancel` on the cluster's login node)"
    except (OSError, subprocess.TimeoutExpired) as ex:
        return f"scancel could not run ({ex})"
    if r.returncode != 0:
        return f"scancel failed: {' '.join(r.stderr.split()) or f'exit code {r.returncode}'}"
    return None


def time_left_s(job_id: str) -> float | None:
    """Seconds until this running job's time limit, as the controller counts them (from the
    job's real start, not from when Python got going); None when unknown or unlimited."""
    try:
        out = _run(["squeue", "-h", "-j", job_id, "-o", "%L"], timeout_s=10).stdout.split()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return _duration_s(out[0]) if len(out) == 1 else None


def _duration_s(text: str) -> float | None:
    """SLURM's ``[days-]hours:minutes:seconds`` (or ``minutes:seconds``) in seconds; None for
    UNLIMITED, NOT_SET, INVALID and anything else it is not.

    >>> [_duration_s(t) for t in ("1:59", "2:03:04", "1-00:00:10", "UNLIMITED", "-1:00")]
    [119.0, 7384.0, 86410.0, None, None]
    """
    days, dash, clock = text.rpartition("-")
    parts = clock.split(":")
    if not (1 <= len(parts) <= 3 and all(p.isdigit() for p in parts)
            and (days.isdigit() if dash else True)):
        return None
    seconds = 0
    for part in parts:
        seconds = 60 * seconds + int(part)
    return float(seconds + 86400 * int(days or 0))


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
