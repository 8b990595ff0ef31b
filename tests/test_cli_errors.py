"""Bad input: one clear line on stderr, exit code 2, nothing run, nothing lost."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

BASE = ["plan", "+search=coarse", "cluster=local", "scenario=tiny"]

# Search files with one broken parameter each, written to a --config-dir.
BAD_SPACES = {
    "low_gt_high": ("{type: uniform, low: 0.5, high: 0.1}", "`low <= high` must hold for 'model.dropout', but got low=0.5, high=0.1"),
    "log_zero": ("{type: loguniform, low: 0, high: 1}", "log scale needs low > 0"),
    "bad_type": ("{type: logunif, low: 1, high: 2}", "unknown type 'logunif' for 'model.dropout'; did you mean 'loguniform'?"),
    "empty": ("[]", "'model.dropout' has no choices"),
    "big_step": ("{type: int, low: 1, high: 4, step: 10}", "`step` must be in (0, high-low]"),
    "no_num": ("{type: uniform, low: 0.0, high: 0.4}", "grid search needs a finite set of values for 'model.dropout'"),
}


@pytest.mark.parametrize("name", sorted(BAD_SPACES))
def test_bad_search_yaml(cli, tmp_path: Path, name: str) -> None:
    spec, fragment = BAD_SPACES[name]
    (tmp_path / "conf" / "search").mkdir(parents=True)
    (tmp_path / "conf" / "search" / f"{name}.yaml").write_text(
        "# @package _global_\nhydra:\n  mode: MULTIRUN\nsearch:\n  method: grid\n"
        f"  space:\n    model.dropout: {spec}\n"
    )
    r = cli("plan", f"--config-dir={tmp_path / 'conf'}", f"+search={name}", "cluster=local",
            f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("sweeper: error: ")
    assert fragment in r.stderr
    assert not (tmp_path / "sweep").exists()


CASES = [
    (["optimizer.lr=interval(0.1,0.2)"], "grid search needs a finite set of values for 'optimizer.lr'"),
    (["search.max_grid_size=10"], "the grid has 36 points (4 x 3 x 3), over search.max_grid_size=10"),
    (["search.method=random", "search.n_trials=0"], "search.n_trials must be a positive integer, got 0"),
    (["search.method=bayes"], "unknown search.method 'bayes'"),
    (["optimizer.lrr=0.1,0.2"], "'optimizer.lrr' is not a key of the config; did you mean 'optimizer.lr'?"),
    (["scenario=nope"], "unknown option 'nope' for config group 'scenario'; options: lorenz, mackey_glass, tiny"),
    (["task.fn=no_such_module:train"], "task.fn='no_such_module:train' cannot be imported"),
    (["task.fn=sweeper.tasks.lstm:trian"], "did you mean 'train'?"),
    (["x=choice(1,"], "malformed override 'x=choice(1,'"),
    (["cluster.executor=slurmm"], "unknown cluster.executor 'slurmm'"),
]


@pytest.mark.parametrize(("extra", "fragment"), CASES, ids=[c[1][:40] for c in CASES])
def test_bad_input_is_one_line_and_exit_2(cli, tmp_path: Path, extra: list[str], fragment: str) -> None:
    sweep_dir = tmp_path / "sweep"
    r = cli(*BASE, *extra, f"hydra.sweep.dir={sweep_dir}")
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("sweeper: error: "), r.stderr
    assert fragment in lines[0]
    assert not (sweep_dir / "results").exists()


def test_unwritable_sweep_dir(cli, tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a dir")
    for target in (blocker / "sweep", Path("/proc/sweeper-cannot-write-here")):
        r = cli(*BASE, f"hydra.sweep.dir={target}")
        assert r.returncode == 2, r.stderr
        assert "cannot write to the sweep dir" in r.stderr and r.stderr.count("\n") == 1


def test_a_different_sweep_in_the_same_dir_is_refused(cli, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "s"
    first = cli("+search=coarse", "cluster=local", "task.fn=sweeper_test_tasks:behave",
                "+x=0", "search.space={}", f"hydra.sweep.dir={sweep_dir}")
    assert first.returncode == 0, first.stderr
    before = {p.name: p.read_bytes() for p in (sweep_dir / "results").iterdir()}
    trials_before = (sweep_dir / "trials.parquet").read_bytes()
    r = cli("+search=coarse", "cluster=local", "task.fn=sweeper_test_tasks:behave",
            "+x=1,2", "search.space={}", f"hydra.sweep.dir={sweep_dir}")
    assert r.returncode == 2
    assert "holds a different sweep" in r.stderr and "hydra.sweep.dir=" in r.stderr
    assert {p.name: p.read_bytes() for p in (sweep_dir / "results").iterdir()} == before
    assert (sweep_dir / "trials.parquet").read_bytes() == trials_before


def test_corrupt_trials_parquet(cli, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "s"
    assert cli(*BASE, f"hydra.sweep.dir={sweep_dir}").returncode == 0
    (sweep_dir / "trials.parquet").write_bytes(b"PAR1 this is not parquet")
    for args in (["resume", str(sweep_dir)], ["merge", str(sweep_dir)], [*BASE, f"hydra.sweep.dir={sweep_dir}"]):
        r = cli(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert "trials.parquet is unreadable" in r.stderr and r.stderr.count("\n") == 1


def test_not_a_sweep_dir(cli, tmp_path: Path) -> None:
    for command in ("merge", "status", "resume", "cancel"):
        r = cli(command, str(tmp_path))
        assert r.returncode == 2 and "is not a sweep dir" in r.stderr


@pytest.mark.parametrize("command", ["run", "plan", "merge", "status", "resume", "cancel"])
def test_every_command_has_help(cli, command: str) -> None:
    r = cli(command, "--help")
    assert r.returncode == 0 and "usage" in r.stdout.lower()


def test_top_level_help(cli) -> None:
    r = cli("--help")
    assert r.returncode == 0 and "sweeper merge" in r.stdout and "Exit codes" in r.stdout


def test_plan_runs_nothing(cli, tmp_path: Path) -> None:
    r = cli(*BASE, f"hydra.sweep.dir={tmp_path / 's'}")
    assert r.returncode == 0, r.stderr
    assert "planned 36 trials" in r.stderr and "first 5 of 36 trials" in r.stderr
    assert pq.read_table(tmp_path / "s" / "trials.parquet").num_rows == 36
    assert not (tmp_path / "s" / "results").exists()
    shutil.rmtree(tmp_path / "s")
