"""Process lifecycle of local sweeps, from the outside: trials die with their driver, resume
never starts a trial that still runs, status sees running trials, stale driver records,
time limits, failed row writes, and locks that say what they wait for.

Real processes throughout. The ``procs`` fixture ends every process a test started or found
(trials, by their attempt markers), by pid and start time, also when the test fails.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, TESTS, result_rows, run_cli
from sweeper.context import TrialInterrupted
from sweeper.errors import SweepDirError
from sweeper.locks import dir_lock
from sweeper.runner import StopGuard

HOLD = ["cluster=local", "task.fn=lifecycle_tasks:hold", "search.space={}"]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)])}
ENV.pop("SLURM_JOB_ID", None)


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def start_of(pid: int) -> str:
    stat = _stat(pid)
    assert stat is not None, f"pid {pid} is gone"
    return stat[19]


def running(pid: int, start: str) -> bool:
    """The process lives (a zombie has ended: it only waits to be reaped) and is the same one."""
    stat = _stat(pid)
    return stat is not None and stat[0] not in "ZX" and stat[19] == start


def wait_until(check: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    end = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(0.05)


def markers(sweep_dir: Path) -> dict[int, tuple[int, str]]:
    """trial_id -> (pid, pid start) of each attempt marker."""
    found = {}
    for path in (sweep_dir / "attempts").glob("trial-*.json"):
        try:
            m = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        found[int(m["trial_id"])] = (int(m["pid"]), str(m["pid_start"]))
    return found


class Procs:
    """The processes of one test; :meth:`end` SIGKILLs those still alive."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.popens: list[subprocess.Popen[Any]] = []
        self.sweep_dirs: list[Path] = []
        self.files: list[Any] = []

    def spawn(self, *argv: str, name: str = "proc", **kw: Any) -> subprocess.Popen[Any]:
        """Start ``argv``; its output goes to ``NAME.out``/``NAME.err`` unless ``kw`` says."""
        for stream in ("stdout", "stderr"):
            if stream not in kw:
                kw[stream] = (self.tmp / f"{name}.{stream[3:]}").open("w")
                self.files.append(kw[stream])
        p = subprocess.Popen(list(argv), cwd=ROOT, env=ENV, text=True, **kw)
        self.popens.append(p)
        return p

    def sweep(self, *args: str, name: str = "driver") -> subprocess.Popen[Any]:
        """``python -m sweeper ARGS`` in the background (the driver)."""
        for a in args:
            if a.startswith("hydra.sweep.dir="):
                self.sweep_dirs.append(Path(a.split("=", 1)[1]))
        return self.spawn(sys.executable, "-m", "sweeper", *args, name=name)

    def text(self, name: str, stream: str = "err") -> str:
        return (self.tmp / f"{name}.{stream}").read_text()

    def trials(self, sweep_dir: Path, n: int) -> dict[int, tuple[int, str]]:
        """Wait until ``n`` trials run (their markers name live processes)."""
        wait_until(lambda: len(markers(sweep_dir)) == n and all(
            running(*m) for m in markers(sweep_dir).values()), f"{n} running trials", 90)
        return markers(sweep_dir)

    def end(self) -> None:
        for p in self.popens:
            if p.poll() is None:
                p.kill()
            p.wait()
        for sweep_dir in self.sweep_dirs:  # trials that outlived their driver
            for pid, start in markers(sweep_dir).values():
                if running(pid, start):
                    os.kill(pid, signal.SIGKILL)
        for f in self.files:
            f.close()


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    p = Procs(tmp_path)
    try:
        yield p
    finally:
        p.end()


def hold_sweep(tmp_path: Path, n: int, *extra: str) -> tuple[list[str], Path]:
    """Arguments of a sweep of ``n`` trials, all at once, that run until ``tmp_path/go`` exists."""
    (tmp_path / "m").mkdir(exist_ok=True)
    sweep_dir = tmp_path / "s"
    return [*HOLD, f"+x=range(0,{n})", f"+markers={tmp_path / 'm'}", f"+go={tmp_path / 'go'}",
            f"cluster.max_parallel={n}", f"hydra.sweep.dir={sweep_dir}", *extra], sweep_dir


