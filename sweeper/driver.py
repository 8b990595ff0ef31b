"""The driver record: which process runs a sweep dir's local trials (``logs/local-driver.json``).

One local driver per sweep dir: a second command on a running dir is refused before it
changes anything. A record is trusted only when it can be checked: same host and boot, and
the same process (pid *and* start time, so a reused pid is never taken for the driver).
A record that cannot be checked (another host) is reported with the way out.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from sweeper.console import shell_path
from sweeper.errors import SweepDirError
from sweeper.paths import SweepPaths, atomic_path

__all__ = ["DriverRecord", "cancel_local", "claim_driver", "live_driver", "refuse_if_live",
           "release_driver"]


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def start_time(pid: int) -> str | None:
    """When the process started (/proc, or ``ps`` where there is no /proc, e.g. macOS)."""
    from sweeper.attempts import process_start

    if Path("/proc/self/stat").exists():
        return process_start(pid)
    try:
        r = subprocess.run(["ps", "-o", "lstart=", "-p", str(pid)], capture_output=True,
                           text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() or None


@dataclass(frozen=True)
class DriverRecord:
    pid: int
    host: str
    start: str | None
    boot: str | None = None

    def alive(self) -> bool | None:
        """True/False when this host can tell; None for another host's record."""
        if self.host != socket.gethostname():
            return None
        if self.boot and _boot_id() and self.boot != _boot_id():
            return False  # the machine rebooted since
        now = start_time(self.pid)
        return now is not None and now == self.start


def read_driver(paths: SweepPaths) -> DriverRecord | None:
    try:
        data = json.loads(paths.local_driver.read_text())
        return DriverRecord(int(data["pid"]), str(data["host"]), data.get("start"),
                            data.get("boot"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def live_driver(paths: SweepPaths) -> DriverRecord | None:
    """The record of a driver that is (or, on another host, may be) running this dir."""
    record = read_driver(paths)
    if record is None or record.alive() is False:
        return None
    return record


def refuse_if_live(paths: SweepPaths) -> None:
    """Raise when another driver runs this dir, with the way out for each case."""
    record = live_driver(paths)
    if record is None:
        return
    where = shell_path(paths.root)
    if record.alive() is None:
        raise SweepDirError(
            f"a local sweep on host {record.host} (pid {record.pid}) holds {paths.root}, and "
            f"this host cannot check it; stop it there with `sweeper cancel {where}`, or, if it "
            f"no longer runs, delete {shell_path(paths.local_driver)}"
        )
    raise SweepDirError(
        f"a sweep is already running in {paths.root} (pid {record.pid}); wait for it, or stop "
        f"it with `sweeper cancel {where}`"
    )


def claim_driver(paths: SweepPaths) -> None:
    paths.logs_dir.mkdir(parents=True, exist_ok=True)
    pid = os.getpid()
    record = DriverRecord(pid, socket.gethostname(), start_time(pid), _boot_id())
    with atomic_path(paths.local_driver) as tmp:
        tmp.write_text(json.dumps(asdict(record)))


def release_driver(paths: SweepPaths) -> None:
    record = read_driver(paths)
    if record is not None and record.pid == os.getpid() and record.host == socket.gethostname():
        paths.local_driver.unlink(missing_ok=True)


def cancel_local(paths: SweepPaths) -> tuple[int, str | None]:
    """Ask the process running a local sweep to stop (as Ctrl-C would).

    Returns (processes signalled, a note for the user). Only a driver proven alive is
    signalled, so a reused pid is never hit; a stale record is removed.
    """
    record = read_driver(paths)
    if record is None:
        return 0, None
    alive = record.alive()
    if alive is None:
        return 0, (f"a local sweep runs this dir on host {record.host}: run `sweeper cancel` "
                   f"there, or delete {shell_path(paths.local_driver)} if it no longer runs")
    if not alive:
        paths.local_driver.unlink(missing_ok=True)
        return 0, "removed a stale driver record (its process had ended)"
    with contextlib.suppress(ProcessLookupError):
        os.kill(record.pid, signal.SIGTERM)
        return 1, None
    return 0, "the local sweep had just ended"
