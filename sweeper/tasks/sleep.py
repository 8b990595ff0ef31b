"""A task that only sleeps: for benchmarks of the executors and runner overhead."""

from __future__ import annotations

import time
from typing import Any

import sweeper

__all__ = ["sleep"]


def sleep(cfg: Any) -> dict[str, float]:
    """Sleep ``sleep_s`` seconds (default 0); raise when ``fail`` is true.

    >>> sleep({"sleep_s": 0})["val_loss"]
    0.0
    """
    seconds = float(cfg.get("sleep_s", 0.0) or 0.0)
    if cfg.get("fail", False):
        raise RuntimeError("asked to fail (fail=true)")
    time.sleep(seconds)
    sweeper.report(epoch=0, val_loss=seconds)
    return {"val_loss": seconds}
