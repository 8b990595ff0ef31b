"""The built-in task's splits: [train | val | test] in time order, forward-chaining folds,
and the final mode that trains on train+val and tests once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from sweeper import context
from sweeper.tasks import data, lstm
from sweeper.tasks.data import SplitConf, Splits, split_conf, split_windows

CONF = Path(__file__).resolve().parents[1] / "conf"


def _cfg(**over: Any) -> Any:
    """conf/base.yaml + scenario/tiny.yaml, as Hydra composes them, plus ``over``."""
    base = OmegaConf.load(CONF / "base.yaml")
    cfg = OmegaConf.merge(base, OmegaConf.load(CONF / "scenario" / "tiny.yaml"), over)
    cfg.pop("defaults")
    return cfg


def _first_point(i: int) -> int:
    return i  # window i reads points i .. i+window-1


def _target_point(i: int, window: int, horizon: int) -> int:
    return i + window + horizon - 1


def _assert_no_leak(earlier: range, later: range, window: int, horizon: int) -> None:
    """Every point the earlier split reads or predicts comes before every point of the later."""
    assert _target_point(earlier[-1], window, horizon) < _first_point(later[0])


# -- the plain split is today's ---------------------------------------------------------

@pytest.mark.parametrize("n", [97, 385, 1961])
@pytest.mark.parametrize("val_fraction", [0.1, 0.2, 0.35])
def test_plain_split_is_the_old_one(n: int, val_fraction: float) -> None:
    n_val = int(n * val_fraction)
    assert split_windows(n, 12, 4, SplitConf(val_fraction)) == \
        Splits(range(0, n - n_val), range(n - n_val, n), range(0, 0))


def _old_data(cfg: Any) -> tuple[torch.Tensor, ...]:
    """The task's data before splits existed (commit b808426), line for line."""
    d = cfg.data
    x = data.series(d.name, int(d.length), int(d.seed))
    inputs, targets = data.make_windows(x, int(d.window), int(d.horizon), float(d.noise),
                                        int(d.seed))
    n_val = int(len(inputs) * float(d.val_fraction))
    split = len(inputs) - n_val
    mean, std = inputs[:split].mean(), inputs[:split].std()
    norm = [(a - mean) / std
            for a in (inputs[:split], targets[:split], inputs[split:], targets[split:])]
    return tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in norm)


@pytest.mark.parametrize("scenario", ["tiny", "mackey_glass", "lorenz"])
def test_default_tensors_are_bit_identical_to_the_old_ones(scenario: str) -> None:
    cfg = OmegaConf.merge(OmegaConf.load(CONF / "base.yaml"),
                          OmegaConf.load(CONF / "scenario" / f"{scenario}.yaml"))
    inputs, targets, splits = lstm._windows(cfg, split_conf(cfg.data))
    part = splits.train
    mean, std = inputs[part.start : part.stop].mean(), inputs[part.start : part.stop].std()
    new = [*lstm._tensors(inputs, targets, splits.train, mean, std),
           *lstm._tensors(inputs, targets, splits.val, mean, std)]
    for old, now in zip(_old_data(cfg), new, strict=True):
        assert old.dtype == now.dtype and torch.equal(old, now)


def test_default_run_gives_the_old_val_loss() -> None:
    # Measured with the task as it was before splits (commit b808426) on this config: 0.76433200
    # on 1 CPU thread, 0.76433206 on 2 (the thread count moves the last bits only).
    result = lstm.train(_cfg())
    assert result["val_loss"] == pytest.approx(0.76433200, rel=1e-5)
    assert (result["best_epoch"], result["epochs_run"]) == (2, 3)
    assert set(result) == {"val_loss", "train_time_s", "best_epoch", "epochs_run"}


# -- test split and folds ---------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(n=st.integers(50, 3000), window=st.integers(1, 40), horizon=st.integers(1, 20),
       val_fraction=st.floats(0.05, 0.4), test_fraction=st.floats(0.05, 0.4))
