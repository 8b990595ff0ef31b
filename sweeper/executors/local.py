"""Local multirun: each trial in its own process, at most ``max_parallel`` at once.

Trial processes are forked from a fork server that imported the runner and the
task's module once (see ``sweeper.executors._forkserver_preload``), so a trial starts in milliseconds.
Each trial still gets a fresh process: a crash, a leak or a SIGKILL touches only
that trial. Each slot keeps one log file, appended to by its trials, and owns one
GPU (``CUDA_VISIBLE_DEVICES``) when there are GPUs.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.util
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

import pyarrow as pa

from sweeper import taskref
from sweeper.driver import DriverSignals, start_time, watch_driver
from sweeper.errors import SweeperError
from sweeper.executors._base import Executor, LaunchResult, OnDone, Submission
from sweeper.paths import SweepPaths
from sweeper.progress import SweepProgress
from sweeper.record import SweepRecord
from sweeper.results import read_attempt, read_state
from sweeper.state import TrialState

__all__ = ["LocalExecutor", "detect_gpus"]

_GRACE_S = 10.0
#: A trial process's exit code when it could not write its row (or marker): the trial stays
#: as it is (lost, or not run), for resume; the driver must not write a row of its own.
_NO_ROW_EXIT = 75


def detect_gpus() -> list[str]:
    """GPU ids visible to this process, without importing torch."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g for g in visible.split(",") if g.strip() and g.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


@dataclass
class _Running:
    process: Any
    trial_id: int
    slot: int
    started: float
    started_at: dt.datetime
    deadline: float | None
    prev_attempt: int
    stop_sent: bool = False


def _child(root: str, row: dict[str, Any], schema: pa.Schema, log_path: str,
           env: dict[str, str]) -> None:
    """Body of a trial process: own process group, own log slot, tied to its driver, then
    the runner."""
    # Its own group: Ctrl-C in the terminal reaches the driver only, which stops trials
    # cleanly. Not its own session, and tied to the driver's life (below), so no trial
    # outlives its driver: a hang-up, a SIGKILL or an OOM kill of the driver stops it too.
    os.setpgid(0, 0)
    os.environ.update(env)
    watch_driver(int(env["SWEEPER_DRIVER_PID"]), env.get("SWEEPER_DRIVER_START") or None,
                 _GRACE_S)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    print(f"[sweeper] trial {row['trial_id']} starts (pid {os.getpid()})", flush=True)
    from sweeper.executors._forkserver_preload import record_for
    from sweeper.runner import exit_code, run_rows

    paths = SweepPaths(Path(root))
    states = run_rows(paths, record_for(paths), pa.Table.from_pylist([row], schema=schema))
    code = _NO_ROW_EXIT if TrialState.LOST in states else exit_code(states, 1)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # the row is written; skip interpreter teardown


@contextlib.contextmanager
def _hidden_main() -> Iterator[None]:
    """Keep multiprocessing from re-running the driver's ``__main__`` in each trial process.

    Trial processes need only the runner and the task (imported by reference); re-running a
    user's script there would repeat its imports, and a ``<stdin>`` main cannot be re-run.
    """
    main = sys.modules["__main__"]
    spec, file = getattr(main, "__spec__", None), getattr(main, "__file__", None)
    main.__spec__ = None
    if file is not None:
        del main.__file__
    try:
        yield
    finally:
        main.__spec__ = spec
        if file is not None:
            main.__file__ = file


