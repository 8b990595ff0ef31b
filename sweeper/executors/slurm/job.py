"""Inside a SLURM job: pick this array task's trials, honour the time-limit warning, requeue.

The batch script ``exec``s Python, so the ``--signal=B:USR2@N`` warning reaches this process.
On it, the running trial is asked to checkpoint (``sweeper.should_checkpoint()``); the trial
stops after ``save_checkpoint`` and its row says ``requeued``. If it has not checkpointed
shortly before the limit, it is stopped as ``timeout``. Either way this array element alone is
requeued (``scontrol requeue JOB_TASK``), at most ``max_retries`` times, and resumes from the
checkpoint. A failed trial makes the task exit 1, so sacct says FAILED.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from sweeper import context
from sweeper.executors.slurm.queue import requeue, time_left_s
from sweeper.executors.slurm.records import read_launch, register_external_array
from sweeper.paths import SweepPaths
from sweeper.record import SweepRecord
from sweeper.runner import exit_code, rows_by_id, run_rows
from sweeper.schema import SLURM_TIMEOUT_MIN
from sweeper.state import STOPPED, TrialState

_DOUBT_POLL_S = 10.0
_started = time.time()  # this array task's start, near enough: its time limit counts from it

__all__ = ["main"]

def _grace_s(signal_delay_s: int) -> float:
    """How long a warned trial gets to reach its checkpoint: the warning's lead, less a
    margin (up to 15 s) kept for writing the row and requeueing."""
    return max(1.0, signal_delay_s - min(15.0, signal_delay_s / 3))


def _element_id() -> str:
    array_job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array_job}_{task}" if array_job and task else os.environ["SLURM_JOB_ID"]


def _install_warning_handler(signal_delay_s: int) -> None:
    def on_warning(signum: int, frame: Any) -> None:
        if context.stop_requested():
            return
        grace = _grace_s(signal_delay_s)
        print(f"[sweeper] SIGUSR2: the time limit or a preemption is near; asking the trial "
              f"to checkpoint (stopping it in {grace:.0f}s if it does not)", flush=True)
        context.request_checkpoint()
        os.environ["SWEEPER_DEADLINE"] = "0"  # any stop from now on is the time limit
        # A real SIGTERM to the main thread: _thread.interrupt_main only schedules the handler,
        # which then waits until a blocking call in the trial (a sleep, a C loop) returns.
        watchdog = threading.Timer(grace, signal.pthread_kill,
                                   args=(threading.main_thread().ident, signal.SIGTERM))
        watchdog.daemon = True
        watchdog.start()

    signal.signal(signal.SIGUSR2, on_warning)


def _select(paths: SweepPaths, trials: str | None, launch_no: int | None, offset: int) -> list[int]:
    if trials is not None:
        return [int(x) for x in trials.split(",") if x.strip()]
    assert launch_no is not None
    task = offset + int(os.environ.get("SLURM_ARRAY_TASK_ID", "0"))
    return read_launch(paths, launch_no).trials_of_task(task)


def main(sweep_dir: Path, trials: str | None, launch_no: int | None, offset: int) -> int:
    """Run this job's trials; requeue this element if a trial was stopped by the warning."""
    paths = SweepPaths(sweep_dir)
    record = SweepRecord.load(paths)
    cwd = record.cwd or os.getcwd()
    os.chdir(cwd)  # the job starts in the sweep dir; the task expects the project dir
    sys.path.insert(0, cwd)
    if os.environ.get("SLURM_CPUS_PER_TASK"):
        os.environ.setdefault("SWEEPER_CPUS_PER_TRIAL", os.environ["SLURM_CPUS_PER_TASK"])
    launch = read_launch(paths, launch_no) if launch_no is not None else None
    max_retries = launch.max_retries if launch else record.cluster.max_retries
    delay_s = launch.signal_delay_s if launch else record.cluster.signal_delay_s
    _install_warning_handler(delay_s)
    # An adaptive sweep has no trial per index: every array task is a worker that asks, also
    # when the user submitted the array (the plain sbatch path, `--trials $SLURM_ARRAY_TASK_ID`).
    asks = record.search.adaptive and (launch is None or bool(launch.workers))
    ids = [] if asks else _select(paths, trials, launch_no, offset)
    if launch is None and os.environ.get("SLURM_ARRAY_TASK_MIN"):
        register_external_array(paths, os.environ["SLURM_ARRAY_JOB_ID"],
                                int(os.environ["SLURM_ARRAY_TASK_MIN"]),
                                int(os.environ["SLURM_ARRAY_TASK_MAX"]), max_retries, delay_s,
                                workers=asks)
    if asks:
        statuses = _work(paths, record, delay_s)
        ids = []  # a worker's trials are those it asked for
    else:
        print(f"[sweeper] job {_element_id()} on {os.uname().nodename}: trials {ids}", flush=True)
        statuses = run_rows(paths, record, rows_by_id(paths, ids))
    if context.stop_requested() and (len(statuses) < len(ids) or (bool(statuses) and statuses[-1]
                                     in (TrialState.REQUEUED, TrialState.TIMEOUT))):
        restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0"))
        if restarts < max_retries:
            print(f"[sweeper] requeueing {_element_id()} (restart {restarts + 1} of at most "
                  f"{max_retries}); it resumes from the trial's checkpoint", flush=True)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # requeueing stops this job
            if requeue(_element_id()):
                return 0
            print(f"[sweeper] not requeued: `scontrol requeue {_element_id()}` failed; "
                  f"`sweeper resume` reruns the trial", flush=True)
        else:
            print(f"[sweeper] not requeued: its {restarts} restarts used all of "
                  f"cluster.max_retries={max_retries}", flush=True)
    return exit_code(statuses, len(ids) or len(statuses))


