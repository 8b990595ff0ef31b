"""Search-space parameters: every rule is a clear SpaceError, and grids are right."""

from __future__ import annotations

import pytest

from sweeper.errors import SpaceError
from sweeper.space import Param, param_from_yaml


def test_list_is_categorical() -> None:
    p = param_from_yaml("training.batch_size", [32, 64, 128])
    assert p.kind == "categorical" and p.choices == (32, 64, 128) and p.size == 3
    assert p.labels == ("32", "64", "128")


def test_loguniform_num_is_log_spaced() -> None:
    p = param_from_yaml("optimizer.lr", {"type": "loguniform", "low": 1e-4, "high": 1e-2, "num": 3})
    assert p.grid().choices == (1e-4, 1e-3, 1e-2)


def test_uniform_num_is_linear_and_inclusive() -> None:
    p = param_from_yaml("d", {"type": "uniform", "low": 0.0, "high": 0.4, "num": 5})
    assert p.grid().choices == (0.0, 0.1, 0.2, 0.3, 0.4)


def test_int_step_inclusive_high() -> None:
    p = param_from_yaml("h", {"type": "int", "low": 64, "high": 256, "step": 64})
    assert p.size == 4 and p.grid().choices == (64, 128, 192, 256)


def test_int_log_num_rounds_to_unique_ints() -> None:
    p = param_from_yaml("h", {"type": "int", "low": 1, "high": 1000, "log": True, "num": 4})
    assert p.grid().choices == (1, 10, 100, 1000)


def test_values_make_a_continuous_param_finite() -> None:
    p = param_from_yaml("lr", {"type": "loguniform", "low": 1e-4, "high": 1e-2, "values": [1e-3, 3e-3]})
    assert p.kind == "categorical" and p.choices == (1e-3, 3e-3)


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"type": "uniform", "low": 0.5, "high": 0.1}, "`low <= high` must hold"),
        ({"type": "loguniform", "low": 0.0, "high": 0.1}, "log scale needs low > 0"),
        ({"type": "int", "low": 0, "high": 10, "log": True}, "log scale needs low > 0"),
        ({"type": "logunif", "low": 1, "high": 2}, "unknown type 'logunif'"),
        ({"type": "categorical", "choices": []}, "has no choices"),
        ({"type": "int", "low": 1, "high": 5, "step": 10}, "`step` must be in (0, high-low]"),
        ({"type": "uniform", "low": 0, "high": 1, "step": -1}, "`step` must be in (0, high-low]"),
        ({"type": "int", "low": 1.5, "high": 5}, "whole numbers"),
        ({"type": "uniform", "low": "a", "high": 1}, "needs a number for `low`"),
        ({"type": "uniform", "low": 0, "high": 1, "stepp": 0.1}, "did you mean 'step'"),
        ({"type": "uniform", "low": 0, "high": 1, "num": 0}, "`num` must be a positive integer"),
        ("0.1", "must be a list of values or a mapping"),
    ],
)
def test_bad_specs_are_one_line_errors(spec: object, fragment: str) -> None:
    with pytest.raises(SpaceError) as info:
        param_from_yaml("model.dropout", spec)
    message = str(info.value)
    assert fragment in message and "\n" not in message
    assert "model.dropout" in message or "logunif" in message


def test_empty_list_is_an_error() -> None:
    with pytest.raises(SpaceError, match="has no choices"):
        param_from_yaml("x", [])


def test_grid_over_continuous_needs_values_or_num() -> None:
    p = param_from_yaml("optimizer.lr", {"type": "loguniform", "low": 1e-4, "high": 1e-2})
    with pytest.raises(SpaceError, match=r"give it `values: \[...\]` or `num: N`"):
        p.grid()


def test_spaces_are_value_errors_too() -> None:
    with pytest.raises(ValueError):
        param_from_yaml("x", {"type": "uniform", "low": 2, "high": 1})


def test_prefix_is_kept_for_new_keys() -> None:
    p = param_from_yaml("+extra.key", [1, 2])
    assert p.key == "extra.key" and p.prefix == "+" and p.override_key == "+extra.key"


def test_categorical_size_and_labels_of_structures() -> None:
    p = Param.categorical("layers", [[1, 2], [3]])
    assert p.labels == ("[1,2]", "[3]")


@pytest.mark.parametrize(("spec", "size"), [
    ([1, 2, 3], 3),
    ({"type": "int", "low": 1, "high": 10**12}, 10**12),
    ({"type": "int", "low": 0, "high": 10**9, "step": 7}, 10**9 // 7 + 1),
    ({"type": "uniform", "low": 0.0, "high": 1.0, "step": 0.25}, 5),
    ({"type": "loguniform", "low": 1e-4, "high": 1e-2, "num": 10**9}, 10**9),
    ({"type": "int", "low": 1, "high": 8, "log": True, "num": 10**9}, 8),  # at most 8 ints
    ({"type": "uniform", "low": 0.0, "high": 1.0, "values": [0.1, 0.2]}, 2),
])
def test_grid_size_is_counted_without_listing(spec: object, size: int) -> None:
    assert param_from_yaml("x", spec).grid_size() == size


@pytest.mark.parametrize("spec", [
    {"type": "int", "low": 64, "high": 256, "step": 64},
    {"type": "int", "low": 1, "high": 1000, "log": True, "num": 4},
    {"type": "uniform", "low": 0.0, "high": 0.4, "num": 5},
    {"type": "uniform", "low": 0.0, "high": 1.0, "step": 0.1},
    [3, 1, 2],
])
def test_grid_size_matches_the_listed_grid(spec: object) -> None:
    p = param_from_yaml("x", spec)
    assert p.grid_size() == len(p.grid().choices)


def test_grid_size_of_a_continuous_range_is_the_grid_error() -> None:
    p = param_from_yaml("optimizer.lr", {"type": "loguniform", "low": 1e-4, "high": 1e-2})
    with pytest.raises(SpaceError, match=r"give it `values: \[...\]` or `num: N`"):
        p.grid_size()
