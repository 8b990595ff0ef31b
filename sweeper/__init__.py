"""sweeper: hyperparameter sweeps from one YAML search space, on a laptop or on SLURM.

The task-side API is small and does nothing outside a sweep::

    import sweeper

    def train(cfg):
        for epoch in range(cfg.training.epochs):
            ...
            sweeper.report(epoch=epoch, train_loss=tl, val_loss=vl)
            if sweeper.should_prune():  # search.pruner: stop a hopeless trial early
                raise sweeper.TrialPruned()
        return {"val_loss": best}
"""

from __future__ import annotations

from sweeper.context import (
    TrialInterrupted,
    TrialPruned,
    current,
    load_checkpoint,
    report,
    save_checkpoint,
    should_checkpoint,
    should_prune,
    trial_dir,
)

__version__ = "0.1.0"

__all__ = [
    "TrialInterrupted",
    "TrialPruned",
    "__version__",
    "current",
    "load_checkpoint",
    "report",
    "save_checkpoint",
    "should_checkpoint",
    "should_prune",
    "trial_dir",
]