def ran(tmp_path: Path) -> list[int]:
    """The x of every trial start, sorted (one entry per start)."""
    return sorted(int(p.name.split("-")[1]) for p in (tmp_path / "m").glob("ran-*"))


def statuses(sweep_dir: Path) -> dict[int, str]:
    return {i: row["status"] for i, row in result_rows(sweep_dir).items()}


def write_driver(sweep_dir: Path, pid: int, host: str, start: str) -> Path:
    path = sweep_dir / "logs" / "local-driver.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": pid, "host": host, "start": start}))
    return path


def dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


# 1. Trials die with their driver ---------------------------------------------------------

@pytest.mark.slow
def test_trials_die_when_the_driver_is_killed_and_resume_reruns_them(procs: Procs,
                                                                     tmp_path: Path) -> None:
    # Trial 2 ignores SIGTERM: with no driver left to SIGKILL it, it must end itself.
    args, sweep_dir = hold_sweep(tmp_path, 3, "+stubborn_from=2")
    driver = procs.sweep(*args)
    trials = procs.trials(sweep_dir, 3)
    wait_until(lambda: len(ran(tmp_path)) == 3, "the tasks to start")
    driver.kill()  # SIGKILL: no cleanup of its own (as an OOM kill)
    driver.wait(timeout=10)
    wait_until(lambda: not running(*trials[0]) and not running(*trials[1]), "trials 0, 1", 8)
    assert statuses(sweep_dir) == {0: "cancelled", 1: "cancelled"}  # each wrote its own row
    wait_until(lambda: not running(*trials[2]), "the stubborn trial's SIGKILL", 10 + 5)
    st = run_cli("status", str(sweep_dir))  # it had no chance to write a row
    assert re.search(r"lost\W+1\b", st.stdout) and "running" not in st.stdout, st.stdout
    (tmp_path / "go").touch()
    r = run_cli("resume", str(sweep_dir), timeout=120)  # the dead driver's record is stale
    assert r.returncode == 0, r.stderr
    assert statuses(sweep_dir) == dict.fromkeys(range(3), "completed")
    assert ran(tmp_path) == [0, 0, 1, 1, 2, 2]


@pytest.mark.slow
def test_hangup_stops_trials_with_cancelled_rows(procs: Procs, tmp_path: Path) -> None:
    args, sweep_dir = hold_sweep(tmp_path, 2)
    driver = procs.sweep(*args)
    trials = procs.trials(sweep_dir, 2)
    driver.send_signal(signal.SIGHUP)  # an SSH session that closed
    assert driver.wait(timeout=30) == 130, procs.text("driver")
    assert not any(running(*t) for t in trials.values())
    assert statuses(sweep_dir) == {0: "cancelled", 1: "cancelled"}
    assert "sweeper resume" in procs.text("driver")
    assert not (sweep_dir / "logs" / "local-driver.json").exists()


@pytest.mark.slow
def test_second_ctrl_c_during_cleanup_leaves_no_trial_behind(procs: Procs,
                                                             tmp_path: Path) -> None:
    # The trials ignore SIGTERM, so cleanup lasts its whole grace period before SIGKILL.
    args, sweep_dir = hold_sweep(tmp_path, 2, "+stubborn_from=0")
    driver = procs.sweep(*args)
    trials = procs.trials(sweep_dir, 2)
    wait_until(lambda: len(ran(tmp_path)) == 2, "the tasks to ignore SIGTERM")
    driver.send_signal(signal.SIGINT)
    wait_until(lambda: "interrupted: stopping 2" in procs.text("driver"), "the cleanup", 10)
    driver.send_signal(signal.SIGINT)
    time.sleep(0.3)
    driver.send_signal(signal.SIGTERM)
    assert driver.wait(timeout=60) == 130, procs.text("driver")
    assert not any(running(*t) for t in trials.values())
    rows = result_rows(sweep_dir)
    assert {r["status"] for r in rows.values()} == {"cancelled"} and len(rows) == 2
    assert all("SIGKILL" in r["error"] for r in rows.values())


