"""SLURM: the trial table becomes throttled job arrays, and the command returns at once.

Each array task runs ``python -m sweeper.worker`` on ``trials_per_task`` rows of the table,
found from a launch record and its array index: nothing is pickled per trial or per task,
and each task writes one log. Arrays are split to the cluster's MaxArraySize (each starts
at index 0, with an offset into the launch's tasks) and spread over parallel chains of
``afterany`` dependencies whose throttles add up to ``array_parallelism`` (see
:func:`chains`), so the sweep runs that many tasks at once, no more. The sbatch script is
rendered with submitit and checked with ``sbatch --test-only`` before anything is
submitted.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa

from sweeper.console import err, shell_path
from sweeper.errors import ConfigError, SweeperError
from sweeper.executors._base import Executor, LaunchResult, OnDone, Submission
from sweeper.executors.slurm.queue import max_array_size, not_on_path, queue_states, scancel
from sweeper.executors.slurm.records import (
    ArrayRecord,
    Launch,
    compress_ids,
    next_number,
    read_launches,
)
from sweeper.executors.slurm.script import check_sbatch_values, render_script
from sweeper.paths import SweepPaths, atomic_path
from sweeper.record import SweepRecord
from sweeper.schema import SLURM_TIMEOUT_MIN, ClusterConf
from sweeper.state import TrialState

__all__ = ["SlurmExecutor", "cancel_arrays"]


def _checked_before(paths: SweepPaths, record: SweepRecord) -> bool:
    """True inside an array task of the plain sbatch path (each task plans the sweep) when
    the dir's record already holds this sweep with these settings: the task that wrote it
    checked them, since a record is saved only after the check passed. Asking the controller
    again (scontrol, sbatch --test-only) in each of a thousand tasks only loads it."""
    if not os.environ.get("SLURM_ARRAY_TASK_ID") or not paths.sweep_yaml.is_file():
        return False
    try:
        old = SweepRecord.load(paths)
    except SweeperError:
        return False
    return (old.fingerprint, old.cluster, old.python) == (record.fingerprint, record.cluster,
                                                           record.python)


def _one_line(text: str) -> str:
    return "; ".join(ln.strip() for ln in text.strip().splitlines() if ln.strip()) or "no output"


class SlurmExecutor(Executor):
    """Submits trials as job arrays through sbatch; see the module docstring."""

    _checked = False  # set by check(): launch() need not ask sbatch again

    def __init__(self, cluster: ClusterConf) -> None:
        self.cluster = cluster
        for name in ("array_parallelism", "trials_per_task", "cpus_per_task", "max_array_size"):
            value = getattr(cluster, name)
            if value is not None and value < 1:
                raise ConfigError(f"cluster.{name} must be at least 1, got {value}")
        check_sbatch_values(cluster)
        if cluster.mem_gb <= 0:
            raise ConfigError(f"cluster.mem_gb must be positive, got {cluster.mem_gb}; e.g. 4")
        limit_min = cluster.timeout_min or SLURM_TIMEOUT_MIN  # the limit the script sends
        if limit_min * 60 <= cluster.signal_delay_s:
            raise ConfigError(
                f"cluster.signal_delay_s={cluster.signal_delay_s} must be shorter than the time "
                f"limit cluster.timeout_min={limit_min} (x60 s); lower the delay"
            )

    @property
    def workers(self) -> int:
        return min(self.cluster.workers or self.cluster.array_parallelism,
                   self.cluster.array_parallelism)

    def describe(self) -> str:
        c = self.cluster
        where = f"partition {c.partition}" if c.partition else "the default partition"
        return (f"SLURM ({where}), at most {c.array_parallelism} at once, {c.trials_per_task} "
                f"trial(s) per array task, {c.mem_gb:g} GB and {c.cpus_per_task} CPU(s) per task")

    def script(self, paths: SweepPaths, launch: int, python: str) -> str:
        """The sbatch script of a launch; its argument is the chunk's offset into the tasks."""
        return render_script(self.cluster, paths, launch, python)

    def _write_script(self, paths: SweepPaths, number: int, python: str) -> Path:
        path = paths.launch_script(number)
        with atomic_path(path) as tmp:
            tmp.write_text(self.script(paths, number, python))
        return path

    def _sbatch(self, paths: SweepPaths, argv: list[str]) -> subprocess.CompletedProcess[str]:
        from submitit.helpers import clean_env

        # Inside a SLURM job (the sbatch path) the job's own SLURM_* variables must not leak.
        with clean_env():
            try:
                return subprocess.run(["sbatch", "--parsable", *argv], cwd=paths.root,
                                      capture_output=True, text=True, timeout=120, check=False)
            except FileNotFoundError:
                raise ConfigError(not_on_path("sbatch")) from None
            except (OSError, subprocess.TimeoutExpired) as ex:
                raise SweeperError(f"sbatch could not run: {ex}") from None

    def validate(self, paths: SweepPaths, script: Path, n_tasks: int) -> None:
        """``sbatch --test-only``: the controller checks the script and settings; nothing runs."""
        r = self._sbatch(paths, ["--test-only", f"--array=0-{max(0, n_tasks - 1)}", str(script), "0"])
        if r.returncode != 0:
            raise ConfigError(f"sbatch rejects the settings: {_one_line(r.stderr)}; "
                              f"fix the cluster.* settings (script: {script})")

    def check(self, paths: SweepPaths, record: SweepRecord, n_trials: int) -> None:
        """Render the script the next launch would use and have sbatch check it (--test-only)."""
        if _checked_before(paths, record):
            return
        tasks = -(-n_trials // self.cluster.trials_per_task)
        tasks = min(tasks, max_array_size(), self.cluster.max_array_size or tasks)
        paths.launches_dir.mkdir(parents=True, exist_ok=True)
        script = self._write_script(paths, 0, record.python or sys.executable)
        self.validate(paths, script, tasks)
        self._checked = True
        err.print(f"[sweeper] sbatch accepts the settings (checked with --test-only): {script}")

    def submit(self, paths: SweepPaths, record: SweepRecord, trials: pa.Table) -> Submission:
        """Write the launch record, then submit its arrays (see :func:`chains`)."""
        c = self.cluster
        ids = trials.column("trial_id").to_pylist()
        chunk = min(max_array_size(), c.max_array_size or sys.maxsize)
        launch = Launch(next_number(paths), compress_ids(ids), c.trials_per_task, chunk,
                        c.max_retries, c.signal_delay_s)
        jobs = self._submit_launch(paths, record, launch)
        err.print(f"[sweeper] submitted {len(ids)} trials as {len(jobs)} array(s): {', '.join(jobs)} "
                  f"({launch.n_tasks} tasks, at most {c.array_parallelism} at once)")
        err.print(f"[sweeper] sweep dir: {paths.root}")
        return Submission(tuple(ids), jobs)

    def launch_workers(self, paths: SweepPaths, record: SweepRecord, asker: Any) -> Submission:
        """Adaptive: an array of workers, each asking the study for trials until it has
        ``n_trials``; ``array_parallelism`` of them run at once."""
        c = self.cluster
        left = asker.to_ask()
        n = max(1, min(c.workers or c.array_parallelism, left))
        chunk = min(max_array_size(), c.max_array_size or sys.maxsize)
        launch = Launch(next_number(paths), [], 1, chunk, c.max_retries, c.signal_delay_s,
                        workers=n)
        jobs = self._submit_launch(paths, record, launch)
        err.print(f"[sweeper] submitted {n} worker(s) as {len(jobs)} array(s): {', '.join(jobs)} "
                  f"(at most {c.array_parallelism} at once); they ask for the {left} trial(s) "
                  "left, each as one frees up")
        err.print(f"[sweeper] sweep dir: {paths.root}")
        return Submission((), jobs)

    def _submit_launch(self, paths: SweepPaths, record: SweepRecord, launch: Launch
                       ) -> tuple[str, ...]:
        """Write the launch record, then its arrays (see :func:`chains`)."""
        c = self.cluster
        number, chunk = launch.number, launch.chunk_tasks
        paths.logs_dir.mkdir(parents=True, exist_ok=True)
        script = self._write_script(paths, number, record.python or sys.executable)
        if not self._checked:  # resume comes here without check()
            self.validate(paths, script, min(chunk, launch.n_tasks))
        launch.write(paths)  # before sbatch: a crash in between leaves a record, not orphans
        previous: dict[int, str] = {}
        for first, n, chain, throttle in chains(launch.n_tasks, chunk, c.array_parallelism):
            argv = [f"--array=0-{n - 1}%{min(n, throttle)}"]
            if chain in previous:
                argv.append(f"--dependency=afterany:{previous[chain]}")
            r = self._sbatch(paths, [*argv, str(script), str(first)])
            if r.returncode != 0:
                launch.write(paths)
                raise SweeperError(
                    f"sbatch failed for tasks {first}..{first + n - 1} of launch {number}: "
                    f"{_one_line(r.stderr)}; {len(launch.arrays)} array(s) were submitted. Submit the "
                    f"rest later with `sweeper resume {shell_path(paths.root)}`"
                )
            previous[chain] = r.stdout.strip().split(";")[0]
            launch.arrays.append(ArrayRecord(previous[chain], first, n))
            launch.write(paths)
        return tuple(a.job_id for a in launch.arrays)

    def wait(self, paths: SweepPaths, record: SweepRecord, submission: Submission,
             on_done: OnDone | None = None, poll_interval_s: float = 5.0) -> LaunchResult:
        """Block with the local executor's progress bar until none of the trials is active.

        Holds no lock. When squeue keeps failing, it says so each minute and gives up after
        ``queue_patience_s``: waiting forever on an unreadable queue helps nobody.
        """
        from sweeper.progress import SweepProgress
        from sweeper.status import SweepWatcher

        what = f"array(s) {', '.join(submission.job_ids)}" if submission.job_ids else "them"
        err.print(f"[sweeper] waiting for {what} (Ctrl-C stops waiting, not the trials)")
        wanted = set(submission.trial_ids)
        # Adaptive workers ask for their trials as they go: every trial of the sweep counts,
        # and the wait ends when the workers have left the queue too.
        workers = not wanted and bool(submission.job_ids)
        total = int(record.search.n_trials or 0) if workers else len(wanted)
        watcher = SweepWatcher(paths)
        told: dict[int, TrialState] = {}
        blind_since: float | None = None
        with SweepProgress(total) as bar:
            try:
                while True:
                    state = watcher.poll()
                    mine = {t: s for t, s in state.states.items() if workers or t in wanted}
                    _tell(mine, told, on_done)
                    bar.update(Counter(s for s in mine.values() if s.is_finished()),
                               sum(s is TrialState.RUNNING for s in mine.values()))
                    if workers and _still_queued(submission.job_ids):
                        time.sleep(poll_interval_s)
                        continue
                    if state.queue_ok and not any(s.is_active() for s in mine.values()):
                        return LaunchResult(Counter(mine.values()), job_ids=submission.job_ids,
                                            waited=True)
                    blind_since = self._blind(state.queue_ok, blind_since, paths)
                    time.sleep(poll_interval_s)
            except KeyboardInterrupt:
                err.print(f"[sweeper] stopped waiting; the arrays keep running: "
                          f"sweeper status {shell_path(paths.root)} --watch")
                return LaunchResult(Counter(told.values()), True, submission.job_ids, waited=True)

    queue_patience_s = 1800.0

    def _blind(self, queue_ok: bool, since: float | None, paths: SweepPaths) -> float | None:
        """Track how long squeue has failed; say so each minute, give up after the patience."""
        if queue_ok:
            return None
        now = time.monotonic()
        since = since if since is not None else now
        if now - since >= self.queue_patience_s:
            raise SweeperError(
                f"squeue has failed for {now - since:.0f}s, so the trials' states are unknown; "
                f"stopped waiting (the arrays are untouched). Check later with "
                f"`sweeper status {shell_path(paths.root)}`")
        if int(now - since) // 60 != int(now - since - 5) // 60 or now == since:
            err.print(f"[sweeper] squeue fails ({now - since:.0f}s so far); still waiting")
        return since


def _still_queued(job_ids: tuple[str, ...]) -> bool:
    queued = queue_states(list(job_ids))
    return queued is None or bool(queued)


def _tell(mine: dict[int, TrialState], told: dict[int, TrialState], on_done: OnDone | None) -> None:
    """Call ``on_done`` once for each trial that has finished since the last poll."""
    for tid, s in mine.items():
        if s.is_finished() and tid not in told:
            told[tid] = s
            if on_done is not None:
                on_done(tid, s)


def chains(n_tasks: int, chunk: int, parallelism: int) -> list[tuple[int, int, int, int]]:
    """Split a launch's tasks into arrays of at most ``chunk`` tasks, spread over parallel
    chains, so that ``parallelism`` tasks run at once across all of them.

    Returns (first task, tasks, chain, throttle) per array, in submission order. Arrays of
    one chain run one after another (``afterany``); the chains run side by side, their
    throttles adding up to ``parallelism`` (less only when fewer tasks exist). As many chains
    as allowed: a small throttle per chain leaves fewer slots idle while an array's last
    tasks finish, and a single chain of arrays smaller than the throttle would run fewer
    tasks at once than the user allowed.

    >>> chains(6, 2, 4)
    [(0, 2, 0, 2), (2, 2, 1, 1), (4, 2, 2, 1)]
    >>> chains(25, 11, 2)
    [(0, 11, 0, 1), (11, 11, 1, 1), (22, 3, 0, 1)]
    >>> chains(5, 4, 4)  # the small last array cannot use 2 slots: its chain's go to the other
    [(0, 4, 0, 3), (4, 1, 1, 1)]
    """
    firsts = list(range(0, n_tasks, chunk))
    n_chains = max(1, min(parallelism, len(firsts)))
    sizes = [min(chunk, n_tasks - first) for first in firsts]
    throttles = _spread(parallelism, [max(sizes[j::n_chains], default=1) for j in range(n_chains)])
    return [(first, sizes[i], i % n_chains, throttles[i % n_chains])
            for i, first in enumerate(firsts)]


def _spread(total: int, caps: list[int]) -> list[int]:
    """``total`` split as evenly as the caps allow (a chain can use at most its largest
    array's size): filled smallest cap first, so what a small chain cannot use goes on."""
    out = [0] * len(caps)
    left = total
    for k, j in enumerate(sorted(range(len(caps)), key=caps.__getitem__)):
        out[j] = min(caps[j], -(-left // (len(caps) - k)))
        left -= out[j]
    return out


def cancel_arrays(paths: SweepPaths) -> tuple[int, str | None]:
    """scancel the sweep's arrays that still have queued tasks.

    Returns (arrays cancelled, why scancel failed or None)."""
    jobs = [a.job_id for launch in read_launches(paths) for a in launch.arrays]
    queued = queue_states(jobs) if jobs else {}
    active = sorted({element.split("_")[0] for element in (queued or {})}) if queued is not None else jobs
    failure = scancel(active)
    return (0 if failure else len(active)), failure
