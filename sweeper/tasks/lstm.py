"""The built-in task: an LSTM that forecasts a chaotic time series.

Adam with gradient clipping and MSE loss; learning-rate schedules none, step,
exponential or cosine; early stopping with ``patience`` and ``min_delta``. It reports
every epoch to the sweep (the curve) and checkpoints when the scheduler warns that
the trial will be stopped, so a requeued trial continues where it stopped.

The splits (``data.test_fraction``, ``data.n_folds``, ``data.fold``) are chosen in
:mod:`sweeper.tasks.data`. In final mode (``data.use_test``) it trains on everything
before the test split for all ``training.epochs``, tests once and saves the model.

Run it alone with ``python -m sweeper scenario=tiny``.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import torch
from torch import nn

import sweeper
from sweeper.tasks.data import SplitConf, Splits, make_windows, series, split_conf, split_windows

__all__ = ["MODEL_NAME", "LSTMRegressor", "train"]

MODEL_NAME = "model.pt"  # final mode: the trained state_dict, in the trial's dir


class LSTMRegressor(nn.Module):
    """LSTM over a window of past values, a linear head on the last hidden state."""

    def __init__(self, hidden_size: int, num_layers: int, dropout: float) -> None:
        super().__init__()
        self.lstm = nn.LSTM(1, hidden_size, num_layers, batch_first=True,
                            dropout=dropout if num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.head(self.dropout(out[:, -1]))  # type: ignore[no-any-return,unused-ignore]


def _scheduler(opt: torch.optim.Optimizer, cfg: Any, epochs: int) -> Any:
    name = cfg.scheduler.name
    if name == "none":
        return None
    if name == "step":
        return torch.optim.lr_scheduler.StepLR(opt, cfg.scheduler.step_size, cfg.scheduler.gamma)
    if name == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(opt, cfg.scheduler.gamma)
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    raise ValueError(f"unknown scheduler.name {name!r}; options: none, step, exponential, cosine")


def _windows(cfg: Any, conf: SplitConf) -> tuple[np.ndarray, np.ndarray, Splits]:
    d = cfg.data
    x = series(d.name, int(d.length), int(d.seed))
    inputs, targets = make_windows(x, int(d.window), int(d.horizon), float(d.noise), int(d.seed))
    return inputs, targets, split_windows(len(inputs), int(d.window), int(d.horizon), conf)


def _tensors(inputs: np.ndarray, targets: np.ndarray, part: range, mean: Any, std: Any
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """One split's windows, scaled by the training inputs' ``mean`` and ``std``."""
    x, y = ((a[part.start : part.stop] - mean) / std for a in (inputs, targets))
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y))


def _test_tensors(inputs: np.ndarray, targets: np.ndarray, splits: Splits, mean: Any, std: Any
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """The held-out test split: built in final mode only, and only after training."""
    return _tensors(inputs, targets, splits.test, mean, std)


def _epoch(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
           batch_size: int, clip: float, gen: torch.Generator) -> float:
    model.train()
    loss_fn, total = nn.MSELoss(), 0.0
    order = torch.randperm(len(x), generator=gen)
    for start in range(0, len(x), batch_size):
        idx = order[start : start + batch_size].to(x.device)
        opt.zero_grad()
        loss = loss_fn(model(x[idx]), y[idx])
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        total += loss.item() * len(idx)
    return total / len(x)


@torch.no_grad()
def _evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return float(nn.functional.mse_loss(model(x), y).item())


def _device(cfg: Any) -> torch.device:
    """``training.device``: ``auto`` (the GPU the executor gave this trial, else the CPU),
    ``cpu`` or ``cuda``. Each local slot sees one GPU through CUDA_VISIBLE_DEVICES."""
    from omegaconf import OmegaConf

    choice = str(OmegaConf.select(cfg, "training.device", default="auto"))
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(choice)


def _setup(cfg: Any, device: torch.device) -> tuple[nn.Module, torch.optim.Optimizer, Any,
                                                 torch.Generator, dict[str, Any]]:
    """Model, optimizer, schedule, batch-order RNG and progress: new, or from the checkpoint."""
    m, o, t = cfg.model, cfg.optimizer, cfg.training
    model = LSTMRegressor(int(m.hidden_size), int(m.num_layers), float(m.dropout)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=float(o.lr), weight_decay=float(o.weight_decay))
    sched = _scheduler(opt, cfg, int(t.epochs))
    gen = torch.Generator().manual_seed(int(cfg.seed))
    state: dict[str, Any] = {"epoch": 0, "best": float("inf"), "best_epoch": -1, "bad": 0,
                             "time_s": 0.0}
    saved = sweeper.load_checkpoint()
    if saved is not None:
        model.load_state_dict(saved["model"])  # copied onto the model's device
        opt.load_state_dict(saved["optimizer"])
        if sched is not None:
            sched.load_state_dict(saved["scheduler"])
        gen.set_state(saved["generator"])
        state = saved["state"]
    state.setdefault("train_loss", float("nan"))  # final mode's; absent from older checkpoints
    return model, opt, sched, gen, state


def _checkpoint(model: nn.Module, opt: torch.optim.Optimizer, sched: Any, gen: torch.Generator,
                state: dict[str, Any], t0: float) -> None:
    state["time_s"] += time.perf_counter() - t0
    sweeper.save_checkpoint({
        "model": model.state_dict(), "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict() if sched is not None else {},
        "generator": gen.get_state(), "state": state,
    })


def _save_model(model: nn.Module) -> bool:
    """Save the state_dict (on the CPU) atomically in the trial's dir; False outside a sweep."""
    where = sweeper.trial_dir()
    if where is None:
        return False
    target = where / MODEL_NAME
    tmp = target.with_name(f".{MODEL_NAME}.tmp")
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
    os.replace(tmp, target)
    return True