# 2. resume never starts a trial that is still running -----------------------------------

@pytest.mark.slow
def test_resume_never_starts_a_trial_that_still_runs(procs: Procs, tmp_path: Path) -> None:
    args, sweep_dir = hold_sweep(tmp_path, 3)
    (tmp_path / "go").touch()
    assert run_cli("plan", *args).returncode == 0
    # A trial that outlived its driver: a live process with trial 1's attempt marker.
    orphan = procs.spawn("sleep", "120", name="orphan")
    marker = sweep_dir / "attempts" / "trial-000001.json"
    marker.parent.mkdir(parents=True)
    marker.write_text(json.dumps({
        "trial_id": 1, "attempt": 1, "host": socket.gethostname(), "pid": orphan.pid,
        "pid_start": start_of(orphan.pid), "element": None, "started_at": time.time()}))
    before = marker.read_bytes()
    r = run_cli("resume", str(sweep_dir), timeout=120)
    assert r.returncode == 0, r.stderr
    assert "1 running" in r.stderr and "running 2 of 3 trials" in r.stderr
    assert marker.read_bytes() == before and ran(tmp_path) == [0, 2]
    assert statuses(sweep_dir) == {0: "completed", 2: "completed"}
    st = run_cli("status", str(sweep_dir))
    assert re.search(r"running\W+1\b", st.stdout), st.stdout
    orphan.kill()  # it dies without a row: lost, and resume runs it now
    orphan.wait()
    assert re.search(r"lost\W+1\b", run_cli("status", str(sweep_dir)).stdout)
    r = run_cli("resume", str(sweep_dir), timeout=120)
    assert r.returncode == 0 and ran(tmp_path) == [0, 1, 2], r.stderr
    assert result_rows(sweep_dir)[1]["attempt"] == 2


# 3. status sees running local trials ----------------------------------------------------

@pytest.mark.slow
def test_status_lists_running_local_trials_and_watch_waits(procs: Procs, tmp_path: Path) -> None:
    args, sweep_dir = hold_sweep(tmp_path, 2)
    driver = procs.sweep(*args)
    procs.trials(sweep_dir, 2)
    r = run_cli("status", str(sweep_dir))
    assert r.returncode == 0, r.stderr
    assert re.search(r"running\W+2\b", r.stdout) and "not submitted" not in r.stdout, r.stdout
    assert "running: trials 0, 1" in r.stderr
    watch = procs.spawn(sys.executable, "-m", "sweeper", "status", str(sweep_dir), "--watch",
                        "--poll-interval-s", "0.3", name="watch")
    wait_until(lambda: procs.text("watch", "out").count(": 2 trials") >= 3, "3 polls", 60)
    assert watch.poll() is None  # still watching: the trials run
    (tmp_path / "go").touch()
    assert driver.wait(timeout=60) == 0, procs.text("driver")
    assert watch.wait(timeout=30) == 0
    last = procs.text("watch", "out").rsplit(": 2 trials", 1)[1]
    assert re.search(r"completed\W+2\b", last), last


# 4. Stale driver records ----------------------------------------------------------------

