"""Imported once by the local executor's fork server, before it forks trial processes.

Heavy imports paid here (the runner, pyarrow, the task's module and so torch) are
shared by every trial, so a trial process starts in milliseconds instead of seconds.
The modules come from the environment because the fork server takes no arguments.
"""

from __future__ import annotations

import importlib
import os
import sys

import sweeper.runner

for _name in filter(None, os.environ.get("SWEEPER_PRELOAD", "").split(",")):
    try:
        importlib.import_module(_name)
    except BaseException:  # the trial itself reports the import error
        pass

_sweep_dir = os.environ.get("SWEEPER_PRELOAD_SWEEP")
if _sweep_dir:
    # Parsed once here, the frozen sweep (and its YAML parse) is shared by every trial.
    try:
        sweeper.runner.warm(_sweep_dir)
    except BaseException:  # the trial reports it
        pass

if "torch" in sys.modules:
    # torch imports its compiler stack (1.3 s) the first time an optimizer is built; pay it here.
    try:
        importlib.import_module("torch._dynamo")
    except BaseException:  # only an optimisation
        pass