def train(cfg: Any) -> dict[str, float | int]:
    """Train and return ``val_loss`` (best epoch), ``train_time_s``, ``best_epoch``,
    ``epochs_run``. With ``data.use_test`` see :func:`_final`."""
    t0 = time.perf_counter()
    conf = split_conf(cfg.data)  # bad split keys fail here, before any work
    torch.manual_seed(int(cfg.seed))
    device = _device(cfg)
    inputs, targets, splits = _windows(cfg, conf)
    part = splits.train
    mean, std = inputs[part.start : part.stop].mean(), inputs[part.start : part.stop].std()
    x_tr, y_tr = (a.to(device) for a in _tensors(inputs, targets, part, mean, std))
    model, opt, sched, gen, state = _setup(cfg, device)
    if conf.use_test:
        train_loss = _fit_all(cfg, model, opt, sched, gen, state, x_tr, y_tr, t0)
        x_te, y_te = (a.to(device) for a in _test_tensors(inputs, targets, splits, mean, std))
        return _final(model, state, train_loss, _evaluate(model, x_te, y_te), t0)
    x_val, y_val = (a.to(device) for a in _tensors(inputs, targets, splits.val, mean, std))
    o, t = cfg.optimizer, cfg.training
    for epoch in range(int(state["epoch"]), int(t.epochs)):
        train_loss = _epoch(model, opt, x_tr, y_tr, int(t.batch_size), float(o.grad_clip), gen)
        val_loss = _evaluate(model, x_val, y_val)
        lr = opt.param_groups[0]["lr"]
        if sched is not None:
            sched.step()
        sweeper.report(epoch=epoch, train_loss=train_loss, val_loss=val_loss, lr=lr)
        if not np.isfinite(val_loss):
            raise FloatingPointError(f"val_loss is {val_loss} at epoch {epoch}: training diverged")
        if val_loss < state["best"] - float(t.min_delta):
            state.update(best=val_loss, best_epoch=epoch, bad=0)
        else:
            state["bad"] += 1
        state["epoch"] = epoch + 1
        if sweeper.should_prune():  # search.pruner judged it hopeless at this epoch
            raise sweeper.TrialPruned(f"pruned after epoch {epoch} (val_loss {val_loss:.4g})")
        if state["bad"] >= int(t.patience):
            break
        if sweeper.should_checkpoint():
            _checkpoint(model, opt, sched, gen, state, t0)
    return {
        "val_loss": float(state["best"]),
        "train_time_s": float(state["time_s"]) + time.perf_counter() - t0,
        "best_epoch": int(state["best_epoch"]),
        "epochs_run": int(state["epoch"]),
    }


def _fit_all(cfg: Any, model: nn.Module, opt: torch.optim.Optimizer, sched: Any,
             gen: torch.Generator, state: dict[str, Any], x: torch.Tensor, y: torch.Tensor,
             t0: float) -> float:
    """Final mode's training: every epoch of ``training.epochs`` (nothing to stop on, since
    there is no validation split); it reports and checkpoints as a normal run, never prunes."""
    o, t = cfg.optimizer, cfg.training
    for epoch in range(int(state["epoch"]), int(t.epochs)):
        train_loss = _epoch(model, opt, x, y, int(t.batch_size), float(o.grad_clip), gen)
        lr = opt.param_groups[0]["lr"]
        if sched is not None:
            sched.step()
        sweeper.report(epoch=epoch, train_loss=train_loss, lr=lr)
        if not np.isfinite(train_loss):
            raise FloatingPointError(f"train_loss is {train_loss} at epoch {epoch}: "
                                     "training diverged")
        state.update(epoch=epoch + 1, train_loss=train_loss)
        if sweeper.should_checkpoint():
            _checkpoint(model, opt, sched, gen, state, t0)
    return float(state["train_loss"])


def _final(model: nn.Module, state: dict[str, Any], train_loss: float, test_loss: float,
           t0: float) -> dict[str, float | int]:
    """Final mode's metrics: ``test_loss`` (MSE on the test split, measured once),
    ``train_loss`` (the last epoch's), ``train_time_s``, ``epochs_run`` and ``model_saved``
    (1.0 when ``model.pt`` was written in the trial's dir, 0.0 outside a sweep)."""
    saved = _save_model(model)
    return {
        "test_loss": test_loss,
        "train_loss": train_loss,
        "train_time_s": float(state["time_s"]) + time.perf_counter() - t0,
        "epochs_run": int(state["epoch"]),
        "model_saved": 1.0 if saved else 0.0,
    }