@pytest.mark.slow
def test_resume_with_a_stale_driver_record(tmp_path: Path) -> None:
    args, sweep_dir = hold_sweep(tmp_path, 2)
    (tmp_path / "go").touch()
    assert run_cli("plan", *args).returncode == 0
    # (a) another host's record cannot be checked from here: refused, with the way out
    record = write_driver(sweep_dir, 4242, "elsewhere.example", "123")
    r = run_cli("resume", str(sweep_dir))
    errors = [line for line in r.stderr.splitlines() if line.startswith("sweeper: error:")]
    assert r.returncode == 2 and len(errors) == 1, r.stderr
    assert "elsewhere.example" in errors[0] and f"delete {record}" in errors[0]
    assert "sweeper cancel" in errors[0] and "Traceback" not in r.stderr
    assert ran(tmp_path) == [] and not (sweep_dir / "results").is_dir()
    # (b) a dead driver on this host: resume proceeds
    write_driver(sweep_dir, dead_pid(), socket.gethostname(), "1")
    r = run_cli("resume", str(sweep_dir), timeout=120)
    assert r.returncode == 0, r.stderr
    assert statuses(sweep_dir) == {0: "completed", 1: "completed"}


@pytest.mark.slow
def test_cancel_with_a_stale_driver_record(procs: Procs, tmp_path: Path) -> None:
    args, sweep_dir = hold_sweep(tmp_path, 1)
    assert run_cli("plan", *args).returncode == 0
    # the record's pid is now another process (same pid, another start time)
    bystander = procs.spawn("sleep", "120", name="bystander")
    record = write_driver(sweep_dir, bystander.pid, socket.gethostname(),
                          str(int(start_of(bystander.pid)) + 1))
    r = run_cli("cancel", str(sweep_dir))
    assert r.returncode == 0 and "stale" in r.stderr and "asked 0 local" in r.stdout, r.stderr
    time.sleep(0.3)
    assert bystander.poll() is None and not record.exists()  # never signalled
    # a pid that is gone: a note, no traceback
    write_driver(sweep_dir, dead_pid(), socket.gethostname(), "1")
    r = run_cli("cancel", str(sweep_dir))
    assert r.returncode == 0 and "stale" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not record.exists()


# 5. A second command on a running dir (D16) ---------------------------------------------

@pytest.mark.slow
def test_second_command_on_a_running_dir_changes_nothing(procs: Procs, tmp_path: Path) -> None:
    args, sweep_dir = hold_sweep(tmp_path, 2)
    driver = procs.sweep(*args)
    procs.trials(sweep_dir, 2)
    sweep_yaml = sweep_dir / "sweep.yaml"
    before = (sweep_yaml.read_bytes(), sweep_yaml.stat().st_mtime_ns)
    for command in (["plan", *args], args):
        r = run_cli(*command)
        assert r.returncode == 2, r.stderr
        assert r.stderr.strip().count("\n") == 0 and "already running" in r.stderr, r.stderr
        assert (sweep_yaml.read_bytes(), sweep_yaml.stat().st_mtime_ns) == before
    r = run_cli("cancel", str(sweep_dir))  # the live driver is the one signalled
    assert r.returncode == 0 and "asked 1 local sweep process(es) to stop" in r.stdout, r.stderr
    assert driver.wait(timeout=60) == 130, procs.text("driver")
    assert ran(tmp_path) == [0, 1] and statuses(sweep_dir) == {0: "cancelled", 1: "cancelled"}


# 6. Local time limits -------------------------------------------------------------------

@pytest.mark.slow
def test_time_limit_gives_timeout_rows_and_sigkills_a_stubborn_trial(tmp_path: Path) -> None:
    # 0.05 min = 3 s (a margin for starting under load); trial 1 ignores SIGTERM, so only
    # the SIGKILL after the grace period ends it.
    # Trial 0 tidies up for 1.5 s when stopped: one SIGTERM, not one every poll, so it can.
    args, sweep_dir = hold_sweep(tmp_path, 2, "cluster.timeout_min=0.05", "+stubborn_from=1",
                                 "+cleanup_s=1.5")
    r = run_cli(*args, timeout=120)
    assert r.returncode == 1, r.stderr
    rows = result_rows(sweep_dir)
    assert rows[0]["status"] == "timeout" and "time limit" in rows[0]["error"]
    assert 1.5 <= rows[0]["duration_s"] < 10  # its tidy-up ran to the end
    assert (tmp_path / "m" / "cleaned-0").exists()
    assert rows[1]["status"] == "timeout" and "SIGKILL" in rows[1]["error"]
    assert rows[1]["duration_s"] >= 3 + 9  # the limit, then the grace period


