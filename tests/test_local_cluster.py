"""slurm/local_cluster.sh never takes over a SLURM setup it did not make (review finding D7).

These run the script against a fake config dir, pid dir and state dir of their own
(SWEEPER_TEST_CLUSTER_ETC/_RUN/_STATE): they need no cluster and leave a running one alone.
A "foreign daemon" is a `sleep` that these tests start under a daemon's name (its /proc comm,
which the script checks), and that they end themselves, by PID.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import ROOT

SCRIPT = ROOT / "slurm" / "local_cluster.sh"
MARK = "# managed by sweeper slurm/local_cluster.sh"
FORCE = "SWEEPER_TEST_CLUSTER_FORCE=1"

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or shutil.which("bash") is None
    or shutil.which("sleep") is None, reason="needs Linux (/proc), bash and sleep")


class Fake:
    """A fake root: etc/ (slurm.conf), run/ (pid files), state/ (the script's records)."""

    def __init__(self, base: Path) -> None:
        self.etc = base / "etc slurm"  # a space: every expansion in the script must be quoted
        self.run = base / "run"
        self.state = base / "state"
        self.bin = base / "bin"
        for d in (self.etc, self.run, self.state, self.bin):
            d.mkdir(parents=True)
        # `id -u` says "not root": should a guard ever let `start` through, it stops at the root
        # check instead of installing and starting a real cluster.
        (self.bin / "id").write_text("#!/bin/sh\necho 1000\n")
        (self.bin / "id").chmod(0o755)

    def env(self, *, not_root: bool = False, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SWEEPER_TEST_CLUSTER_")}
        env.update(SWEEPER_TEST_CLUSTER_ETC=str(self.etc), SWEEPER_TEST_CLUSTER_RUN=str(self.run),
                   SWEEPER_TEST_CLUSTER_STATE=str(self.state), **extra)
        if not_root:
            env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        return env

    def script(self, command: str, *, not_root: bool = False,
               **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(SCRIPT), command], env=self.env(not_root=not_root, **extra),
                              capture_output=True, text=True, timeout=60)


@pytest.fixture
def fake(tmp_path: Path) -> Fake:
    return Fake(tmp_path)


def start_as(fake: Fake, name: str) -> subprocess.Popen[bytes]:
    """`sleep 60` whose /proc comm is NAME (run through a symlink of that name)."""
    link = fake.bin / name
    link.symlink_to(shutil.which("sleep") or "sleep")
    proc = subprocess.Popen([str(link), "60"])
    for _ in range(100):  # until the exec has happened
        if Path(f"/proc/{proc.pid}/comm").read_text().strip() == name:
            break
        time.sleep(0.01)
    return proc


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:  # only the processes this test started, by PID
        if proc.poll() is None:
            os.kill(proc.pid, 9)
        proc.wait()


def alive(proc: subprocess.Popen[bytes]) -> bool:
    return proc.poll() is None


def identity(pid: int) -> str:
    """What the script records: PID, start time (/proc/PID/stat field 22), boot id."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    return f"{pid} {fields[19]} {boot}"


def one_line(r: subprocess.CompletedProcess[str]) -> str:
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


@pytest.mark.parametrize("name", ["slurm.conf", "slurmdbd.conf"])
def test_start_refuses_a_config_it_did_not_write(fake: Fake, name: str) -> None:
    conf = fake.etc / name
    conf.write_text("ClusterName=production\nSlurmctldHost=head01\n")
    before = (conf.read_bytes(), conf.stat().st_mtime_ns)

    r = fake.script("start", not_root=True)

    assert r.returncode == 3, r.stderr
    line = one_line(r)
    assert str(conf) in line and FORCE in line and "refusing" in line
    assert (conf.read_bytes(), conf.stat().st_mtime_ns) == before
    assert sorted(p.name for p in fake.etc.iterdir()) == [name]  # no .bak, nothing written
    assert not any(fake.state.iterdir())


def test_start_refuses_a_daemon_it_did_not_start(fake: Fake, procs: list) -> None:
    daemon = start_as(fake, "slurmctld")
    procs.append(daemon)
    pidfile = fake.run / "slurmctld.pid"
    pidfile.write_text(f"{daemon.pid}\n")

    r = fake.script("start", not_root=True)

    assert r.returncode == 3, r.stderr
    line = one_line(r)
    assert str(pidfile) in line and str(daemon.pid) in line and FORCE in line
    assert alive(daemon)
    assert not any(fake.etc.iterdir())  # no slurm.conf written next to someone else's daemon


def test_start_refuses_to_restart_a_daemon_it_did_not_start(fake: Fake, procs: list) -> None:
    """Our own slurm.conf, but an old one: the restart it needs would hit a daemon not ours."""
    (fake.etc / "slurm.conf").write_text(f"{MARK}\nMaxArraySize=7\n")
    daemon = start_as(fake, "slurmctld")
    procs.append(daemon)
    (fake.run / "slurmctld.pid").write_text(f"{daemon.pid}\n")

    r = fake.script("start", not_root=True)

    assert r.returncode == 3, r.stderr
    assert "restart slurmctld" in one_line(r) and FORCE in r.stderr
    assert alive(daemon)
    assert (fake.etc / "slurm.conf").read_text() == f"{MARK}\nMaxArraySize=7\n"


def test_stop_refuses_a_reused_pid(fake: Fake, procs: list) -> None:
    """The record names this PID, but a process started at another time: not the one we started."""
    daemon = start_as(fake, "slurmctld")
    procs.append(daemon)
    pidfile = fake.run / "slurmctld.pid"
    pidfile.write_text(f"{daemon.pid}\n")
    pid, start, boot = identity(daemon.pid).split()
    records = fake.state / "pids"
    records.write_text(f"slurmctld {pid} {int(start) - 1} {boot}\n")

    r = fake.script("stop")

    assert r.returncode == 3, r.stderr
    line = one_line(r)
    assert str(pidfile) in line and pid in line and FORCE in line
    assert alive(daemon)
    assert records.read_text() == f"slurmctld {pid} {int(start) - 1} {boot}\n"


def test_stop_refuses_a_daemon_newer_than_an_old_style_record(fake: Fake, procs: list) -> None:
    """Older versions recorded names only; a daemon started after that record is not theirs."""
    (fake.etc / "slurm.conf").write_text(f"{MARK}\n")
    legacy = fake.state / "started"
    legacy.write_text("slurmctld\n")
    os.utime(legacy, (time.time() - 3600, time.time() - 3600))
    daemon = start_as(fake, "slurmctld")
    procs.append(daemon)
    (fake.run / "slurmctld.pid").write_text(f"{daemon.pid}\n")

    r = fake.script("stop")

    assert r.returncode == 3, r.stderr
    assert str(fake.run / "slurmctld.pid") in one_line(r)
    assert alive(daemon)


def test_stop_never_signals_a_stale_pid_file(fake: Fake, procs: list) -> None:
    """The pid file of a daemon we started now names an unrelated process (plain `sleep`)."""
    other = subprocess.Popen(["sleep", "60"])
    procs.append(other)
    (fake.run / "slurmctld.pid").write_text(f"{other.pid}\n")
    (fake.state / "pids").write_text(f"slurmctld {identity(other.pid)}\n")

    r = fake.script("stop")

    assert "stopping" not in r.stderr
    assert alive(other)


def test_stop_without_records_stops_nothing(fake: Fake, procs: list) -> None:
    daemon = start_as(fake, "slurmctld")
    procs.append(daemon)
    (fake.run / "slurmctld.pid").write_text(f"{daemon.pid}\n")

    r = fake.script("stop")

    assert r.returncode == 0, r.stderr
    assert "nothing to stop" in one_line(r)
    assert alive(daemon)


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="`stop` needs root past its guards")


@needs_root
def test_stop_stops_the_daemon_it_recorded(fake: Fake, procs: list) -> None:
    daemon = start_as(fake, "slurmctld")
    procs.append(daemon)
    (fake.run / "slurmctld.pid").write_text(f"{daemon.pid}\n")
    (fake.state / "pids").write_text(f"slurmctld {identity(daemon.pid)}\n")

    r = fake.script("stop")

    assert r.returncode == 0, r.stderr
    assert f"stopping slurmctld (pid {daemon.pid})" in r.stderr
    assert daemon.wait(timeout=10) == -15
    assert not (fake.state / "pids").exists()


@needs_root
def test_force_stops_a_daemon_it_did_not_start(fake: Fake, procs: list) -> None:
    daemon = start_as(fake, "slurmctld")
    procs.append(daemon)
    (fake.run / "slurmctld.pid").write_text(f"{daemon.pid}\n")
    (fake.state / "started").write_text("slurmctld\n")  # named, not identified

    assert fake.script("stop").returncode == 3
    assert alive(daemon)
    r = fake.script("stop", SWEEPER_TEST_CLUSTER_FORCE="1")

    assert r.returncode == 0, r.stderr
    assert daemon.wait(timeout=10) == -15