class LocalExecutor(Executor):
    """Runs trials in parallel processes on this machine, with a live progress bar."""

    def __init__(self, max_parallel: int | None = None, cpus_per_trial: int | None = None,
                 trials_per_gpu: int = 1, timeout_min: float | None = None,
                 gpus: Sequence[str] | None = None) -> None:
        self.gpus = list(detect_gpus() if gpus is None else gpus)
        default = len(self.gpus) * trials_per_gpu if self.gpus else _cpus()
        self.max_parallel = max(1, max_parallel or default)
        self.cpus_per_trial = cpus_per_trial or max(1, _cpus() // self.max_parallel)
        self.trials_per_gpu = trials_per_gpu
        self.timeout_s = timeout_min * 60 if timeout_min else None

    @property
    def workers(self) -> int:
        return self.max_parallel

    def describe(self) -> str:
        gpus = f", GPUs {','.join(self.gpus)}" if self.gpus else ""
        return (f"local, {self.max_parallel} at once, {self.cpus_per_trial} CPU thread(s) "
                f"per trial{gpus}")

    def _env(self, slot: int, deadline: float | None) -> dict[str, str]:
        threads = str(self.cpus_per_trial)
        env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
               "SWEEPER_CPUS_PER_TRIAL": threads, "SWEEPER_SLOT": str(slot)}
        if self.gpus:
            env["CUDA_VISIBLE_DEVICES"] = self.gpus[slot % len(self.gpus)]
        if deadline is not None:
            env["SWEEPER_DEADLINE"] = f"{time.time() + (deadline - time.monotonic()):.3f}"
        env["SWEEPER_DRIVER_PID"] = str(os.getpid())
        env["SWEEPER_DRIVER_START"] = start_time(os.getpid()) or ""
        return env

    runs_here = True

    def submit(self, paths: SweepPaths, record: SweepRecord, trials: pa.Table) -> Submission:
        # The driver record (claimed by the caller under the lock) is the claim; the trial
        # processes start in wait().
        return Submission(tuple(trials.column("trial_id").to_pylist()), rows=trials)

    def launch_workers(self, paths: SweepPaths, record: SweepRecord, asker: Any) -> Submission:
        # Adaptive: this driver asks for a trial each time a slot frees up (see wait()).
        return Submission((), asker=asker)

    def wait(self, paths: SweepPaths, record: SweepRecord, submission: Submission,
             on_done: OnDone | None = None) -> LaunchResult:
        feed: _Feed = _Asked(submission.asker) if submission.asker is not None \
            else _Planned(submission.rows)
        modules = {taskref.module_of(v.task_fn) for v in record.variants}
        if self.gpus:
            # A task module may touch CUDA when imported; CUDA must first start in each trial,
            # after it has chosen its GPU. torch itself starts no CUDA on import.
            modules = {"torch"} if importlib.util.find_spec("torch") else set()
        os.environ["SWEEPER_PRELOAD"] = ",".join(sorted(m for m in modules if m))
        os.environ["SWEEPER_PRELOAD_SWEEP"] = str(paths.root)
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["sweeper.executors._forkserver_preload"])
        paths.logs_dir.mkdir(parents=True, exist_ok=True)
        run = _Run(paths, record, on_done)
        interrupted = False
        with SweepProgress(feed.total) as bar, run.signals.installed():
            try:
                self._loop(ctx, run, feed, bar)
            except KeyboardInterrupt:
                interrupted = True
        return LaunchResult(run.states, interrupted, waited=True)

    def _loop(self, ctx: Any, run: _Run, feed: _Feed, bar: SweepProgress) -> None:
        running: dict[int, _Running] = {}
        try:
            while True:
                free = [s for s in range(self.max_parallel) if s not in running]
                while free and (row := feed.take({r.trial_id for r in running.values()})) \
                        is not None:
                    self._start(ctx, run, row, free.pop(0), running)
                if not running:
                    break
                bar.update(run.states, len(running))
                wait([r.process.sentinel for r in running.values()], timeout=0.5)
                self._reap(run, running)
                self._enforce_timeouts(running)
            bar.update(run.states, 0)
        except KeyboardInterrupt:  # later signals are ignored (DriverSignals) until it is done
            self._stop_all(run, running)
            with contextlib.suppress(OSError):  # a hung-up terminal
                bar.update(run.states, 0)
            raise

    def _start(self, ctx: Any, run: _Run, trial: pa.Table, slot: int,
               running: dict[int, _Running]) -> None:
        paths = run.paths
        row = trial.to_pylist()[0]
        now = time.monotonic()
        deadline = now + self.timeout_s if self.timeout_s else None
        prev = read_attempt(paths.result(int(row["trial_id"])))
        log = str(paths.local_log(slot))
        proc = ctx.Process(target=_child, args=(str(paths.root), row, trial.schema, log,
                                                 self._env(slot, deadline)), daemon=False)
        with run.signals.held(), _hidden_main():  # a stop now would lose track of the process
            proc.start()
            running[slot] = _Running(proc, int(row["trial_id"]), slot, now,
                                     dt.datetime.now(dt.timezone.utc), deadline, prev)

    def _reap(self, run: _Run, running: dict[int, _Running]) -> None:
        for slot, r in list(running.items()):
            if r.process.is_alive():
                continue
            r.process.join()
            path = run.paths.result(r.trial_id)
            state = read_state(path)
            if r.process.exitcode == _NO_ROW_EXIT:
                state = TrialState.LOST  # it said why in its log; resume reruns it
            elif not (state and state.is_settled()) and read_attempt(path) <= r.prev_attempt:
                state = self._orphan(run, r)  # its row is an earlier attempt's: it wrote none
            run.done(r.trial_id, state or TrialState.FAILED)
            del running[slot]

    def _orphan(self, run: _Run, r: _Running) -> TrialState:
        """Write the row a trial process could not write itself (killed, crashed)."""
        from sweeper.runner import write_orphan

        code = r.process.exitcode
        how = f"signal {signal.Signals(-code).name}" if code and code < 0 else f"exit code {code}"
        state = TrialState.FAILED
        if r.stop_sent:  # we stopped it: at its time limit, or because the sweep was cancelled
            timed_out = r.deadline is not None and time.monotonic() >= r.deadline
            state = TrialState.TIMEOUT if timed_out else TrialState.CANCELLED
        try:
            write_orphan(run.paths, run.record, r.trial_id, state,
                         f"the trial's process ended with {how} before writing a result "
                         f"(killed by the OS, e.g. out of memory, or by a user); see "
                         f"{run.paths.local_log(r.slot)}", r.started_at)
        except Exception as ex:  # the sweep goes on; the trial shows as lost
            _say(f"[sweeper] could not write the row of trial {r.trial_id} ({type(ex).__name__}: "
                 f"{ex}); it will show as lost, and resume reruns it")
            return TrialState.LOST
        return state

    def _enforce_timeouts(self, running: dict[int, _Running]) -> None:
        """SIGTERM once at the limit (a repeated one could hit the trial while it writes its
        ``timeout`` row), SIGKILL after the grace period."""
        now = time.monotonic()
        for r in running.values():
            if r.deadline is None or now < r.deadline:
                continue
            if not r.stop_sent:
                _signal_group(r.process.pid, signal.SIGTERM)
                r.stop_sent = True
            elif now > r.deadline + _GRACE_S:
                _signal_group(r.process.pid, signal.SIGKILL)

    def _stop_all(self, run: _Run, running: dict[int, _Running]) -> None:
        for r in running.values():  # first: after a hang-up, printing may fail
            _signal_group(r.process.pid, signal.SIGTERM)
            r.stop_sent = True
        _say(f"\n[sweeper] interrupted: stopping {len(running)} running trial(s)...")
        end = time.monotonic() + _GRACE_S
        while running and time.monotonic() < end:
            wait([r.process.sentinel for r in running.values()], timeout=0.2)
            self._reap(run, running)
        for r in running.values():
            _signal_group(r.process.pid, signal.SIGKILL)
        for r in running.values():
            r.process.join()
        self._reap(run, running)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal the trial's process group (it and any workers it started)."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        # Not yet its own group leader (it has not reached setpgid): signal it alone.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _say(line: str) -> None:
    with contextlib.suppress(OSError):  # a closed terminal must not stop the cleanup
        print(line, file=sys.stderr, flush=True)