# 7. StopGuard: a stop waits while a row is written --------------------------------------

@pytest.fixture
def guard() -> Iterator[StopGuard]:
    old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    g = StopGuard()
    g.install()
    try:
        yield g
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def stop(sig: signal.Signals = signal.SIGTERM) -> None:
    """Send ``sig`` to this process; its handler runs before this returns."""
    os.kill(os.getpid(), sig)
    time.sleep(0.05)


def test_stop_guard_raises_at_once_outside_a_write(guard: StopGuard) -> None:
    with pytest.raises(TrialInterrupted, match="SIGTERM") as info:
        stop()
    assert info.value.status == "cancelled"
    guard.hold()  # as the runner does: the cancelled row is written, then the next trial
    guard.release()
    with pytest.raises(TrialInterrupted, match="SIGHUP"):
        stop(signal.SIGHUP)


def test_stop_guard_at_the_time_limit_is_a_timeout(guard: StopGuard,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWEEPER_DEADLINE", str(time.time()))
    with pytest.raises(TrialInterrupted, match="time limit") as info:
        stop()
    assert info.value.status == "timeout"


def test_stop_guard_holds_a_stop_until_release(guard: StopGuard) -> None:
    guard.hold()
    stop()  # the row is being written: nothing raised yet
    with pytest.raises(TrialInterrupted):
        guard.release()
    guard.release()  # nothing pending any more
    with pytest.raises(TrialInterrupted):
        stop()


def test_stop_guard_deferred_raises_when_the_block_ends(guard: StopGuard) -> None:
    reached = []
    with pytest.raises(TrialInterrupted):
        with guard.deferred():
            stop()
            reached.append("after the stop")
    assert reached == ["after the stop"]


def test_stop_guard_resets_when_the_write_raised(guard: StopGuard) -> None:
    with pytest.raises(OSError), guard.deferred():
        raise OSError("disk full")
    with pytest.raises(TrialInterrupted):
        stop()  # not deferred any more
    with pytest.raises(TrialInterrupted):  # the pending stop wins over the write's error
        guard.hold()
        try:
            stop()
            raise OSError("disk full")
        finally:
            guard.release()
    with pytest.raises(TrialInterrupted):
        stop()


def test_stop_guard_second_stop_while_the_first_unwinds(guard: StopGuard) -> None:
    with pytest.raises(TrialInterrupted):
        try:
            stop()
        except TrialInterrupted:
            stop()  # a repeated SIGTERM must not interrupt the handling of the first
            raise
    guard.hold()
    with pytest.raises(TrialInterrupted):
        guard.release()  # it was kept: the worker still stops after this trial
    with pytest.raises(TrialInterrupted):
        stop()  # and the next trial can be stopped again


# 8. A failure while a row is written ----------------------------------------------------

@pytest.mark.slow
def test_failed_row_write_in_a_worker_is_one_line_and_resume_reruns(tmp_path: Path) -> None:
    args, sweep_dir = hold_sweep(tmp_path, 3)
    (tmp_path / "go").touch()
    assert run_cli("plan", *args).returncode == 0
    (sweep_dir / "results" / ".write.lock").mkdir(parents=True)  # no lock can be taken
    r = subprocess.run([sys.executable, "-m", "sweeper.worker", str(sweep_dir), "--trials",
                        "0,1,2"], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in r.stdout + r.stderr, r.stdout + r.stderr
    assert len(re.findall(r"could not write the row of trial \d", r.stderr)) == 3, r.stderr
    assert r.returncode == 1 and ran(tmp_path) == [0, 1, 2]  # every trial still ran
    assert re.search(r"lost\W+3\b", run_cli("status", str(sweep_dir)).stdout)
    (sweep_dir / "results" / ".write.lock").rmdir()
    r = run_cli("resume", str(sweep_dir), timeout=120)
    assert r.returncode == 0, r.stderr
    assert ran(tmp_path) == [0, 0, 1, 1, 2, 2]
    assert {row["attempt"] for row in result_rows(sweep_dir).values()} == {2}


@pytest.mark.slow
def test_failed_row_write_in_a_local_sweep_leaves_lost_trials(tmp_path: Path) -> None:
    args, sweep_dir = hold_sweep(tmp_path, 2)
    (tmp_path / "go").touch()
    assert run_cli("plan", *args).returncode == 0
    (sweep_dir / "results" / ".write.lock").mkdir(parents=True)
    r = run_cli("resume", str(sweep_dir), timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    logs = "".join(p.read_text() for p in (sweep_dir / "logs").glob("local-slot-*.log"))
    assert len(re.findall(r"could not write the row of trial \d", logs)) == 2, logs
    assert "Traceback" not in logs
    assert re.search(r"lost\W+2\b", run_cli("status", str(sweep_dir)).stdout)
    (sweep_dir / "results" / ".write.lock").rmdir()
    assert run_cli("resume", str(sweep_dir), timeout=120).returncode == 0
    assert statuses(sweep_dir) == {0: "completed", 1: "completed"}


def test_dir_lock_falls_back_to_a_lock_file_without_flock(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from filelock import FileLock

    def no_flock(self: Any, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("FileSystem does not appear to support flock")

    monkeypatch.setattr(FileLock, "acquire", no_flock)
    lock = tmp_path / "d" / ".sweep.lock"
    soft = lock.with_name(lock.name + ".soft")
    with dir_lock(lock, "the sweep dir", timeout_s=5):
        assert soft.exists()
        with pytest.raises(SweepDirError, match=re.escape(str(soft))):
            with dir_lock(lock, "the sweep dir", timeout_s=0.5):
                pass  # pragma: no cover - held above
    assert not soft.exists()
    with dir_lock(lock, "the sweep dir", timeout_s=5):
        pass


# 9. A lock held by another command ------------------------------------------------------

def test_dir_lock_says_what_it_waits_for_then_gives_up(procs: Procs, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    lock = tmp_path / ".sweep.lock"
    holder = procs.spawn(sys.executable, "-c",
                         "import sys; from filelock import FileLock; held = FileLock(sys.argv[1]); "
                         "held.acquire(); print('held', flush=True); sys.stdin.read()",
                         str(lock), stdin=subprocess.PIPE, stdout=subprocess.PIPE, name="holder")
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    with pytest.raises(SweepDirError) as info:
        with dir_lock(lock, "the sweep dir", timeout_s=1):
            pass  # pragma: no cover - held by the other process
    assert "waiting" not in capsys.readouterr().err  # too short a wait to mention
    started = time.monotonic()
    with pytest.raises(SweepDirError) as info:
        with dir_lock(lock, "the sweep dir", timeout_s=4):
            pass  # pragma: no cover - held by the other process
    assert 4 <= time.monotonic() - started < 8
    message = str(info.value)
    assert "\n" not in message and str(lock) in message and "delete" in message
    err = capsys.readouterr().err
    assert err.count(f"waiting for another sweeper command's lock on the sweep dir ({lock})") == 1


def test_a_stop_that_surfaces_as_another_error_is_still_a_stop(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "s"
    r = run_cli("cluster=local", "task.fn=lifecycle_tasks:stop_turns_into_an_error",
                "search.space={}", "+x=1,2", f"hydra.sweep.dir={sweep_dir}")
    rows = result_rows(sweep_dir)
    assert {row["status"] for row in rows.values()} == {"cancelled"}, r.stderr
    assert all("stopped by SIGTERM (surfaced as RuntimeError" in row["error"]
               for row in rows.values())
