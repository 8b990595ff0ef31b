"""The narrowing rule between a campaign's stages (and under `sweeper next`), on hand-made
space records: windows, edges in both modes, step grids, lists, groups and the YAML form."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sweeper.errors import SpaceError
from sweeper.narrow import at_edge, narrow_space, to_yaml_space
from sweeper.space import Param, param_from_yaml

LR: dict[str, Any] = {"key": "optimizer.lr", "kind": "float", "low": 1e-4, "high": 1e-1, "log": True}
DROPOUT: dict[str, Any] = {"key": "model.dropout", "kind": "float", "low": 0.0, "high": 0.4}
HIDDEN: dict[str, Any] = {"key": "model.hidden_size", "kind": "int", "low": 16, "high": 256, "step": 16}
LAYERS: dict[str, Any] = {"key": "model.layers", "kind": "int", "low": 1, "high": 8}
BATCH: dict[str, Any] = {"key": "training.batch_size", "kind": "categorical", "choices": [16, 32, 64, 128],
         "labels": ["16", "32", "64", "128"]}
MODEL: dict[str, Any] = {"key": "model", "kind": "categorical", "choices": ["lstm", "gru", "tcn"],
         "labels": ["lstm", "gru", "tcn"], "group": True}


def one(spec: dict[str, Any], best: Any, **kw: Any) -> dict[str, Any]:
    return narrow_space([spec], {spec["key"]: best}, **kw)[0]


def bounds(spec: dict[str, Any], best: Any, **kw: Any) -> tuple[Any, Any]:
    out = one(spec, best, **kw)
    return out["low"], out["high"]


def grid_values(spec: dict[str, Any]) -> list[Any]:
    return list(param_from_yaml(spec["key"], to_yaml_space([spec])[spec["key"]]).grid().choices)


# -- log keys: x/÷ factor ---------------------------------------------------------------------

def test_log_key_goes_to_best_over_and_times_factor() -> None:
    assert bounds(LR, 1e-3) == (0.0003333, 0.003)
    assert bounds(LR, 1e-3, factor=10) == (1e-4, 1e-2)


@pytest.mark.parametrize(("best", "clipped", "past"), [
    (1e-4, (1e-4, 9e-4), (1.111e-5, 3e-4)),       # the low end: x9 above it, or /9 past it
    (1e-1, (0.01111, 1e-1), (0.03333, 0.9)),     # the high end
])
def test_log_key_at_an_edge_in_both_modes(best: float, clipped: tuple[float, float],
                                          past: tuple[float, float]) -> None:
    assert bounds(LR, best) == pytest.approx(clipped)
    assert bounds(LR, best, past_edges=True) == pytest.approx(past)


def test_factor_none_takes_fraction_of_the_log_range() -> None:
    low, high = bounds(LR, 10 ** -2.5, factor=None, fraction=0.25)  # 3 decades: ± 0.75 decade
    assert math.log10(low) == pytest.approx(-3.25, abs=1e-3)
    assert math.log10(high) == pytest.approx(-1.75, abs=1e-3)


# -- linear floats: ± fraction of the range -----------------------------------------------------

def test_linear_float_goes_to_a_fraction_of_the_range() -> None:
    assert bounds(DROPOUT, 0.2) == (0.1, 0.3)
    assert bounds(DROPOUT, 0.2, fraction=0.1) == (0.16, 0.24)


@pytest.mark.parametrize(("best", "clipped", "past"), [
    (0.0, (0.0, 0.2), (0.0, 0.1)),     # never negative, so never below 0 past the edge either
    (0.4, (0.2, 0.4), (0.3, 0.6)),
])
def test_linear_float_at_an_edge_in_both_modes(best: float, clipped: tuple[float, float],
                                               past: tuple[float, float]) -> None:
    assert bounds(DROPOUT, best) == pytest.approx(clipped)
    assert bounds(DROPOUT, best, past_edges=True) == pytest.approx(past)


def test_a_signed_range_moves_below_zero_past_its_edge() -> None:
    spec = {"key": "bias", "kind": "float", "low": -1.0, "high": 1.0}
    assert bounds(spec, -1.0, past_edges=True) == (-2.0, -0.5)
    assert bounds(spec, -1.0) == (-1.0, 0.0)


def test_rounding_never_drops_the_best_from_a_narrow_window() -> None:
    spec = {"key": "x", "kind": "float", "low": 10000.0, "high": 10000.4}
    low, high = bounds(spec, 10000.2)
    assert 10000.0 <= low < 10000.2 < high <= 10000.4


# -- ints: ± int_steps steps, on the step grid --------------------------------------------------

def test_int_goes_to_int_steps_around_the_best() -> None:
    assert bounds(LAYERS, 4) == (2, 6)
    assert bounds(HIDDEN, 128) == (96, 160)
    assert grid_values(one(HIDDEN, 128, int_steps=1)) == [112, 128, 144]


@pytest.mark.parametrize(("best", "clipped", "past"), [
    (16, (16, 80), (0, 48)),         # past the low end, but not below 0
    (256, (192, 256), (224, 320)),
])
def test_int_at_an_edge_in_both_modes(best: int, clipped: tuple[int, int],
                                      past: tuple[int, int]) -> None:
    assert bounds(HIDDEN, best) == clipped
    assert bounds(HIDDEN, best, past_edges=True) == past


def test_int_windows_stay_on_the_original_step_grid() -> None:
    spec = {"key": "h", "kind": "int", "low": 3, "high": 50, "step": 7}  # 3, 10, ..., 45
    original = set(grid_values(spec))
    for best in sorted(original):
        for past_edges in (False, True):
            for int_steps in (1, 2, None):  # None: a fraction of the range, rounded outward
                out = one(spec, best, past_edges=past_edges, int_steps=int_steps)
                values = grid_values(out)
                assert best in values
                assert all((v - 3) % 7 == 0 for v in values), (best, out)
                if not past_edges:
                    assert set(values) <= original


def test_log_int_is_whole_and_positive() -> None:
    spec = {"key": "units", "kind": "int", "low": 2, "high": 1024, "log": True}
    assert bounds(spec, 32) == (10, 96)
    assert bounds(spec, 2, past_edges=True) == (1, 6)


# -- lists and config groups --------------------------------------------------------------------

def test_categorical_keeps_its_top_ranked_choices_with_the_best() -> None:
    out = one(BATCH, 64, ranked={"training.batch_size": [64, 16, 128, 32]}, top=2)
    assert out["choices"] == [16, 64] and out["labels"] == ["16", "64"]  # the list's own order
    # the best is kept even when a ranking puts it lower
    out = one(BATCH, 32, ranked={"training.batch_size": [16, 128, 32]}, top=2)
    assert out["choices"] == [16, 32]


def test_numbers_without_a_ranking_keep_the_best_and_its_neighbours() -> None:
    assert one(BATCH, 32, top=3)["choices"] == [16, 32, 64]
    assert one(BATCH, 16, top=3)["choices"] == [16, 32, 64]  # shifted inward at the end
    past = one(BATCH, 16, top=3, past_edges=True)  # and past it, in the list's own ratio
    assert past["choices"] == [8, 16, 32] and past["labels"] == ["8", "16", "32"]
    assert one(BATCH, 128, top=3, past_edges=True)["choices"] == [64, 128, 256]


def test_config_groups_keep_their_top_options() -> None:
    out = one(MODEL, "gru", ranked={"model": ["gru", "tcn", "lstm"]}, top=2)
    assert out["choices"] == ["gru", "tcn"] and out["group"] is True
    assert one(MODEL, "gru")["choices"] == ["gru"]  # no ranking: the best alone
    assert to_yaml_space([out]) == {"model": ["gru", "tcn"]}


def test_a_best_outside_the_choices_is_a_clear_error() -> None:
    with pytest.raises(SpaceError, match=r"the best value 48 of 'training\.batch_size' is not one"):
        one(BATCH, 48)


# -- degenerate input and the arguments ---------------------------------------------------------

@pytest.mark.parametrize("past_edges", [False, True])
def test_a_one_point_range_is_kept(past_edges: bool) -> None:
    for spec in ({"key": "x", "kind": "float", "low": 0.123456, "high": 0.123456},
                 {"key": "n", "kind": "int", "low": 3, "high": 3},
                 {"key": "lr", "kind": "float", "low": 1e-3, "high": 1e-3, "log": True}):
        assert one(spec, spec["low"], past_edges=past_edges) == spec


def test_unknown_best_values_leave_the_key_and_the_input_is_not_changed() -> None:
    space = [dict(LR), dict(DROPOUT), dict(BATCH)]
    out = narrow_space(space, {"optimizer.lr": float("nan"), "model.dropout": None})
    assert out == [LR, DROPOUT, BATCH] and out[0] is not space[0]
    narrow_space(space, {"optimizer.lr": 1e-3, "model.dropout": 0.1, "training.batch_size": 32})
    assert space == [LR, DROPOUT, BATCH]


@pytest.mark.parametrize(("kw", "fragment"), [
    ({"factor": 1.0}, "`factor` must be > 1"), ({"fraction": 0.0}, "`fraction` must be > 0"),
    ({"int_steps": 0}, "`int_steps` must be >= 1"), ({"top": 0}, "`top` must be >= 1"),
])
def test_bad_arguments_are_space_errors(kw: dict[str, Any], fragment: str) -> None:
    with pytest.raises(SpaceError, match=fragment):
        narrow_space([LR], {"optimizer.lr": 1e-3}, **kw)


def test_at_edge() -> None:
    assert at_edge(LR, 1e-4) == "low" and at_edge(LR, 1e-1) == "high" and at_edge(LR, 3e-3) is None
    assert at_edge(BATCH, 128) == "high" and at_edge(MODEL, "lstm") is None


# -- the YAML form ------------------------------------------------------------------------------

def test_yaml_form_of_every_kind() -> None:
    space = [LR, DROPOUT, {**HIDDEN, "prefix": "+"}, {**LAYERS, "num": 4}, BATCH,
             {"key": "wd", "kind": "categorical", "choices": [1e-4, 1e-3], "log": True}]
    assert to_yaml_space(space) == {
        "optimizer.lr": {"type": "loguniform", "low": 1e-4, "high": 1e-1},
        "model.dropout": {"type": "uniform", "low": 0.0, "high": 0.4},
        "+model.hidden_size": {"type": "int", "low": 16, "high": 256, "step": 16},
        "model.layers": {"type": "int", "low": 1, "high": 8, "num": 4},
        "training.batch_size": [16, 32, 64, 128],
        "wd": {"type": "loguniform", "values": [1e-4, 1e-3]},
    }


def _same_param(param: Param, spec: dict[str, Any]) -> None:
    assert (param.key, param.kind, param.prefix) == (spec["key"], spec["kind"],
                                                     spec.get("prefix", ""))
    if spec["kind"] == "categorical":
        assert list(param.choices) == spec["choices"]
    else:
        assert (param.low, param.high, param.log, param.step) == (
            spec["low"], spec["high"], bool(spec.get("log")), spec.get("step"))


RANGES: list[dict[str, Any]] = [LR, DROPOUT, HIDDEN, LAYERS,
          {"key": "units", "kind": "int", "low": 2, "high": 1024, "log": True},
          {"key": "bias", "kind": "float", "low": -1.0, "high": 1.0},
          {"key": "p", "kind": "float", "low": 0.05, "high": 0.95, "step": 0.1}]


@settings(max_examples=150, deadline=None)
@given(index=st.integers(0, len(RANGES) - 1), where=st.floats(0.0, 1.0),
       past_edges=st.booleans(), factor=st.sampled_from([1.5, 3.0, 10.0, None]),
       fraction=st.sampled_from([0.05, 0.25, 1.0]), int_steps=st.sampled_from([1, 2, 5, None]))
def test_narrowed_ranges_hold_the_best_and_parse_back(index: int, where: float, past_edges: bool,
                                                       factor: float | None, fraction: float,
                                                       int_steps: int | None) -> None:
    spec = RANGES[index]
    log, lo, hi = bool(spec.get("log")), spec["low"], spec["high"]
    best: Any = math.exp(math.log(lo) + where * math.log(hi / lo)) if log else lo + where * (hi - lo)
    if spec.get("step"):  # a point of the grid, as the grid writes it
        best = float(f"{lo + round((best - lo) / spec['step']) * spec['step']:.12g}")
    best = min(max(best, lo), hi)
    if spec["kind"] == "int":
        best = round(best)
    out = one(spec, best, past_edges=past_edges, factor=factor, fraction=fraction,
              int_steps=int_steps)
    assert out["low"] <= best <= out["high"] and out["low"] < out["high"]
    if not past_edges:
        assert lo <= out["low"] and out["high"] <= hi
    entry = to_yaml_space([out])[spec["key"]]
    _same_param(param_from_yaml(spec["key"], entry), out)


def test_a_whole_space_parses_back_in_both_modes() -> None:
    space = [LR, DROPOUT, {**HIDDEN, "prefix": "++"}, LAYERS, BATCH, MODEL]
    best: dict[str, Any] = {"optimizer.lr": 1e-1, "model.dropout": 0.0, "model.hidden_size": 16,
            "model.layers": 8, "training.batch_size": 128, "model": "tcn"}
    ranked: dict[str, list[Any]] = {"training.batch_size": [128, 64], "model": ["tcn", "lstm"]}
    for past_edges in (False, True):
        out = narrow_space(space, best, ranked=ranked, past_edges=past_edges)
        assert [s["key"] for s in out] == [s["key"] for s in space]
        for (key, entry), spec in zip(to_yaml_space(out).items(), out):
            _same_param(param_from_yaml(key, entry), spec)