def test_test_split_comes_last_and_nothing_leaks(n: int, window: int, horizon: int,
                                                 val_fraction: float, test_fraction: float) -> None:
    conf = SplitConf(val_fraction, test_fraction)
    try:
        s = split_windows(n, window, horizon, conf)
    except ValueError as ex:  # too few windows for the gaps: said, never silently empty
        assert "no windows" in str(ex) or "no test window" in str(ex)
        return
    gap = window + horizon - 1
    assert s.test == range(n - int(n * test_fraction), n)
    assert s.val.start == s.test.start - int(n * val_fraction) and s.val.stop == s.test.start - gap
    assert s.train == range(0, s.val.start - gap)
    _assert_no_leak(s.train, s.val, window, horizon)
    _assert_no_leak(s.val, s.test, window, horizon)
    # only the windows whose target falls in the next split are dropped
    assert _target_point(s.val.stop, window, horizon) == s.test.start
    assert split_windows(n, window, horizon, conf) == s  # deterministic

    final = split_windows(n, window, horizon, SplitConf(val_fraction, test_fraction, use_test=True))
    assert final == Splits(range(0, s.val.stop), range(0, 0), s.test)  # train+val, then test


@settings(max_examples=300, deadline=None)
@given(n=st.integers(100, 3000), window=st.integers(1, 40), horizon=st.integers(1, 20),
       n_folds=st.integers(2, 8), test_fraction=st.sampled_from([0.0, 0.1, 0.25]))
def test_folds_chain_forward(n: int, window: int, horizon: int, n_folds: int,
                             test_fraction: float) -> None:
    def split(fold: int) -> Splits:
        return split_windows(n, window, horizon, SplitConf(0.2, test_fraction, n_folds, fold))

    try:
        folds = [split(k) for k in range(n_folds)]
    except ValueError as ex:
        assert "data.n_folds" in str(ex) or "no test window" in str(ex)
        return
    gap = window + horizon - 1
    n_test = int(n * test_fraction)
    end = n - n_test - (gap if n_test else 0)  # what comes before the test split, purged
    for k, s in enumerate(folds):
        assert s.train.start == 0 and len(s.train) > 0 and len(s.val) > 0
        _assert_no_leak(s.train, s.val, window, horizon)  # validation comes after training
        assert s.test == range(n - n_test, n)
        assert s.val.stop <= end
        if n_test:
            _assert_no_leak(s.val, s.test, window, horizon)
        if k:  # expanding window: the last fold's validation block joins the training
            prev = folds[k - 1]
            assert s.val.start == prev.val.stop
            assert s.train.stop == prev.val.stop - gap and len(s.train) > len(prev.train)
    assert folds[-1].val.stop == end  # the K validation blocks reach the test split
    assert [split(k) for k in range(n_folds)] == folds  # deterministic


def test_tiny_folds_by_hand() -> None:
    # 385 windows, window 12 + horizon 4: gap 15; 3 folds cut them into 4 blocks of ~96
    folds = [split_windows(385, 12, 4, SplitConf(0.2, 0.0, 3, k)) for k in range(3)]
    assert [(f.train, f.val) for f in folds] == [
        (range(0, 81), range(96, 192)), (range(0, 177), range(192, 288)),
        (range(0, 273), range(288, 385))]


def test_fold_run_validates_on_its_block_and_data_is_deterministic() -> None:
    cfg = _cfg(data={"n_folds": 3, "fold": 1})
    a, b = lstm._windows(cfg, split_conf(cfg.data)), lstm._windows(cfg, split_conf(cfg.data))
    data.series.cache_clear()
    c = lstm._windows(cfg, split_conf(cfg.data))
    assert a[2] == b[2] == c[2] and np.array_equal(a[0], c[0]) and np.array_equal(a[1], c[1])
    result = lstm.train(cfg)
    assert np.isfinite(result["val_loss"]) and result["epochs_run"] == 3


# -- bad values -------------------------------------------------------------------------

