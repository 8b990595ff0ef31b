"""Local multirun: each trial in its own process, at most ``max_parallel`` at once.

Trial processes are forked from a fork server that imported the runner and the
task's module once (see ``sweeper._preload``), so a trial starts in milliseconds.
Each trial still gets a fresh process: a crash, a leak or a SIGKILL touches only
that trial. Each slot keeps one log file, appended to by its trials, and owns one
GPU (``CUDA_VISIBLE_DEVICES``) when there are GPUs.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.util
import json
import multiprocessing as mp
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

import pyarrow as pa
from omegaconf import DictConfig

from sweeper import taskref
from sweeper.console import err
from sweeper.executors._base import Executor, LaunchResult
from sweeper.paths import SweepPaths
from sweeper.progress import SweepProgress
from sweeper.results import Status, read_attempt, read_status

__all__ = ["LocalExecutor", "cancel_local", "claim_driver", "detect_gpus", "live_driver",
           "release_driver"]

_GRACE_S = 10.0


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
    """Body of a trial process: own session, own log slot, then the runner."""
    os.setsid()  # Ctrl-C in the terminal reaches the driver only; it stops trials itself.
    os.environ.update(env)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    print(f"[sweeper] trial {row['trial_id']} starts (pid {os.getpid()})", flush=True)
    from sweeper.runner import exit_code, run_rows

    code = exit_code(run_rows(Path(root), pa.Table.from_pylist([row], schema=schema)), 1)
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

    blocking = True

    def __init__(self, max_parallel: int | None = None, cpus_per_trial: int | None = None,
                 trials_per_gpu: int = 1, timeout_min: float | None = None,
                 gpus: Sequence[str] | None = None) -> None:
        self.gpus = list(detect_gpus() if gpus is None else gpus)
        default = len(self.gpus) * trials_per_gpu if self.gpus else _cpus()
        self.max_parallel = max(1, max_parallel or default)
        self.cpus_per_trial = cpus_per_trial or max(1, _cpus() // self.max_parallel)
        self.trials_per_gpu = trials_per_gpu
        self.timeout_s = timeout_min * 60 if timeout_min else None

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
        return env

    def launch(self, paths: SweepPaths, sweep: DictConfig, trials: pa.Table) -> LaunchResult:
        rows = trials.to_pylist()
        modules = {taskref.module_of(str(v.task_fn)) for v in sweep.variants}
        if self.gpus:
            # A task module may touch CUDA when imported; CUDA must first start in each trial,
            # after it has chosen its GPU. torch itself starts no CUDA on import.
            modules = {"torch"} if importlib.util.find_spec("torch") else set()
        os.environ["SWEEPER_PRELOAD"] = ",".join(sorted(m for m in modules if m))
        os.environ["SWEEPER_PRELOAD_SWEEP"] = str(paths.root)
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["sweeper._preload"])
        paths.logs_dir.mkdir(parents=True, exist_ok=True)
        result = LaunchResult()
        with SweepProgress(len(rows)) as bar, _stop_on_sigterm():
            try:
                self._loop(ctx, paths, trials.schema, deque(rows), result, bar)
            except KeyboardInterrupt:
                result.interrupted = True
        return result

    def _loop(self, ctx: Any, paths: SweepPaths, schema: pa.Schema, queue: deque[dict[str, Any]],
              result: LaunchResult, bar: SweepProgress) -> None:
        running: dict[int, _Running] = {}
        try:
            while queue or running:
                free = [s for s in range(self.max_parallel) if s not in running]
                while queue and free:
                    self._start(ctx, paths, schema, queue.popleft(), free.pop(0), running)
                bar.update(result.statuses, len(running))
                wait([r.process.sentinel for r in running.values()], timeout=0.5)
                self._reap(paths, running, result)
                self._enforce_timeouts(running)
            bar.update(result.statuses, 0)
        except KeyboardInterrupt:
            self._stop_all(paths, running, result)
            bar.update(result.statuses, 0)
            raise

    def _start(self, ctx: Any, paths: SweepPaths, schema: pa.Schema, row: dict[str, Any],
               slot: int, running: dict[int, _Running]) -> None:
        now = time.monotonic()
        deadline = now + self.timeout_s if self.timeout_s else None
        prev = read_attempt(paths.result(int(row["trial_id"])))
        log = str(paths.local_log(slot))
        proc = ctx.Process(target=_child, args=(str(paths.root), row, schema, log,
                                                 self._env(slot, deadline)), daemon=False)
        with _hidden_main():
            proc.start()
        running[slot] = _Running(proc, int(row["trial_id"]), slot, now,
                                 dt.datetime.now(dt.timezone.utc), deadline, prev)

    def _reap(self, paths: SweepPaths, running: dict[int, _Running], result: LaunchResult) -> None:
        for slot, r in list(running.items()):
            if r.process.is_alive():
                continue
            r.process.join()
            path = paths.result(r.trial_id)
            status = read_status(path)
            if status != Status.COMPLETED.value and read_attempt(path) <= r.prev_attempt:
                status = self._orphan(paths, r)  # its row is an earlier attempt's: it wrote none
            result.statuses[status or "failed"] += 1
            del running[slot]

    def _orphan(self, paths: SweepPaths, r: _Running) -> str:
        """Write the row a trial process could not write itself (killed, crashed)."""
        from sweeper.runner import write_orphan

        code = r.process.exitcode
        how = f"signal {signal.Signals(-code).name}" if code and code < 0 else f"exit code {code}"
        status = Status.FAILED
        if r.stop_sent:  # we stopped it: at its time limit, or because the sweep was cancelled
            timed_out = r.deadline is not None and time.monotonic() >= r.deadline
            status = Status.TIMEOUT if timed_out else Status.CANCELLED
        write_orphan(paths, r.trial_id, status,
                     f"the trial's process ended with {how} before writing a result (killed "
                     f"by the OS, e.g. out of memory, or by a user); see {paths.local_log(r.slot)}",
                     r.started_at)
        return status.value

    def _enforce_timeouts(self, running: dict[int, _Running]) -> None:
        now = time.monotonic()
        for r in running.values():
            if r.deadline is None or now < r.deadline:
                continue
            _signal_group(r.process.pid, signal.SIGKILL if r.stop_sent and
                          now > r.deadline + _GRACE_S else signal.SIGTERM)
            r.stop_sent = True

    def _stop_all(self, paths: SweepPaths, running: dict[int, _Running],
                  result: LaunchResult) -> None:
        print(f"\n[sweeper] interrupted: stopping {len(running)} running trial(s)...",
              file=sys.stderr, flush=True)
        for r in running.values():
            _signal_group(r.process.pid, signal.SIGTERM)
            r.stop_sent = True
        end = time.monotonic() + _GRACE_S
        while running and time.monotonic() < end:
            wait([r.process.sentinel for r in running.values()], timeout=0.2)
            self._reap(paths, running, result)
        for r in running.values():
            _signal_group(r.process.pid, signal.SIGKILL)
        for r in running.values():
            r.process.join()
        self._reap(paths, running, result)


def _start_time(pid: int) -> str | None:
    """The process's start time since boot (/proc): with the pid, it names one process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def live_driver(paths: SweepPaths) -> dict[str, Any] | None:
    """The local sweep process running this dir, if one is alive (on this host)."""
    try:
        info = json.loads(paths.local_driver.read_text())
    except (OSError, ValueError):
        return None
    if info.get("host") != socket.gethostname():
        return info  # another host's: it cannot be checked from here, so it counts as alive
    pid = int(info.get("pid", -1))
    if _start_time(pid) != info.get("start"):
        return None  # gone, or the pid was reused by another process
    return info


