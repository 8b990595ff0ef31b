"""Time series generated on the spot (nothing is downloaded): chaotic systems whose
multi-step forecasts are hard enough that learning rate, width and depth matter; the
windows cut from them, and how the windows split into train, validation and test.

Window ``i`` reads points ``i .. i+window-1`` and predicts point ``i+window+horizon-1``,
so windows in index order are in time order, and a split is a range of window indices.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from sweeper.errors import ConfigError

__all__ = ["SERIES", "SplitConf", "Splits", "make_windows", "series", "split_conf",
           "split_windows"]


def mackey_glass(length: int, seed: int, tau: int = 17, dt: float = 0.1, every: int = 10) -> np.ndarray:
    """The Mackey-Glass delay equation (tau=17: chaotic), sampled every ``every*dt``."""
    rng = np.random.default_rng(seed)
    lag = int(tau / dt)
    warmup = 500 * every
    n = length * every + warmup + lag
    x = np.empty(n)
    x[: lag + 1] = 1.2 + 0.05 * rng.standard_normal(lag + 1)
    for t in range(lag, n - 1):
        xd = x[t - lag]
        x[t + 1] = x[t] + dt * (0.2 * xd / (1.0 + xd**10) - 0.1 * x[t])
    return x[lag + warmup :: every][:length]


def lorenz(length: int, seed: int, dt: float = 0.01, every: int = 5) -> np.ndarray:
    """The x coordinate of the Lorenz attractor (sigma=10, rho=28, beta=8/3), RK4."""
    rng = np.random.default_rng(seed)
    state = np.array([1.0, 1.0, 1.0]) + 0.1 * rng.standard_normal(3)

    def f(s: np.ndarray) -> np.ndarray:
        x, y, z = s
        return np.array([10.0 * (y - x), x * (28.0 - z) - y, x * y - 8.0 / 3.0 * z])

    warmup = 1000
    out = np.empty(length)
    for i in range(warmup + length * every):
        k1 = f(state)
        k2 = f(state + 0.5 * dt * k1)
        k3 = f(state + 0.5 * dt * k2)
        k4 = f(state + dt * k3)
        state = state + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        j = i - warmup
        if j >= 0 and j % every == 0:
            out[j // every] = state[0]
    return out


SERIES: dict[str, Callable[[int, int], np.ndarray]] = {"mackey_glass": mackey_glass, "lorenz": lorenz}


@lru_cache(maxsize=8)
def series(name: str, length: int, seed: int) -> np.ndarray:
    if name not in SERIES:
        raise ValueError(f"unknown data.name {name!r}; options: {', '.join(SERIES)}")
    return SERIES[name](length, seed)


def make_windows(x: np.ndarray, window: int, horizon: int, noise: float, seed: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Inputs: ``window`` noisy past values; target: the clean value ``horizon`` steps on."""
    rng = np.random.default_rng(seed + 1)
    noisy = x + noise * x.std() * rng.standard_normal(x.shape)
    n = len(x) - window - horizon + 1
    idx = np.arange(window)[None, :] + np.arange(n)[:, None]
    inputs = noisy[idx][..., None].astype(np.float32)
    targets = x[np.arange(n) + window + horizon - 1][:, None].astype(np.float32)
    return inputs, targets


@dataclass(frozen=True)
class SplitConf:
    """The ``data.*`` keys that choose the splits (see conf/base.yaml)."""

    val_fraction: float  # the windows before the test split, last part: validation
    test_fraction: float = 0.0  # the last windows: the held-out test split
    n_folds: int | None = None  # forward-chaining CV: the non-test part cut into K+1 blocks
    fold: int | None = None  # train on blocks 0..fold, validate on block fold+1
    use_test: bool = False  # final mode: train on everything before test, then test once


@dataclass(frozen=True)
class Splits:
    """Window indices of each split, in time order; an unused split is an empty range."""

    train: range
    val: range
    test: range


