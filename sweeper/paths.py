"""One object owns every path inside a sweep dir."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SweepPaths", "atomic_path", "temp_beside"]


@dataclass(frozen=True)
class SweepPaths:
    """The layout of a sweep dir (see README, "Sweep directory").

    >>> SweepPaths(Path("/tmp/s")).result(7).name
    'trial-000007.parquet'
    """

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).absolute())

    @property
    def sweep_yaml(self) -> Path:
        return self.root / "sweep.yaml"

    @property
    def trials(self) -> Path:
        return self.root / "trials.parquet"

    @property
    def results_dir(self) -> Path:
        return self.root / "results"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def merged(self) -> Path:
        return self.root / "results.parquet"

    @property
    def curves(self) -> Path:
        return self.root / "curves.parquet"

    @property
    def report_dir(self) -> Path:
        return self.root / "report"

    @property
    def lock(self) -> Path:
        return self.root / ".sweep.lock"

    @property
    def launches_dir(self) -> Path:
        return self.root / "launches"

    def launch_record(self, number: int) -> Path:
        return self.launches_dir / f"launch-{number:04d}.json"

    def launch_script(self, number: int) -> Path:
        return self.launches_dir / f"launch-{number:04d}.sh"

    @property
    def write_lock(self) -> Path:
        """Taken only for the instant a result file is checked and renamed."""
        return self.results_dir / ".write.lock"

    @property
    def markers_dir(self) -> Path:
        return self.root / "attempts"

    def marker(self, trial_id: int) -> Path:
        """The latest attempt's start record (see :mod:`sweeper.attempts`)."""
        return self.markers_dir / f"trial-{trial_id:06d}.json"

    @property
    def trial_parts_dir(self) -> Path:
        """Rows appended to the trial table after planning, one part file per append."""
        return self.root / "trials"

    def trial_part(self, number: int) -> Path:
        return self.trial_parts_dir / f"part-{number:06d}.parquet"

    @property
    def report_index(self) -> Path:
        return self.report_dir / "index.html"

    @property
    def next_search(self) -> Path:
        return self.report_dir / "search" / "next.yaml"

    def tensorboard_dir(self, trial_id: int) -> Path:
        return self.root / "tensorboard" / f"trial-{trial_id:06d}"

    # %A/%a are sbatch's array job and task ids: one log per array task, relative to the
    # sweep dir (jobs start there), so no path reaches the #SBATCH lines.
    slurm_log_pattern = "logs/slurm-%A_%a.log"

    def slurm_log(self, job_id: str, task: int) -> Path:
        return self.logs_dir / f"slurm-{job_id}_{task}.log"

    @property
    def local_driver(self) -> Path:
        return self.root / "logs" / "local-driver.json"

    def result(self, trial_id: int) -> Path:
        return self.results_dir / f"trial-{trial_id:06d}.parquet"

    def checkpoint_dir(self, trial_id: int) -> Path:
        return self.root / "checkpoints" / f"trial-{trial_id:06d}"

    def local_log(self, slot: int) -> Path:
        return self.logs_dir / f"local-slot-{slot:02d}.log"

    def result_files(self) -> list[Path]:
        if not self.results_dir.is_dir():
            return []
        return sorted(p for p in self.results_dir.glob("trial-*.parquet"))


# mkstemp creates 0600 files; results should be as readable as any file the user writes.
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def temp_beside(target: Path) -> Iterator[Path]:
    """A hidden temp file in ``target``'s dir (same file system, so a rename is atomic),
    removed afterwards unless it was renamed. Its name starts with a dot: scans skip it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.fchmod(fd, 0o666 & ~_UMASK)
    os.close(fd)
    try:
        yield Path(tmp)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temp path beside ``target``; rename it over ``target`` when the block succeeds.

    Readers never see half a file: the rename is atomic on POSIX file systems.
    """
    with temp_beside(target) as tmp:
        yield tmp
        os.replace(tmp, target)
