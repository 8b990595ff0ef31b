"""Random search: seeded, log-aware, prefix-stable, and never the same point twice in a
finite space.

Prefix-stable: the points come from one seeded stream in fixed-size blocks that do not
depend on ``n_trials``, so ``n_trials=50`` starts with exactly the 20 points of
``n_trials=20``, and a sweep's budget can grow without changing its first trials.
"""

from __future__ import annotations

import math

import numpy as np

from sweeper.errors import SpaceError
from sweeper.space import Param
from sweeper.strategies._base import Design, Strategy

__all__ = ["RandomStrategy"]

# Rows drawn at a time. A constant, never derived from n_trials: that keeps draws prefix-stable.
_BLOCK = 1024
# Flat indices of a finite lattice must fit numpy's int64 for unravel_index.
_EXACT_LIMIT = 2**62


class RandomStrategy(Strategy):
    """``n_trials`` points drawn with ``numpy.random.default_rng(seed)``.

    >>> from sweeper.space import Param
    >>> d = RandomStrategy(n_trials=4, seed=0).propose((Param.categorical("a", [1, 2, 3, 4]),))
    >>> sorted(d.columns[0][1].tolist())
    [0, 1, 2, 3]
    """

    def __init__(self, n_trials: int, seed: int = 0) -> None:
        self.n_trials = n_trials
        self.seed = seed

    def propose(self, params: tuple[Param, ...]) -> Design:
        rng = np.random.default_rng(self.seed)
        sizes = [p.size for p in params]
        total = None if any(s is None for s in sizes) else math.prod(s or 0 for s in sizes)
        if total is not None and self.n_trials > total:
            raise SpaceError(
                f"search.n_trials={self.n_trials} exceeds the {total} distinct points of "
                "this finite space, and random search never repeats a point; lower "
                "n_trials or use search.method=grid"
            )
        if total is not None and total <= _EXACT_LIMIT and not any(
            p.log and p.kind != "categorical" for p in params
        ):
            # A uniform lattice: a lazy Fisher-Yates shuffle of the flat indices is exact
            # without replacement, costs O(n_trials) whatever the space's size.
            flat = _shuffled_prefix(total, self.n_trials, rng)
            idx = np.unravel_index(flat, sizes) if sizes else ()  # type: ignore[arg-type]
            cols = [_lattice(p, np.asarray(i, dtype=np.int64)) for p, i in zip(params, idx, strict=True)]
        else:
            cols = _rejection(params, self.n_trials, rng)
        return Design(n_trials=self.n_trials, columns=tuple(zip(params, cols, strict=True)))


def _shuffled_prefix(total: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """The first ``n`` entries of a uniform random permutation of ``range(total)``.

    Position ``i`` swaps with ``i + U[0, total - i)``; the draws come in blocks of a fixed
    size, and the permutation is kept sparse (only moved entries), so memory is O(n).
    """
    out = np.empty(n, dtype=np.int64)
    moved: dict[int, int] = {}
    for lo in range(0, n, _BLOCK):
        left = total - np.arange(lo, lo + _BLOCK, dtype=np.int64)
        offsets = rng.integers(0, np.maximum(left, 1)).tolist()  # past total: unused
        for i in range(lo, min(lo + _BLOCK, n)):
            j = i + offsets[i - lo]
            out[i] = moved.get(j, j)
            moved[j] = moved.get(i, i)
    return out


def _lattice(p: Param, i: np.ndarray) -> np.ndarray:
    """Map an index in 0..size-1 to the parameter's value (categoricals keep the index)."""
    if p.kind == "categorical":
        return i
    step = p.step if p.step is not None else 1
    values = p.low + i * step  # type: ignore[operator]
    return values.astype(np.int64) if p.kind == "int" else np.round(values, 12)


def _sample(p: Param, n: int, rng: np.random.Generator) -> np.ndarray:
    if p.kind == "categorical":
        return rng.integers(0, len(p.choices), size=n)
    lo, hi = float(p.low), float(p.high)  # type: ignore[arg-type]
    if p.log and p.kind == "int":
        # Optuna's rule: widen by half a unit in log space so both ends are as likely.
        raw = np.exp(rng.uniform(math.log(lo - 0.5), math.log(hi + 0.5), size=n))
        return np.clip(np.rint(raw), lo, hi).astype(np.int64)
    if p.log:
        return np.exp(rng.uniform(math.log(lo), math.log(hi), size=n))
    if p.finite:
        return _lattice(p, rng.integers(0, p.size or 1, size=n))
    return rng.uniform(lo, hi, size=n)


def _rejection(params: tuple[Param, ...], n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Draw blocks of rows, keeping first occurrences, until ``n`` distinct points.

    Whether a row is kept depends only on the rows before it, so the result is a prefix of
    what a larger ``n`` gives.
    """
    if not params:
        return []
    kept: list[list[np.ndarray]] = []
    seen: set[bytes] = set()
    rounds = max(100, math.ceil(100 * n / _BLOCK))
    for _ in range(rounds):
        draws = [_sample(p, _BLOCK, rng) for p in params]
        fresh = _unseen(draws, seen)
        kept.append([d[fresh] for d in draws])
        if len(seen) >= n:
            return [np.concatenate(c)[:n] for c in zip(*kept, strict=True)]
    raise SpaceError(
        f"could not draw {n} distinct points from this space in {rounds * _BLOCK:,} draws; "
        "lower search.n_trials or use search.method=grid"
    )


def _unseen(draws: list[np.ndarray], seen: set[bytes]) -> list[int]:
    """Rows of this block not drawn before (each row's bytes are its key); adds them to seen."""
    rows = np.ascontiguousarray(np.stack([d.astype(np.float64) for d in draws], axis=1))
    fresh = []
    for r, key in enumerate(rows.view(f"V{rows.shape[1] * 8}").ravel().tolist()):
        if key not in seen:
            seen.add(key)
            fresh.append(r)
    return fresh