@pytest.mark.parametrize(("keys", "words"), [
    ({"n_folds": 1, "fold": 0}, ["data.n_folds", ">= 2", "got 1"]),
    ({"n_folds": 2.5, "fold": 0}, ["data.n_folds", "got 2.5"]),
    ({"n_folds": 3, "fold": 3}, ["data.fold", "0..2", "got data.fold=3"]),
    ({"n_folds": 3, "fold": -1}, ["data.fold", "0..2", "got data.fold=-1"]),
    ({"fold": 1}, ["data.fold=1", "needs data.n_folds", "data.fold=null"]),
    ({"n_folds": 4}, ["data.n_folds=4", "needs data.fold", "0..3"]),
    ({"use_test": True}, ["data.use_test=true", "data.test_fraction=0.0", "set data.test_fraction"]),
    ({"use_test": True, "test_fraction": 0.2, "n_folds": 3, "fold": 0},
     ["data.use_test=true", "no fold", "data.fold=null"]),
    ({"test_fraction": 1.0}, ["data.test_fraction", "[0, 1)", "got 1.0"]),
    ({"use_test": "yes", "test_fraction": 0.2}, ["data.use_test", "true or false"]),
])
def test_bad_split_keys_are_one_clear_line(keys: dict[str, Any], words: list[str]) -> None:
    with pytest.raises(ValueError) as raised:
        split_conf({"val_fraction": 0.2, **keys})
    message = str(raised.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_splits_too_small_for_the_gaps_are_refused() -> None:
    with pytest.raises(ValueError, match=r"data\.n_folds=40 .* fewer folds"):
        split_windows(385, 12, 4, SplitConf(0.2, 0.0, 40, 0))
    with pytest.raises(ValueError, match=r"validation split has no windows.*data\.val_fraction"):
        split_windows(385, 12, 4, SplitConf(0.02, 0.2))  # 7 val windows, 15 dropped
    with pytest.raises(ValueError, match=r"no test window"):
        split_windows(385, 12, 4, SplitConf(0.2, 0.001))


def test_the_task_refuses_bad_keys_before_any_work(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lstm, "series", lambda *a: pytest.fail("generated data first"))
    with pytest.raises(ValueError, match=r"set data\.test_fraction"):
        lstm.train(_cfg(data={"use_test": True}))


# -- final mode -------------------------------------------------------------------------

def _refuse_test(*args: Any) -> None:
    raise AssertionError("the test split was built outside final mode")


@pytest.mark.parametrize("keys", [{"test_fraction": 0.2},
                                  {"test_fraction": 0.2, "n_folds": 2, "fold": 1}])
def test_normal_runs_never_build_the_test_split(monkeypatch: pytest.MonkeyPatch,
                                                keys: dict[str, Any]) -> None:
    monkeypatch.setattr(lstm, "_test_tensors", _refuse_test)
    result = lstm.train(_cfg(data=keys))
    assert np.isfinite(result["val_loss"]) and "test_loss" not in result


def _final_cfg() -> Any:
    # patience 1 would stop a normal run early; final mode has no validation to stop on
    return _cfg(data={"test_fraction": 0.2, "use_test": True},
                training={"epochs": 4, "patience": 1})


def test_final_mode_trains_on_train_and_val_then_tests_once_and_saves_the_model(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built = []

    def spy(*args: Any) -> tuple[torch.Tensor, torch.Tensor]:
        built.append(args[2])
        return _test_tensors(*args)

    _test_tensors = lstm._test_tensors
    monkeypatch.setattr(lstm, "_test_tensors", spy)
    ctx = context.TrialContext(0, tmp_path, tmp_path / "trial")
    with context.activate(ctx):
        result = lstm.train(_final_cfg())

    assert set(result) == {"test_loss", "train_loss", "train_time_s", "epochs_run", "model_saved"}
    assert all(isinstance(v, (int, float)) for v in result.values())
    assert result["epochs_run"] == 4 and result["model_saved"] == 1.0
    assert [p["epoch"] for p in ctx.curve] == [0, 1, 2, 3]
    assert all("val_loss" not in p for p in ctx.curve)
    assert result["train_loss"] == ctx.curve[-1]["train_loss"]
    (splits,) = built  # the test split, built once
    assert splits.train == range(0, 308 - 15) and len(splits.val) == 0  # train+val, purged
    assert splits.test == range(308, 385)

    # the saved model, loaded safely, scores the same test_loss on the test windows
    state = torch.load(tmp_path / "trial" / lstm.MODEL_NAME, weights_only=True)
    model = lstm.LSTMRegressor(16, 1, 0.0)
    model.load_state_dict(state)
    cfg = _final_cfg()
    inputs, targets, s = lstm._windows(cfg, split_conf(cfg.data))
    mean, std = inputs[s.train.start : s.train.stop].mean(), inputs[s.train.start : s.train.stop].std()
    assert lstm._evaluate(model, *_test_tensors(inputs, targets, s, mean, std)) \
        == pytest.approx(result["test_loss"], rel=1e-6)

    # outside a sweep: the same training, nothing saved
    monkeypatch.chdir(tmp_path / "trial")
    alone = lstm.train(_final_cfg())
    assert alone["model_saved"] == 0.0
    assert alone["test_loss"] == pytest.approx(result["test_loss"], rel=1e-5)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["model.pt", "trial"]