def _work(paths: SweepPaths, record: SweepRecord, delay_s: int) -> list[TrialState]:
    """An adaptive worker: go on with this element's own checkpointed trial when requeued,
    then ask -> run -> tell until the study has n_trials, the scheduler warns, or the next
    trial (judged by the finished ones) would not end before the time limit."""
    from sweeper.asking import Asker, durations_s, fits_before

    element = _element_id()
    task = int(os.environ.get("SLURM_ARRAY_TASK_ID", "0"))
    asker = Asker(paths, record, stream=1 + task)
    left = time_left_s(element)
    deadline = (time.time() + left if left is not None
                else _started + 60 * (record.cluster.timeout_min or SLURM_TIMEOUT_MIN))
    print(f"[sweeper] worker {element} on {os.uname().nodename}: asking the study for trials",
          flush=True)
    statuses: list[TrialState] = []
    todo = _requeued_here(paths, element)
    while not context.stop_requested():
        if todo:
            rows = rows_by_id(paths, [todo.pop(0)])
        elif not fits_before(deadline - delay_s, durations_s(asker.study), margin_s=30.0):
            print("[sweeper] not asking for another trial: the finished ones took too long to "
                  "end before this task's time limit", flush=True)
            break
        elif (rows := asker.ask()) is None:
            if asker.in_doubt():  # a trial whose worker may have died: wait for the verdict
                time.sleep(_DOUBT_POLL_S)
                continue
            print("[sweeper] the study has all its trials; this worker is done", flush=True)
            break
        statuses += run_rows(paths, record, rows)
        if not statuses or statuses[-1] in STOPPED:
            break
    return statuses


def _requeued_here(paths: SweepPaths, element: str) -> list[int]:
    """Trials this element checkpointed before it was requeued: they go on first."""
    from sweeper.attempts import read_markers
    from sweeper.results import read_state

    mine = [tid for tid, m in read_markers(paths).items() if m.element == element]
    again = [tid for tid in sorted(mine)
             if read_state(paths.result(tid)) in (TrialState.REQUEUED, TrialState.TIMEOUT)]
    return again + _later_folds(paths, again)


def _later_folds(paths: SweepPaths, tids: list[int]) -> list[int]:
    """The folds not started yet of the cross-validated configs these trials belong to (this
    worker asked the config, and runs all of its folds)."""
    from sweeper.results import read_state
    from sweeper.study import OPTUNA_COLUMN
    from sweeper.trials import read_trials

    if not tids:
        return []
    table = read_trials(paths)
    if OPTUNA_COLUMN not in table.column_names:
        return []
    number = dict(zip(table.column("trial_id").to_pylist(),
                      table.column(OPTUNA_COLUMN).to_pylist(), strict=True))
    configs = {number[t] for t in tids if t in number}
    return [t for t, n in sorted(number.items()) if n in configs and t not in tids
            and read_state(paths.result(t)) is None]
