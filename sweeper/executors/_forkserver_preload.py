"""Imported once by the local executor's fork server, before it forks trial processes.

Heavy imports paid here (the runner, pyarrow, the task's module and so torch) are
shared by every trial, so a trial process starts in milliseconds instead of seconds.
The modules come from the environment because the fork server takes no arguments.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import sweeper.runner
import sweeper.trial_config
from sweeper.paths import SweepPaths
from sweeper.record import SweepRecord

#: The sweep record, parsed once here and shared by every forked trial.
record: SweepRecord | None = None

for _name in filter(None, os.environ.get("SWEEPER_PRELOAD", "").split(",")):
    try:
        importlib.import_module(_name)
    except BaseException:  # the trial itself reports the import error
        pass

_sweep_dir = os.environ.get("SWEEPER_PRELOAD_SWEEP")
if _sweep_dir:
    # Parsed once here, the frozen sweep (and its YAML parse) is shared by every trial.
    try:
        record = SweepRecord.load(SweepPaths(Path(_sweep_dir)))
        sweeper.trial_config.warm(record)
    except BaseException:  # the trial reports it
        record = None


def record_for(paths: SweepPaths) -> SweepRecord:
    """The preloaded record of this sweep, or a fresh read (another sweep, or none preloaded)."""
    if record is not None and SweepPaths(Path(record.sweep_dir or ".")).root == paths.root:
        return record
    return SweepRecord.load(paths)

if "torch" in sys.modules:
    # torch imports its compiler stack (1.3 s) the first time an optimizer is built; pay it here.
    try:
        importlib.import_module("torch._dynamo")
    except BaseException:  # only an optimisation
        pass
