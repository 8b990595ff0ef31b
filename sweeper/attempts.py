"""Attempt markers: each attempt at a trial records that it started, before the task runs.

``attempts/trial-000123.json`` holds the latest attempt: its number, host, pid (with the
process's start time, so a reused pid is not mistaken for it) and SLURM array element. The
attempt ends with the result row, which carries the same ``attempt`` number. So:

- a row counts only when its attempt is the marker's (an older row is an earlier attempt's);
- a marker newer than the row is an attempt in flight, or one that died: the process (local)
  or the queue (SLURM) tells which.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
from dataclasses import asdict, dataclass
from pathlib import Path

from sweeper.paths import SweepPaths, atomic_path

__all__ = ["AttemptMarker", "process_start", "read_marker", "read_markers", "start_attempt"]


def process_start(pid: int) -> str | None:
    """The process's start time since boot (/proc); with the pid, it names one process.

    None when it is gone, and also for a zombie: it has ended and only waits to be reaped
    (an orphan's may wait forever in a container whose init never reaps), so it must not
    count as a trial that still runs, nor as a live driver.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return fields[19]


def slurm_element() -> str | None:
    """``<array job>_<task>`` (or the job id) when running inside a SLURM job."""
    array_job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array_job and task:
        return f"{array_job}_{task}"
    return os.environ.get("SLURM_JOB_ID")


@dataclass(frozen=True)
class AttemptMarker:
    """One attempt's start: where it runs and which attempt it is."""

    trial_id: int
    attempt: int
    host: str
    pid: int
    pid_start: str | None
    element: str | None
    started_at: float

    @property
    def started(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.started_at, dt.timezone.utc)

    def alive_here(self) -> bool | None:
        """True or False when this host can tell whether the attempt's process lives;
        None when it cannot (another host, or no /proc)."""
        if self.host != socket.gethostname() or self.pid_start is None:
            return None
        return process_start(self.pid) == self.pid_start


def start_attempt(paths: SweepPaths, trial_id: int, attempt: int) -> AttemptMarker:
    """Record that this process starts ``attempt`` of the trial (atomically)."""
    pid = os.getpid()
    marker = AttemptMarker(trial_id, attempt, socket.gethostname(), pid, process_start(pid),
                           slurm_element(), dt.datetime.now(dt.timezone.utc).timestamp())
    target = paths.marker(trial_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(asdict(marker)))
    return marker


def read_marker(paths: SweepPaths, trial_id: int) -> AttemptMarker | None:
    return _read(paths.marker(trial_id))


def _read(path: Path) -> AttemptMarker | None:
    try:
        return AttemptMarker(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def read_markers(paths: SweepPaths) -> dict[int, AttemptMarker]:
    """trial_id -> its latest attempt's marker, for every readable marker."""
    if not paths.markers_dir.is_dir():
        return {}
    markers = {}
    for path in paths.markers_dir.glob("trial-*.json"):
        marker = _read(path)
        if marker is not None:
            markers[marker.trial_id] = marker
    return markers