def claim_driver(paths: SweepPaths) -> None:
    paths.logs_dir.mkdir(parents=True, exist_ok=True)
    paths.local_driver.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                              "start": _start_time(os.getpid())}))


def release_driver(paths: SweepPaths) -> None:
    paths.local_driver.unlink(missing_ok=True)


def cancel_local(paths: SweepPaths) -> int:
    """Ask the process running a local sweep to stop (as Ctrl-C would); returns 0 or 1."""
    info = live_driver(paths)
    if info is None:
        return 0
    if info.get("host") != socket.gethostname():
        err.print(f"[sweeper] a local sweep runs this dir on host {info.get('host')}: run "
                  "`sweeper cancel` there")
        return 0
    os.kill(int(info["pid"]), signal.SIGTERM)
    return 1


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal the trial's process group (it and any workers it started)."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        # Not yet its own group leader (it has not reached setsid): signal it alone.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


class _stop_on_sigterm:
    """Treat SIGTERM to the driver like Ctrl-C: stop trials cleanly, keep the dir resumable."""

    def __enter__(self) -> None:
        self._main = threading.current_thread() is threading.main_thread()
        if self._main:
            self._old = signal.signal(signal.SIGTERM, signal.default_int_handler)

    def __exit__(self, *exc: object) -> None:
        if self._main:
            signal.signal(signal.SIGTERM, self._old)
