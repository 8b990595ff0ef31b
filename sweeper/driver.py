"""The local driver: the process that runs a sweep dir's local trials.

- Its record (``logs/local-driver.json``): one local driver per sweep dir, so a second command
  on a running dir is refused before it changes anything. A record is trusted only when it
  can be checked: same host and boot, and the same process (pid *and* start time, so a reused
  pid is never taken for the driver, nor signalled). A record that cannot be checked (another
  host, no start time) is reported with the way out.
- Its signals (:class:`DriverSignals`): SIGINT, SIGTERM and SIGHUP stop the sweep once, cleanly.
- Its death (:func:`watch_driver`, run in every trial): no trial outlives its driver.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from sweeper.console import shell_path
from sweeper.errors import SweepDirError
from sweeper.paths import SweepPaths, atomic_path

__all__ = ["DriverRecord", "DriverSignals", "cancel_local", "claim_driver", "live_driver",
           "refuse_if_live", "release_driver", "same_process", "watch_driver"]


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


def same_process(pid: int, start: str | None) -> bool | None:
    """Whether ``pid`` is still the process that started at ``start``; None when this host
    cannot tell (no start time to compare)."""
    now = start_time(pid)
    if now is not None:
        return None if start is None else now == start
    if Path("/proc/self/stat").exists():
        return False  # /proc lists every live process: it is gone (or a zombie)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return None


@dataclass(frozen=True)
class DriverRecord:
    pid: int
    host: str
    start: str | None
    boot: str | None = None

    def alive(self) -> bool | None:
        """True/False when this host can tell; None for another host's record, or one
        without a start time."""
        if self.host != socket.gethostname():
            return None
        if self.boot and _boot_id() and self.boot != _boot_id():
            return False  # the machine rebooted since
        return same_process(self.pid, self.start)


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
    record = read_driver(paths)
    alive = record.alive() if record is not None else False
    if record is None or alive is False:
        return
    if alive is None:
        raise SweepDirError(_unchecked(paths, record))
    raise SweepDirError(
        f"a sweep is already running in {paths.root} (pid {record.pid}); wait for it, or stop "
        f"it with `sweeper cancel {shell_path(paths.root)}`"
    )


def _unchecked(paths: SweepPaths, record: DriverRecord) -> str:
    return (f"a local sweep started on host {record.host} (pid {record.pid}) holds {paths.root}, "
            f"and this host cannot check whether it still runs; stop it there with `sweeper "
            f"cancel {shell_path(paths.root)}`, or, if it no longer runs, delete "
            f"{shell_path(paths.local_driver)}")


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
        return 0, _unchecked(paths, record)
    if alive and _signal_driver(record):
        return 1, None
    if read_driver(paths) == record:  # not a new driver's, claimed meanwhile
        paths.local_driver.unlink(missing_ok=True)
    return 0, (f"removed a stale driver record: pid {record.pid} is no longer the sweep's "
               "driver (it ended)")


def _signal_driver(record: DriverRecord) -> bool:
    """SIGTERM the driver. A pidfd pins the process from the check to the signal, so a pid
    reused in between is not hit (Linux; elsewhere the window is the check's few µs)."""
    try:
        fd: int | None = os.pidfd_open(record.pid)
    except (AttributeError, OSError):
        fd = None
    try:
        if record.alive() is not True:
            return False
        if fd is None:
            os.kill(record.pid, signal.SIGTERM)
        else:
            signal.pidfd_send_signal(fd, signal.SIGTERM)
        return True
    except ProcessLookupError:
        return False  # it has just ended
    finally:
        if fd is not None:
            os.close(fd)


class DriverSignals:
    """SIGINT, SIGTERM and SIGHUP (a closed terminal or SSH session) to the driver.

    The first one stops the sweep as Ctrl-C does (KeyboardInterrupt). Later ones are
    ignored, so stopping the trials is never cut short and leaves none behind. None lands
    inside :meth:`held` (starting a trial process), where the driver could lose track of one.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.requested = False
        self._raised = False
        self._held = 0

    def _handle(self, signum: int, frame: object) -> None:
        self.requested = True
        self._raise_once()

    def _raise_once(self) -> None:
        if self.requested and not self._raised and not self._held:
            self._raised = True
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield  # only the main thread may set handlers
            return
        old = [signal.signal(s, self._handle) for s in self.SIGNALS]
        try:
            yield
        finally:
            for s, handler in zip(self.SIGNALS, old, strict=True):
                signal.signal(s, handler)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """A stop that arrives inside the block is raised when it ends."""
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1
            self._raise_once()


def watch_driver(pid: int, start: str | None, grace_s: float) -> None:
    """In a trial process (its own process group): stop the trial once its driver is gone,
    so none outlives a SIGKILL, an OOM kill or a crash of the driver. SIGTERM first, for a
    clean ``cancelled`` row; SIGKILL to the trial's group after ``grace_s`` for a task that
    ignores SIGTERM (nobody else is left to do it)."""
    if sys.platform.startswith("linux"):
        # At once: the parent is the fork server, which exits when the driver does.
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    def watch() -> None:
        # Polling also covers a fork server that died before prctl, and systems without it.
        while same_process(pid, start) is not False:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace_s)
        try:
            os.killpg(os.getpid(), signal.SIGKILL)  # the group this trial leads
        except ProcessLookupError:
            os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="sweeper-driver-watch", daemon=True).start()