def split_conf(data: Any) -> SplitConf:
    """Read and check the split keys of the ``data`` node (missing keys take defaults).

    >>> split_conf({"val_fraction": 0.2, "n_folds": 4, "fold": 1}).fold
    1
    """
    conf = SplitConf(float(data.get("val_fraction", 0.2)),
                     float(data.get("test_fraction", 0.0) or 0.0),
                     data.get("n_folds"), data.get("fold"), data.get("use_test", False))
    _check_conf(conf)
    return conf


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_conf(c: SplitConf) -> None:
    if not 0.0 <= c.test_fraction < 1.0:
        raise ConfigError(f"data.test_fraction must be in [0, 1), got {c.test_fraction}; "
                          "e.g. data.test_fraction=0.2, or 0 for no test split")
    if not isinstance(c.use_test, bool):
        raise ConfigError(f"data.use_test must be true or false, got {c.use_test!r}")
    if c.use_test and c.test_fraction == 0.0:
        raise ConfigError("data.use_test=true evaluates on the test split, but "
                          "data.test_fraction=0.0 leaves none; set data.test_fraction (e.g. 0.2)")
    if c.n_folds is not None and (not _is_int(c.n_folds) or c.n_folds < 2):
        raise ConfigError(f"data.n_folds must be an integer >= 2 (forward-chaining folds), got "
                          f"{c.n_folds!r}; e.g. data.n_folds=5, or data.n_folds=null for one split")
    if c.fold is None:
        if c.n_folds is not None and not c.use_test:
            raise ConfigError(f"data.n_folds={c.n_folds} needs data.fold, got null; set data.fold "
                              f"to one of 0..{c.n_folds - 1} (or sweep data.fold=range(0,"
                              f"{c.n_folds})), or data.n_folds=null")
        return
    if c.n_folds is None:
        raise ConfigError(f"data.fold={c.fold!r} needs data.n_folds, got null; set data.n_folds=K "
                          "(>= 2) with data.fold in 0..K-1, or data.fold=null")
    if not _is_int(c.fold) or not 0 <= c.fold < c.n_folds:
        raise ConfigError(f"data.fold must be an integer in 0..{c.n_folds - 1} with data.n_folds="
                          f"{c.n_folds}, got data.fold={c.fold!r}; pick one of 0..{c.n_folds - 1}")
    if c.use_test:
        raise ConfigError(f"data.use_test=true trains on all the data before the test split, so it "
                          f"takes no fold, got data.fold={c.fold}; set data.fold=null")


def split_windows(n_windows: int, window: int, horizon: int, conf: SplitConf) -> Splits:
    """The splits of ``n_windows`` windows, in time order: [train | val | test].

    Without test split and folds it is the plain split: the last ``val_fraction`` of the
    windows validate, the rest train, as always. Otherwise, at every boundary, the earlier
    side drops its windows whose target falls in the later split (the last
    ``window+horizon-1``), so no split reads a point of a later one. Folds forward-chain
    (rolling origin): the windows before the test split make K+1 consecutive blocks; fold
    k trains on blocks 0..k and validates on block k+1.

    >>> split_windows(100, 4, 2, SplitConf(0.2, test_fraction=0.1))  # gap: 4+2-1 windows
    Splits(train=range(0, 65), val=range(70, 85), test=range(90, 100))
    """
    gap = window + horizon - 1
    n_test = int(n_windows * conf.test_fraction)
    if conf.test_fraction > 0 and n_test <= 0:
        raise ConfigError(f"data.test_fraction={conf.test_fraction} of {n_windows} windows "
                          "leaves no test window; raise data.test_fraction or data.length")
    start_test = n_windows - n_test
    end = start_test - gap if n_test else start_test  # the last windows before test, purged
    none = range(0, 0)
    test = range(start_test, n_windows) if n_test else none
    if conf.use_test:
        return Splits(_nonempty(range(0, end), "the training split", "data.test_fraction"),
                      none, test)
    if conf.n_folds is not None and conf.fold is not None:
        return _fold(end, gap, conf.n_folds, conf.fold, test)
    start_val = start_test - int(n_windows * conf.val_fraction)
    # The plain split (no test split) keeps its old boundary, so old results stay the same.
    train = range(0, start_val - gap if n_test else start_val)
    return Splits(_nonempty(train, "the training split", "data.val_fraction"),
                  _nonempty(range(start_val, end), "the validation split", "data.val_fraction"),
                  test)


def _fold(end: int, gap: int, n_folds: int, fold: int, test: range) -> Splits:
    """Fold ``fold`` of windows ``0..end-1`` cut into ``n_folds+1`` blocks: train on blocks
    0..fold, less the last ``gap`` windows (their targets fall in the next block)."""
    edges = [j * end // (n_folds + 1) for j in range(n_folds + 2)]
    if edges[1] <= gap:
        raise ConfigError(
            f"data.n_folds={n_folds} cuts {end} windows into blocks of about "
            f"{end // (n_folds + 1)}, but each needs more than window+horizon-1={gap} "
            "(dropped at every boundary); use fewer folds or a longer data.length")
    return Splits(range(0, edges[fold + 1] - gap), range(edges[fold + 1], edges[fold + 2]), test)


def _nonempty(part: range, what: str, key: str) -> range:
    if len(part) <= 0:
        raise ConfigError(f"{what} has no windows (each boundary drops the windows whose target "
                          f"falls in the next split); change {key} or make data.length longer")
    return part
