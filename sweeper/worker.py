"""The process entry point of every trial worker: ``python -m sweeper.worker``.

Inside a SLURM job it hands over to the backend's job side (:mod:`sweeper.executors.slurm.job`:
which trials this array task runs, the time-limit warning, requeue); elsewhere it runs the
given trials in this process. The runner stays a plain library that imports neither.

    python -m sweeper.worker SWEEP_DIR --trials 0,1,2
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from sweeper.errors import SweeperError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sweeper.worker",
        description="Run trials of a planned sweep in this process (what array tasks run).")
    parser.add_argument("sweep_dir", type=Path)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--trials", help="comma-separated trial ids")
    which.add_argument("--launch", type=int, help="a launch record's number (SLURM array tasks)")
    parser.add_argument("--task-offset", type=int, default=0,
                        help="with --launch: this array's first task within the launch")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if "SLURM_JOB_ID" in os.environ:
            from sweeper.executors.slurm.job import main as job_main

            return job_main(args.sweep_dir, args.trials, args.launch, args.task_offset)
        if args.trials is None:
            parser.error("--launch runs inside a SLURM array task only")
        from sweeper.paths import SweepPaths
        from sweeper.runner import run_trials

        ids = [int(x) for x in args.trials.split(",") if x.strip()]
        return run_trials(SweepPaths(args.sweep_dir), ids)
    except SweeperError as ex:
        print(f"sweeper: error: {ex}", file=sys.stderr)
        return ex.exit_code


if __name__ == "__main__":
    sys.exit(main())
