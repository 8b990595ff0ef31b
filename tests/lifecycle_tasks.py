"""Tasks for tests/test_lifecycle.py: trials that run until the test lets them end."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any


def hold(cfg: Any) -> dict[str, float]:
    """Wait until the file ``cfg.go`` exists (at most ``cfg.max_s``, so a leaked trial still
    ends), so the test decides when the trial finishes. ``ran-X-PID`` in ``cfg.markers``
    records each start. Trials with ``x >= cfg.stubborn_from`` ignore SIGTERM and SIGHUP,
    as a task that traps them and carries on would. When stopped, a task tidies up for
    ``cfg.cleanup_s`` and then writes ``cleaned-X``."""
    x = int(cfg.x)
    if x >= int(cfg.get("stubborn_from", 1 << 30)):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    (Path(str(cfg.markers)) / f"ran-{x}-{os.getpid()}").touch()
    go = Path(str(cfg.go))
    deadline = time.monotonic() + float(cfg.get("max_s", 120.0))
    try:
        while not go.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    except BaseException:
        time.sleep(float(cfg.get("cleanup_s", 0.0)))
        (Path(str(cfg.markers)) / f"cleaned-{x}").touch()
        raise
    return {"val_loss": float(x)}


def stop_turns_into_an_error(cfg: Any) -> dict[str, float]:
    """A stop that a library turns into an error of its own on the way up (OmegaConf does,
    when a stop lands mid-update): the trial was still stopped, not failed."""
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    except BaseException as ex:
        raise RuntimeError("a library's own error") from ex
    return {"val_loss": 0.0}
