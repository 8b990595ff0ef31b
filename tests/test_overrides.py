"""The command line's sweep grammar joins the YAML space, in Hydra's order."""

from __future__ import annotations

import random
import tracemalloc

import numpy as np
import pyarrow.parquet as pq
import pytest
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hypothesis import given, settings
from hypothesis import strategies as st

from sweeper.errors import ConfigError, SpaceError
from sweeper.overrides import build_request
from sweeper.strategies import GridStrategy
from sweeper.trials import build_table


def _our_overrides(arguments: list[str], yaml_space: dict | None = None) -> list[list[str]]:
    request = build_request(yaml_space, arguments, is_group=lambda k: False)
    design = GridStrategy().propose(request.space.params)
    n = design.n_trials
    table, _ = build_table(request, design, np.zeros(n, np.int64), ["v"], [0])
    return table.column("overrides").to_pylist()


def _basic_sweeper(arguments: list[str]) -> list[list[str]]:
    parsed = OverridesParser.create().parse_overrides(arguments)
    return BasicSweeper.split_arguments(parsed, None)[0]


PARITY_CASES = [
    ["a=1,2,3", "b=x,y"],
    ["a=choice(1,2.5,'z')", "fixed=5", "b=range(0,3)"],
    ["lr=range(0,1,0.25)", "+new=10,20", "c=[1,2],[3,4]"],
    ["x=[1,2]", "y=null,1", "z=true,false"],
    ["a=1,2", "a=3,4,5"],  # the later value for a key wins, in the first one's place
    ["s='a,b',c", "u=1e-3,2e-3", "g=glob_free"],
    # ranges Hydra lists itself: descending, float, sorted, with a negative start
    ["a=range(10,0,-3)", "b=range(0.5,2.0,0.5)", "c=sort(range(1,4),reverse=true)"],
    ["a=range(-3,3,2)", "b=range(5)", "c=range(0,1,0.1)"],
]


@pytest.mark.parametrize("arguments", PARITY_CASES)
def test_grid_matches_basic_sweeper(arguments: list[str]) -> None:
    assert _our_overrides(arguments) == _basic_sweeper(arguments)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.integers(0, 99), min_size=1, max_size=4), min_size=1, max_size=4))
def test_grid_matches_basic_sweeper_property(value_lists: list[list[int]]) -> None:
    arguments = [f"k{i}=" + ",".join(map(str, v)) if len(v) > 1 else f"k{i}=choice({v[0]})"
                 for i, v in enumerate(value_lists)]
    ours = _our_overrides(arguments)
    assert ours == _basic_sweeper(arguments)
    assert len(ours) == len({tuple(o) for o in ours}) or any(len(set(v)) < len(v) for v in value_lists)


def test_command_line_wins_over_yaml_for_the_same_key() -> None:
    request = build_request({"a": [1, 2], "b": [3, 4]}, ["a=9,8,7"], lambda k: False)
    (a, b) = request.space.params
    assert a.key == "a" and a.choices == (9, 8, 7)  # keeps its place, takes the new values
    assert b.choices == (3, 4)


def test_fixed_command_line_value_removes_the_key_from_the_space() -> None:
    request = build_request({"a": [1, 2], "b": [3, 4]}, ["a=5"], lambda k: False)
    assert [p.key for p in request.space.params] == ["b"] and request.fixed == ["a=5"]


def test_interval_and_tag_log_become_ranges() -> None:
    request = build_request(None, ["lr=tag(log,interval(1e-4,1e-2))", "d=interval(0.0,0.5)",
                                   "n=int(interval(1,8))"], lambda k: False)
    lr, d, n = request.space.params
    assert (lr.kind, lr.log, lr.low, lr.high) == ("float", True, 1e-4, 1e-2)
    assert (d.kind, d.log) == ("float", False)
    assert (n.kind, n.low, n.high) == ("int", 1, 8)


def test_range_excludes_its_stop() -> None:
    (p,) = build_request(None, ["b=range(16,64,16)"], lambda k: False).space.params
    assert (p.kind, p.low, p.high, p.step) == ("int", 16, 48, 16)  # lazy: nothing listed yet
    assert p.grid().choices == (16, 32, 48)


def test_group_keys_are_marked_and_must_be_categorical() -> None:
    request = build_request(None, ["scenario=tiny,lorenz"], lambda k: k == "scenario")
    assert request.space.params[0].group
    with pytest.raises(SpaceError, match="config group"):
        build_request(None, ["scenario=interval(0,1)"], lambda k: k == "scenario")


def test_malformed_override_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"malformed override 'x=choice\(1,'"):
        build_request(None, ["x=choice(1,"], lambda k: False)


def test_plan_matches_basic_sweeper_end_to_end(cli, tmp_path) -> None:
    arguments = ["optimizer.lr=0.01,0.001", "training.batch_size=range(16,64,16)",
                 "scenario=tiny", "cluster=local", "model.dropout=0.1"]
    r = cli("plan", *arguments, f"hydra.sweep.dir={tmp_path / 's'}")
    assert r.returncode == 0, r.stderr
    ours = pq.read_table(tmp_path / "s" / "trials.parquet").column("overrides").to_pylist()
    assert ours == _basic_sweeper(arguments)


def test_plan_is_identical_in_two_fresh_processes(cli, tmp_path) -> None:
    tables = []
    for name in ("a", "b"):
        r = cli("plan", "+search=random", "cluster=local", f"hydra.sweep.dir={tmp_path / name}")
        assert r.returncode == 0, r.stderr
        tables.append(pq.read_table(tmp_path / name / "trials.parquet"))
    assert tables[0].num_rows == 20
    assert tables[0].equals(tables[1])


def test_shuffled_ranges_match_basic_sweeper_with_the_same_seed() -> None:
    arguments = ["a=shuffle(range(0,6))", "b=shuffle(1,2,3)", "c=shuffle(range(0.0,1.0,0.25))"]
    ours = _our_overrides(arguments)  # build_request seeds `random` with 0
    random.seed(0)
    assert ours == _basic_sweeper(arguments)


# Ranges too big to list are tested through the CLI under a memory cap (test_bad_input.py):
# code that listed them would take gigabytes here.
@pytest.mark.parametrize(("argument", "fragment"), [
    ("x=range(0,10,0)", "the step of a range must be non-zero: 'x=range(0,10,0)'; e.g. range(0,10,2)"),
    ("x=range(10,0)", "'x=range(10,0)' holds no values"),
    ("x=range(0,1,-0.5)", "holds no values"),
])
def test_bad_ranges_are_one_line_errors(argument: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_request(None, [argument], lambda k: False)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_a_huge_int_range_stays_lazy() -> None:
    """range(1,100000000) once became a hundred million parsed values (7 GB)."""
    (small,) = build_request(None, ["h=range(1,1000)"], lambda k: False).space.params
    assert small.kind == "int"  # lazy; else the next call would list 10**8 values in-process
    tracemalloc.start()
    try:
        (p,) = build_request(None, ["h=range(1,100000000)"], lambda k: False).space.params
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (p.kind, p.low, p.high, p.step, p.size) == ("int", 1, 99_999_999, 1, 99_999_999)
    assert peak < 5_000_000
