"""The multi-fidelity Hartmann-6 of scripts/mf_hartmann.py: the published optimum at full
fidelity, low fidelities that decorrelate when asked to, and values that repeat."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

_spec = importlib.util.spec_from_file_location(
    "mf_hartmann", Path(__file__).resolve().parents[1] / "scripts" / "mf_hartmann.py")
assert _spec is not None and _spec.loader is not None
mfh = importlib.util.module_from_spec(_spec)
sys.modules["mf_hartmann"] = mfh  # its dataclasses look their module up there
_spec.loader.exec_module(mfh)

R = 30


@pytest.mark.parametrize("correlation", list(mfh.CORRELATIONS))
def test_full_fidelity_is_hartmann6_with_its_published_minimum(correlation: str) -> None:
    # Surjanovic & Bingham: f(x*) = -3.32237 at x* = (0.20169, 0.150011, 0.476874, 0.275332,
    # 0.311652, 0.6573); neither bias nor noise is left at z = R
    assert mfh.mf_hartmann6(mfh.X_OPT, R, R, correlation) == pytest.approx(-3.32237, abs=1e-5)
    pts = np.random.default_rng(0).random((5000, 6))
    assert np.all(mfh.mf_hartmann6(pts, R, R, correlation) > -3.32237 - 1e-5)


def test_x_star_is_a_local_minimum_at_full_fidelity() -> None:
    rng = np.random.default_rng(1)
    near = np.clip(mfh.X_OPT + 0.01 * rng.standard_normal((200, 6)), 0, 1)
    assert np.all(mfh.mf_hartmann6(near, R, R) >= mfh.mf_hartmann6(mfh.X_OPT, R, R))


def test_bad_correlation_decorrelates_the_low_fidelities() -> None:
    good = mfh.fidelity_correlation("good", R, z=1)
    bad = mfh.fidelity_correlation("bad", R, z=1)
    terrible = mfh.fidelity_correlation("terrible", R, z=1)
    assert good > 0.8
    assert bad < 0.4
    assert terrible < bad
    # and the fidelities approach the truth as z grows
    assert mfh.fidelity_correlation("bad", R, z=20) > 0.9


def test_terrible_low_fidelity_points_away_from_the_optimum() -> None:
    # bias 3 removes the weight of the basin that holds x*, at z = 1
    pts = np.random.default_rng(2).random((2000, 6))
    best_low = pts[np.argmin(mfh.mf_hartmann6(pts, 1, R, "terrible"))]
    assert mfh.mf_hartmann6(mfh.X_OPT, 1, R, "terrible") > mfh.mf_hartmann6(best_low, 1, R, "terrible")


def test_values_repeat_for_the_same_point_fidelity_and_seed() -> None:
    x = np.random.default_rng(3).random((50, 6))
    a = mfh.mf_hartmann6(x, 3, R, "bad", seed=7)
    assert np.array_equal(a, mfh.mf_hartmann6(x, 3, R, "bad", seed=7))
    assert np.array_equal(a[4:5], mfh.mf_hartmann6(x[4:5], 3, R, "bad", seed=7))
    assert mfh.mf_hartmann6(x[4], 3, R, "bad", seed=7) == a[4]
    assert not np.array_equal(a, mfh.mf_hartmann6(x, 3, R, "bad", seed=8))


def test_noise_only_raises_the_value_and_fades_with_fidelity() -> None:
    x = np.random.default_rng(4).random((200, 6))
    bias, sigma = mfh.CORRELATIONS["bad"]
    for z in (1, 5, 29):
        s = np.log(z) / np.log(R)
        noiseless = -(np.exp(-np.sum(mfh.A * (x[:, None, :] - mfh.P) ** 2, axis=-1))
                      @ (mfh.ALPHA - bias * (1 - s)))
        extra = mfh.mf_hartmann6(x, z, R, "bad") - noiseless
        assert np.all(extra >= 0)
        assert np.all(extra <= sigma * (1 - s) * 6)


def test_rejects_a_fidelity_out_of_range() -> None:
    with pytest.raises(ValueError, match=r"1\.\.30"):
        mfh.mf_hartmann6(mfh.X_OPT, 0, R)


def test_simulation_counts_steps_and_keeps_full_fidelity_values() -> None:
    run = mfh.simulate("random+asha", "good", seed=0, n_trials=12, n_fidelities=9,
                       min_resource=1, reduction_factor=3, max_trials=12)
    full = mfh.simulate("random", "good", seed=0, n_trials=12, n_fidelities=9, max_trials=12)
    assert full.steps_at_n == 12 * 9 and full.pruned_at_n == 0
    assert run.pruned_at_n > 0 and run.steps_at_n < 12 * 9
    assert run.trace[-1][0] == run.steps_at_n
    # the same seeded draws; pruning keeps a subset of the full-fidelity values
    assert run.best_at_n >= full.best_at_n
