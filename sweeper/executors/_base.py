"""The executor extension point: where and how trials run.

An executor gets a planned sweep dir and the ids of the trials to run. The local
executor runs them on this machine and returns when they have ended; the SLURM
executor submits job arrays and returns at once. Either way the sweep dir is the
state: ``status``, ``resume`` and ``merge`` read only that.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa
from omegaconf import DictConfig

from sweeper.paths import SweepPaths

__all__ = ["Executor", "LaunchResult"]


@dataclass
class LaunchResult:
    """What a launch did: final statuses (when it waited), job ids (when it submitted)."""

    statuses: Counter[str] = field(default_factory=Counter)
    interrupted: bool = False
    job_ids: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        failed = sum(n for s, n in self.statuses.items() if s != "completed")
        return 1 if failed else 0


class Executor(ABC):
    """Runs trials of a planned sweep."""

    #: Block until the trials have ended (executors that submit and return honour it).
    wait: bool = False
    #: True when launch() runs the trials itself, in this process, until they end.
    blocking: bool = False

    @abstractmethod
    def launch(self, paths: SweepPaths, sweep: DictConfig, trials: pa.Table) -> LaunchResult:
        """Run (or submit) the given rows of the trial table."""

    def check(self, paths: SweepPaths, sweep: DictConfig, n_trials: int) -> None:  # noqa: B027
        """Check the executor's settings before anything runs (bad ones raise ConfigError)."""

    def describe(self) -> str:
        """One line on where the trials run, for the plan summary."""
        return type(self).__name__