class _Run:
    """One wait(): the sweep, and the states of the trials that ended so far."""

    def __init__(self, paths: SweepPaths, record: SweepRecord, on_done: OnDone | None) -> None:
        self.paths, self.record, self.on_done = paths, record, on_done
        self.states: Counter[TrialState] = Counter()
        self.signals = DriverSignals()

    def done(self, trial_id: int, state: TrialState) -> None:
        self.states[state] += 1
        if self.on_done is not None:
            self.on_done(trial_id, state)


class _Feed:
    """Where the next trial comes from when a slot frees up."""

    total = 0

    def take(self, running: set[int]) -> pa.Table | None:
        """The next trial's row, or None when there is none now."""
        raise NotImplementedError


class _Planned(_Feed):
    """The rows claimed up front (grid, random, qmc, and resumed trials)."""

    def __init__(self, rows: pa.Table | None) -> None:
        assert rows is not None
        self.rows, self.next, self.total = rows, 0, rows.num_rows

    def take(self, running: set[int]) -> pa.Table | None:
        if self.next >= self.rows.num_rows:
            return None
        self.next += 1
        return self.rows.slice(self.next - 1, 1)


class _Asked(_Feed):
    """Adaptive: ask the study for each trial as a slot frees up, until the budget is spent.
    Asked again only after a trial ends (which may hand back a lost trial's budget). A
    cross-validated config comes as several fold rows: they start, in parallel as slots
    free up, before the next config is asked."""

    def __init__(self, asker: Any) -> None:
        self.asker = asker
        folds = asker.record.search.cross_validation
        self.total = asker.to_ask() * (folds.n_folds if folds.enabled else 1)
        self.spent_at = -1  # trials running when the budget was last found spent
        self.broken = False
        self.pending: list[pa.Table] = []  # fold rows of an asked config, not started yet

    def take(self, running: set[int]) -> pa.Table | None:
        if self.pending:
            return self.pending.pop(0)
        if self.spent_at == len(running) or self.broken:
            return None
        try:
            rows = self.asker.ask(active_here=running)
        except SweeperError:
            raise
        except Exception as ex:  # the storage went away: let the running trials finish
            self.broken = True
            _say(f"[sweeper] could not ask the study ({type(ex).__name__}: {ex}); no new trial "
                 "starts, the running ones finish, and `sweeper resume` goes on later")
            return None
        self.spent_at = len(running) if rows is None else -1
        if rows is None:
            return None
        self.pending = [rows.slice(i, 1) for i in range(1, rows.num_rows)]
        return rows.slice(0, 1)
