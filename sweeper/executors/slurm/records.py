"""Launch records: which trials went to which SLURM array, written when they are submitted.

One small JSON file per submission (``launches/launch-0001.json``), never one per trial:
an array task finds its trials from the record, its chunk's offset (a script argument) and
``SLURM_ARRAY_TASK_ID``. ``status``, ``cancel`` and ``resume`` read the records.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sweeper.errors import SweepDirError
from sweeper.paths import SweepPaths, atomic_path

__all__ = [
    "ArrayRecord",
    "Assignment",
    "Launch",
    "assignments",
    "compress_ids",
    "expand_ids",
    "next_number",
    "read_launches",
    "register_external_array",
]


def compress_ids(ids: Sequence[int]) -> list[list[int]]:
    """[0,1,2,5,6] -> [[0,3],[5,7]]: half-open ranges, so a fresh sweep's ids take one pair."""
    ranges: list[list[int]] = []
    for i in ids:
        if ranges and ranges[-1][1] == i:
            ranges[-1][1] = i + 1
        else:
            ranges.append([i, i + 1])
    return ranges


def expand_ids(ranges: Sequence[Sequence[int]]) -> list[int]:
    return [i for start, stop in ranges for i in range(start, stop)]


@dataclass
class ArrayRecord:
    """One submitted array: its job id and the slice of the launch's tasks it runs.
    Its indices start at ``first_index`` (0 for arrays sweeper submits)."""

    job_id: str
    first_task: int
    n_tasks: int
    first_index: int = 0


@dataclass
class Launch:
    """One submission of trials to SLURM, split into arrays of at most ``chunk_tasks`` tasks."""

    number: int
    trial_ranges: list[list[int]]
    trials_per_task: int
    chunk_tasks: int
    max_retries: int
    signal_delay_s: int
    created_at: float = field(default_factory=time.time)
    arrays: list[ArrayRecord] = field(default_factory=list)
    #: adaptive sweeps: the array tasks are this many workers that ask the study for trials
    #: (no trial is assigned up front; each trial's marker names the element that ran it)
    workers: int = 0

    @property
    def trial_ids(self) -> list[int]:
        return expand_ids(self.trial_ranges)

    @property
    def n_tasks(self) -> int:
        if self.workers:
            return self.workers
        return -(-len(self.trial_ids) // self.trials_per_task)

    def trials_of_task(self, global_task: int) -> list[int]:
        ids = self.trial_ids
        k = self.trials_per_task
        return ids[global_task * k : (global_task + 1) * k]

    def tasks(self) -> Iterator[tuple[str, int, list[int]]]:
        """(array job id, array task id, trial ids) for every submitted array task."""
        ids = self.trial_ids
        k = self.trials_per_task
        for arr in self.arrays:
            for i in range(arr.n_tasks):
                g = arr.first_task + i
                yield arr.job_id, arr.first_index + i, ids[g * k : (g + 1) * k]

    def path(self, paths: SweepPaths) -> Path:
        return paths.launch_record(self.number)

    def write(self, paths: SweepPaths) -> None:
        with atomic_path(self.path(paths)) as tmp:
            tmp.write_text(json.dumps(asdict(self), indent=1))


def read_launches(paths: SweepPaths) -> list[Launch]:
    """Every launch of the sweep, oldest first."""
    launches = []
    for path in sorted(paths.launches_dir.glob("launch-*.json")) if paths.launches_dir.is_dir() else []:
        try:
            data = json.loads(path.read_text())
            arrays = [ArrayRecord(**a) for a in data.pop("arrays")]
            launches.append(Launch(**data, arrays=arrays))
        except (OSError, ValueError, TypeError) as ex:
            raise SweepDirError(f"{path} is unreadable ({ex}); move it aside to continue") from None
    return launches


@dataclass(frozen=True)
class Assignment:
    """Where a trial was sent last: its array element, and when that launch was made."""

    element: str
    submitted_at: float


def assignments(paths: SweepPaths) -> tuple[dict[int, Assignment], list[str]]:
    """trial_id -> the array element of its latest launch; and every array's job id."""
    assigned: dict[int, Assignment] = {}
    job_ids: list[str] = []
    for launch in read_launches(paths):
        job_ids.extend(arr.job_id for arr in launch.arrays)
        for job, task, ids in launch.tasks():
            for tid in ids:
                assigned[tid] = Assignment(f"{job}_{task}", launch.created_at)
    return assigned, job_ids


def read_launch(paths: SweepPaths, number: int) -> Launch:
    for launch in read_launches(paths):
        if launch.number == number:
            return launch
    raise SweepDirError(f"{paths.launches_dir} has no launch {number}")


def next_number(paths: SweepPaths) -> int:
    return max((launch.number for launch in read_launches(paths)), default=0) + 1


def register_external_array(paths: SweepPaths, job_id: str, first: int, last: int,
                            max_retries: int, signal_delay_s: int, workers: bool = False) -> None:
    """Record an array the user submitted (``sbatch --array=A-B script``, index = trial id;
    or, for an adaptive sweep, each task a worker), once, so that ``status``, ``cancel`` and
    ``resume`` know about it."""
    from sweeper.locks import dir_lock

    with dir_lock(paths.lock, "the sweep dir", timeout_s=120):
        if any(a.job_id == job_id for launch in read_launches(paths) for a in launch.arrays):
            return
        n = last + 1 - first
        launch = Launch(next_number(paths), [] if workers else [[first, last + 1]], 1, n,
                        max_retries, signal_delay_s, arrays=[ArrayRecord(job_id, 0, n, first)],
                        workers=n if workers else 0)
        launch.write(paths)
