"""The small API a task may use while it runs inside a sweep.

Outside a sweep every function here does nothing (or returns None), so a task
that calls them still runs unchanged on its own.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweeper.state import TrialState

__all__ = [
    "TrialContext",
    "TrialInterrupted",
    "TrialPruned",
    "current",
    "load_checkpoint",
    "report",
    "save_checkpoint",
    "should_checkpoint",
    "should_prune",
    "trial_dir",
]

CHECKPOINT_NAME = "checkpoint.pt"


class TrialInterrupted(BaseException):
    """Stops a trial from outside (SIGTERM, a time limit, a requeue). A BaseException, so a
    task's own ``except Exception`` does not swallow it; ``status`` is the row's status."""

    def __init__(self, message: str, status: TrialState = TrialState.CANCELLED) -> None:
        super().__init__(message)
        self.status = status


class TrialPruned(TrialInterrupted):
    """Raise it when :func:`should_prune` says so: the trial ends as ``pruned`` (finished,
    not failed), with the curve it reported so far. ``optuna.TrialPruned`` works too."""

    def __init__(self, message: str = "pruned: its metric fell behind the other trials") -> None:
        super().__init__(message, TrialState.PRUNED)


@dataclass
class TrialContext:
    """What the runner knows about the trial in progress."""

    trial_id: int
    sweep_dir: Path
    work_dir: Path
    curve: list[dict[str, Any]] = field(default_factory=list)
    # tracking.tensorboard: event files here, written as the task reports
    tensorboard_dir: Path | None = None
    _writer: Any = None
    # the trial's Optuna trial (a StudyLink) when the sweep prunes or searches adaptively
    study: Any = None


_current: TrialContext | None = None
# Set by the scheduler's warning signal (SLURM --signal): for the whole process, since the
# warning may land between trials, or before the next one has started.
_stop_requested = threading.Event()


def request_checkpoint() -> None:
    """Ask the running trial to checkpoint and stop (signal-safe: it only sets a flag)."""
    _stop_requested.set()


def stop_requested() -> bool:
    return _stop_requested.is_set()


def current() -> TrialContext | None:
    """The running trial, or None outside a sweep."""
    return _current


@contextlib.contextmanager
def activate(ctx: TrialContext) -> Iterator[TrialContext]:
    global _current
    _current = ctx
    try:
        yield ctx
    finally:
        _current = None


def _number(name: str, value: Any) -> float:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"report() needs numbers, got {name}={value!r}")
    return float(value)


def report(epoch: int | None = None, **metrics: float) -> None:
    """Record one epoch's values; they become the trial's curve.

    ``epoch`` defaults to the number of earlier reports. Outside a sweep this does nothing.

    >>> report(epoch=0, train_loss=0.52, val_loss=0.61)
    """
    ctx = _current
    if ctx is None:
        return
    row: dict[str, Any] = {"epoch": int(epoch) if epoch is not None else len(ctx.curve)}
    row.update({k: _number(k, v) for k, v in metrics.items()})
    # A resumed trial reports its epochs again from the checkpoint on: keep the newest.
    ctx.curve[:] = [r for r in ctx.curve if r["epoch"] != row["epoch"]]
    ctx.curve.append(row)
    ctx.curve.sort(key=lambda r: r["epoch"])
    if ctx.study is not None:
        ctx.study.report(row["epoch"], row)
    writer = _tensorboard(ctx)
    if writer is not None:
        for name, value in row.items():
            if name != "epoch":
                writer.add_scalar(name, value, row["epoch"])
        writer.flush()


def _tensorboard(ctx: TrialContext) -> Any:
    """The trial's SummaryWriter (made on first use), or None when tracking is off."""
    if ctx.tensorboard_dir is None:
        return None
    if ctx._writer is None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as ex:
            print(f"[sweeper] tracking.tensorboard is on but unavailable ({ex}); "
                  "pip install 'sweeper[tensorboard]'", flush=True)
            ctx.tensorboard_dir = None
            return None
        ctx._writer = SummaryWriter(log_dir=str(ctx.tensorboard_dir))
    return ctx._writer


def close_tracking(ctx: TrialContext, hparams: dict[str, Any], metrics: dict[str, Any]) -> None:
    """Write the trial's hyperparameters and final metrics, so TensorBoard can compare runs."""
    writer = _tensorboard(ctx)
    if writer is None:
        return
    plain = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in hparams.items()}
    numbers = {f"final/{k}": float(v) for k, v in metrics.items()}
    if numbers:
        writer.add_hparams(plain, numbers, run_name=".")
    writer.close()


def trial_dir() -> Path | None:
    """A directory for this trial's own files (created on first call), or None outside a sweep."""
    ctx = _current
    if ctx is None:
        return None
    ctx.work_dir.mkdir(parents=True, exist_ok=True)
    return ctx.work_dir


def should_prune() -> bool:
    """True when the sweep's pruner judges this trial hopeless at its last reported epoch
    (``search.pruner``, fed by :func:`report` with ``search.metric``). Stop then, e.g. with
    ``raise sweeper.TrialPruned()``. Always False outside a sweep, or without a pruner.

    >>> should_prune()
    False
    """
    ctx = _current
    if ctx is None or ctx.study is None:
        return False
    try:
        return bool(ctx.study.should_prune())
    except Exception as ex:  # a storage hiccup must not fail a good trial
        print(f"[sweeper] could not ask the pruner ({type(ex).__name__}: {ex}); going on",
              flush=True)
        return False


def should_checkpoint() -> bool:
    """True once the scheduler has warned that this trial will be stopped (time limit or
    preemption): save a checkpoint now, and the trial resumes from it when requeued."""
    return _current is not None and _stop_requested.is_set()


def save_checkpoint(state: Any) -> Path | None:
    """Save ``state`` (e.g. state dicts and the epoch) with ``torch.save``, atomically.

    When the scheduler has asked the trial to stop (see :func:`should_checkpoint`), the
    trial stops right after the save and resumes from it when it runs again. Outside a
    sweep this does nothing and returns None.
    """
    ctx = _current
    if ctx is None:
        return None
    import os

    import torch

    target = ctx.work_dir / CHECKPOINT_NAME
    ctx.work_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{CHECKPOINT_NAME}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, target)
    if _stop_requested.is_set():
        raise TrialInterrupted("checkpointed when warned of a time limit or preemption; it "
                               "continues when requeued",
                               TrialState.REQUEUED)
    return target


def load_checkpoint() -> Any:
    """The state saved by :func:`save_checkpoint` in an earlier run of this trial, or None.

    Loaded with ``weights_only=True``: tensors, containers and numbers only, never
    arbitrary pickled objects.
    """
    ctx = _current
    if ctx is None:
        return None
    target = ctx.work_dir / CHECKPOINT_NAME
    if not target.is_file():
        return None
    import torch

    return torch.load(target, map_location="cpu", weights_only=True)
