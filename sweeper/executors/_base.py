"""The executor extension point: where and how trials run.

An executor has two roles, as submitit's Executor and Job do:

- :meth:`Executor.submit` claims the trials (the local driver record, or SLURM arrays and
  their launch record). It runs under the sweep dir's lock, so it must be quick.
- :meth:`Executor.wait` runs or watches them until they end, *outside* any lock, calling
  ``on_done(trial_id, state)`` as each trial ends (the hook an ask/tell loop tells from).

Local trials run in this process's children, so a local submission is always waited for;
SLURM submissions return at once unless the user asks to wait. Either way the sweep dir is
the state: ``status``, ``resume`` and ``merge`` read only that.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from sweeper.paths import SweepPaths
from sweeper.record import SweepRecord
from sweeper.state import TrialState, exit_code_for

__all__ = ["Executor", "LaunchResult", "OnDone", "Submission"]

#: Called once per trial that ends while waiting: (trial_id, its final state).
OnDone = Callable[[int, TrialState], None]


@dataclass(frozen=True)
class Submission:
    """What :meth:`Executor.submit` claimed: the trials, and SLURM's job ids when any."""

    trial_ids: tuple[int, ...]
    job_ids: tuple[str, ...] = ()
    rows: pa.Table | None = None  # local: the rows to run
    asker: Any = None  # local, adaptive: the sweep's Asker, asked as slots free up


@dataclass(frozen=True)
class LaunchResult:
    """How the trials of one submission ended (when waited for) or where they went."""

    states: Counter[TrialState] = field(default_factory=Counter)
    interrupted: bool = False
    job_ids: tuple[str, ...] = ()
    waited: bool = False

    @property
    def exit_code(self) -> int:
        return exit_code_for(self.states.elements(), self.interrupted)


class Executor(ABC):
    """Runs trials of a planned sweep (see the module docstring)."""

    #: True when the trials run in this process's children: submit() is always waited for.
    runs_here: bool = False

    @property
    def workers(self) -> int:
        """How many trials may run at once (the workers that share an adaptive study)."""
        return 1

    @abstractmethod
    def submit(self, paths: SweepPaths, record: SweepRecord, trials: pa.Table) -> Submission:
        """Claim the given rows of the trial table (quick: called under the sweep dir's lock)."""

    @abstractmethod
    def wait(self, paths: SweepPaths, record: SweepRecord, submission: Submission,
             on_done: OnDone | None = None) -> LaunchResult:
        """Run or watch the submitted trials until none is active; never under a lock."""

    def launch_workers(self, paths: SweepPaths, record: SweepRecord, asker: Any) -> Submission:
        """Adaptive sweeps: start workers that ask ``asker``'s study for trials until the
        budget is spent (quick: called under the sweep dir's lock)."""
        raise NotImplementedError(f"{type(self).__name__} runs no adaptive search")

    def check(self, paths: SweepPaths, record: SweepRecord, n_trials: int) -> None:  # noqa: B027
        """Check the executor's settings before anything runs (bad ones raise ConfigError)."""

    def describe(self) -> str:
        """One line on where the trials run, for the plan summary."""
        return type(self).__name__
