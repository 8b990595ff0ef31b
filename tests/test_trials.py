"""The trial table: typed columns, override strings that parse back, stable hashes."""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from sweeper.errors import SpaceError
from sweeper.overrides import build_request
from sweeper.runner import to_metrics
from sweeper.strategies import GridStrategy, RandomStrategy
from sweeper.trials import build_table


def _table(space: dict, arguments: list[str] | None = None, strategy=None) -> tuple[pa.Table, list]:
    request = build_request(space, arguments or [], lambda k: False)
    design = (strategy or GridStrategy()).propose(request.space.params)
    n = design.n_trials
    return build_table(request, design, np.zeros(n, np.int64), ["variant-text"], [7])


def test_columns_are_typed_by_their_values() -> None:
    table, specs = _table({"lr": [0.1, 0.01], "bs": [32, 64], "opt": ["adam", "sgd"],
                           "flag": [True, False], "layers": [[1, 2], [3]], "mixed": [1, "a"]})
    types = {f.name: f.type for f in table.schema}
    assert types["lr"] == pa.float64() and types["bs"] == pa.int64()
    assert types["opt"] == pa.string() and types["flag"] == pa.bool_()
    assert types["layers"] == pa.string() and types["mixed"] == pa.string()
    encodings = {s.key: s.encoding for s in specs}
    assert encodings["layers"] == "override" and encodings["lr"] == "value"
    assert table.column("seed").to_pylist() == [7] * table.num_rows
    assert table.num_rows == 64 and table.column("trial_id").to_pylist() == list(range(64))


def test_override_strings_parse_back_to_the_values() -> None:
    weird = ["it's", 'say "hi"', "semi;colon", "new\nline", "a,b", "${not_interp}x", "sp ace"]
    table, _ = _table({"name": weird, "lr": {"type": "loguniform", "low": 1e-5, "high": 1e-1}},
                      strategy=RandomStrategy(7, seed=0))
    parser = OverridesParser.create()
    for row in table.to_pylist():
        name_override, lr_override = row["overrides"]
        assert parser.parse_override(name_override).value() == row["name"]
        assert parser.parse_override(lr_override).value() == row["lr"]
    assert set(table.column("name").to_pylist()) <= set(weird)


def test_config_hash_is_unique_per_point_and_stable() -> None:
    space = {"a": [1, 2, 3], "b": [0.1, 0.2], "c": ["x", "y"]}
    first, _ = _table(space)
    second, _ = _table(space)
    hashes = first.column("config_hash").to_pylist()
    assert len(set(hashes)) == 12 and all(len(h) == 16 for h in hashes)
    assert hashes == second.column("config_hash").to_pylist()
    other, _ = _table({"a": [1, 2, 3], "b": [0.1, 0.2], "c": ["x", "z"]})
    assert other.column("config_hash").to_pylist()[0] == hashes[0]  # same point, same hash
    assert other.column("config_hash").to_pylist()[1] != hashes[1]


def test_a_searched_key_named_like_a_result_column_is_refused() -> None:
    with pytest.raises(SpaceError, match="clashes with a results column"):
        _table({"status": [1, 2]})


def test_searched_seed_becomes_the_seed_column() -> None:
    table, _ = _table({"seed": [0, 1, 2]})
    assert table.column("seed").to_pylist() == [0, 1, 2]


@pytest.mark.parametrize(("value", "expected"), [
    (0.5, {"val_loss": 0.5}),
    ({"val_loss": 1, "acc": 0.9}, {"val_loss": 1, "acc": 0.9}),
    ({"v": np.float32(2.0)}, {"v": 2.0}),
])
def test_metrics_from_return_values(value: object, expected: dict) -> None:
    assert to_metrics(value, "val_loss") == expected


@pytest.mark.parametrize(("value", "message"), [
    (None, "the task returned None; return the metric (a float) or a dict of floats"),
    ("high", "the task returned val_loss='high'; metrics must be numbers: pass a float, e.g. loss.item()"),
    ({"x": "y"}, "the task returned x='y'; metrics must be numbers"),
    ({"status": 1.0}, "a metric named 'status', which is a results column of that name"),
    (True, "the task returned val_loss=True; metrics must be numbers"),
])
def test_bad_return_values_are_errors(value: object, message: str) -> None:
    from sweeper.errors import TaskError

    with pytest.raises(TaskError, match=re.escape(message)):
        to_metrics(value, "val_loss")


def test_a_metric_named_like_a_searched_key_is_refused() -> None:
    """It would overwrite that key's column in the row (the report would then plot the metric)."""
    from sweeper.errors import TaskError

    with pytest.raises(TaskError, match=re.escape(
            "the task returned a metric named 'lr', which is a searched key of that name; "
            "rename the metric, e.g. lr_final")):
        to_metrics({"val_loss": 0.1, "lr": 1e-5}, "val_loss", taken=["lr", "model.dropout"])


def test_a_completed_result_is_never_replaced(tmp_path) -> None:
    import datetime as dt

    from sweeper.paths import SweepPaths
    from sweeper.results import TrialOutcome, read_state, write_result
    from sweeper.state import TrialState

    table, _ = _table({"a": [1]})
    paths = SweepPaths(tmp_path)
    now = dt.datetime.now(dt.timezone.utc)
    assert write_result(paths, table, TrialOutcome(TrialState.FAILED, now, now, error="x"))
    assert write_result(paths, table, TrialOutcome(TrialState.COMPLETED, now, now, metrics={"v": 1.0}))
    before = paths.result(0).read_bytes()
    assert not write_result(paths, table, TrialOutcome(TrialState.CANCELLED, now, now))
    assert paths.result(0).read_bytes() == before and read_state(paths.result(0)) is TrialState.COMPLETED
    assert sorted(p.name for p in paths.results_dir.iterdir()) == [".write.lock", "trial-000000.parquet"]


@pytest.mark.parametrize("field", ["partition", "account", "constraint"])
def test_sbatch_values_with_a_newline_are_refused(field: str) -> None:
    from sweeper.errors import ConfigError
    from sweeper.executors.slurm import SlurmExecutor
    from sweeper.schema import ClusterConf

    with pytest.raises(ConfigError, match="control character"):
        SlurmExecutor(ClusterConf(**{field: "gpu\ntouch /tmp/pwned #"}))
    with pytest.raises(ConfigError, match="control character"):
        SlurmExecutor(ClusterConf(additional_parameters={"comment": "x\ny"}))
