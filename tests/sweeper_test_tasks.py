"""Tasks used by the tests. Markers (files) decide which trials misbehave, so a test
can make a trial fail once and succeed on resume."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import sweeper


def behave(cfg: Any) -> dict[str, float]:
    x = int(cfg.x)
    markers = Path(str(cfg.get("markers", "/nonexistent")))
    if (markers / f"raise-{x}").exists():
        raise RuntimeError(f"planned failure of x={x}")
    if (markers / f"kill-{x}").exists():
        os.kill(os.getpid(), signal.SIGKILL)
    if (markers / f"exit-{x}").exists():
        raise SystemExit(3)
    (markers / f"ran-{x}-{os.getpid()}").touch() if markers.is_dir() else None
    time.sleep(float(cfg.get("sleep_s", 0.0)))
    for epoch in range(2):
        sweeper.report(epoch=epoch, val_loss=x + 1.0 / (epoch + 1))
    return {"val_loss": float(x), "x_seen": x}


def gpu_slot(cfg: Any) -> dict[str, float]:
    """Returns which GPU the executor gave this trial."""
    time.sleep(0.3)
    return {"val_loss": float(os.environ.get("CUDA_VISIBLE_DEVICES", "-1"))}


def hydra_aware(cfg: Any) -> float:
    """A task written for Hydra: it asks HydraConfig for its job number and output dir."""
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    (Path(hc.runtime.output_dir) / "note.txt").write_text(hc.job.override_dirname)
    return float(hc.job.num)


def slow_epochs(cfg: Any) -> dict[str, float]:
    """Epochs of ``epoch_s`` seconds that checkpoint when the scheduler warns."""
    state = sweeper.load_checkpoint() or {"epoch": 0}
    start = int(state["epoch"])
    total = int(cfg.epochs_total)
    markers = Path(str(cfg.get("markers", "/nonexistent")))
    if markers.is_dir():
        (markers / f"run-{os.getpid()}-from-{start}").touch()
    for epoch in range(start, total):
        time.sleep(float(cfg.epoch_s))
        sweeper.report(epoch=epoch, val_loss=1.0 / (epoch + 1))
        if sweeper.should_checkpoint():
            sweeper.save_checkpoint({"epoch": epoch + 1})
    return {"val_loss": 1.0 / total, "epochs_run": total, "resumed_from": start}


def quadratic(cfg: Any) -> dict[str, float]:
    """val_loss is smallest at lr=0.1: in a search up to 1e-2, the best sits at the top edge."""
    import math

    lr = float(cfg.optimizer.lr)
    width = float(cfg.model.hidden_size)
    base = (math.log10(lr) + 1.0) ** 2 + 0.001 * abs(width - 32)
    for epoch in range(3):
        sweeper.report(epoch=epoch, val_loss=base + 1.0 / (epoch + 1))
    return {"val_loss": base + 1.0 / 3, "train_time_s": width / 10}


def bowl(cfg: Any, shift: float = 0.0) -> dict[str, float]:
    """A cheap curve per trial: val_loss falls with epochs toward a bowl around lr=1e-2 and
    width 64, so good and bad trials tell apart early (what pruners need). A trial that finds
    a ``kill-once`` file in ``markers`` removes it and SIGKILLs its own process mid-trial."""
    import math

    lr, width = float(cfg.optimizer.lr), float(cfg.model.hidden_size)
    floor = (math.log10(lr) + 2.0) ** 2 + ((width - 64) / 64) ** 2 + shift
    markers = Path(str(cfg.get("markers", "/nonexistent")))
    epochs = int(cfg.training.epochs)
    if (markers / "raise-once").exists():
        (markers / "raise-once").unlink()
        raise RuntimeError("a planned, one-off failure")
    for epoch in range(epochs):
        time.sleep(float(cfg.get("epoch_s", 0.0)))
        sweeper.report(epoch=epoch, val_loss=floor + 1.0 / (epoch + 1))
        kill = markers / "kill-once"
        if epoch == 1 and kill.exists():
            kill.unlink()
            os.kill(os.getpid(), signal.SIGKILL)
        if sweeper.should_prune():
            raise sweeper.TrialPruned()
    return {"val_loss": floor + 1.0 / epochs, "epochs_run": epochs, "train_time_s": width / 10}


def folded_bowl(cfg: Any) -> dict[str, float]:
    """``bowl`` on cross-validation folds: each fold (``data.fold``) shifts the loss by its own
    amount, the same for every config, so fold rows differ and configs keep their order."""
    import math

    return bowl(cfg, shift=0.1 * math.sin(int(cfg.data.fold) + 1))
