"""Time series generated on the spot (nothing is downloaded): chaotic systems whose
multi-step forecasts are hard enough that learning rate, width and depth matter."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np

__all__ = ["SERIES", "make_windows", "series"]


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
