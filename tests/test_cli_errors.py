"""Bad input: one clear line on stderr, exit code 2, nothing run, nothing lost."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import ROOT, TESTS, run_cli

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
    (["scenario=nope"], "unknown option 'nope' for config group 'scenario'; options: bench, lorenz, mackey_glass, tiny"),
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
    assert not sweep_dir.exists()  # refused before the dir is made: nothing to clean up


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
    for args in (["resume", str(sweep_dir)], ["merge", str(sweep_dir)], ["rerun", str(sweep_dir), "0"],
                 [*BASE, f"hydra.sweep.dir={sweep_dir}"]):
        r = cli(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert "trials.parquet is unreadable" in r.stderr and r.stderr.count("\n") == 1


def test_not_a_sweep_dir(cli, tmp_path: Path) -> None:
    for command in ("merge", "status", "resume", "cancel"):
        r = cli(command, str(tmp_path))
        assert r.returncode == 2 and "is not a sweep dir" in r.stderr


COMMANDS = ["run", "plan", "merge", "status", "resume", "cancel", "report", "next", "rerun"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(cli, command: str) -> None:
    r = cli(command, "--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"usage: sweeper {command} "), r.stdout[:200]


def test_the_command_list_is_complete() -> None:
    from sweeper.cli import COMMANDS as cli_commands

    assert list(cli_commands) == COMMANDS


@pytest.mark.parametrize(("typo", "meant"), [("statsu", "status"), ("merg", "merge"),
                                             ("reurn", "rerun"), ("pln", "plan")])
def test_a_misspelt_command_is_named(cli, tmp_path: Path, typo: str, meant: str) -> None:
    r = cli(typo, str(tmp_path))
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr == (f"sweeper: error: unknown command '{typo}'; did you mean '{meant}'? "
                        f"commands: {', '.join(COMMANDS)}\n")
    assert list(tmp_path.iterdir()) == []


def test_a_bare_word_far_from_any_command_is_still_an_override_error(cli) -> None:
    r = cli("lr")
    assert r.returncode == 2 and "malformed override 'lr'" in r.stderr


def test_top_level_help(cli) -> None:
    r = cli("--help")
    assert r.returncode == 0 and "Exit codes" in r.stdout
    for command in COMMANDS[1:]:
        assert f"sweeper {command}" in r.stdout, command


def test_plan_runs_nothing(cli, tmp_path: Path) -> None:
    r = cli(*BASE, f"hydra.sweep.dir={tmp_path / 's'}")
    assert r.returncode == 0, r.stderr
    assert "planned 36 trials" in r.stderr and "first 5 of 36 trials" in r.stderr
    assert pq.read_table(tmp_path / "s" / "trials.parquet").num_rows == 36
    assert not (tmp_path / "s" / "results").exists()
    shutil.rmtree(tmp_path / "s")


def _files(root: Path, skip: str = "\0") -> dict[str, bytes]:
    """Every file under ``root`` (but ``skip``) with its bytes: to show nothing changed."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not str(p.relative_to(root)).startswith(skip)}


@pytest.mark.parametrize("garbage", ["search: [unclosed\n", "- a list, not a mapping\n"])
def test_an_unreadable_sweep_yaml_is_named_as_such(cli, tmp_path: Path, garbage: str) -> None:
    sweep_dir = tmp_path / "s"
    assert cli(*BASE, f"hydra.sweep.dir={sweep_dir}").returncode == 0
    (sweep_dir / "sweep.yaml").write_text(garbage)
    before = _files(sweep_dir)
    d = str(sweep_dir)
    for args in ([*BASE, f"hydra.sweep.dir={d}"], ["status", d], ["resume", d], ["merge", d],
                 ["report", d], ["rerun", d, "0"]):
        r = cli(*args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert r.stderr.startswith(f"sweeper: error: {sweep_dir / 'sweep.yaml'} is unreadable ("), args
        assert r.stderr.count("\n") == 1 and "different sweep" not in r.stderr, r.stderr
        assert r.stderr.endswith("restore it from a backup, or plan the sweep afresh in a new dir\n")
        assert r.stdout == ""
    assert _files(sweep_dir) == before


@pytest.fixture(scope="module")
def done_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished three-trial sweep of the quick test task (val_loss = x)."""
    sweep_dir = tmp_path_factory.mktemp("done") / "s"
    r = run_cli("cluster=local", "task.fn=sweeper_test_tasks:behave", "+x=0,1,2",
                f"hydra.sweep.dir={sweep_dir}")
    assert r.returncode == 0, r.stderr
    return sweep_dir


def test_merge_with_a_misspelt_metric(cli, done_sweep: Path) -> None:
    r = cli("merge", str(done_sweep), "--metric", "val_los")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.count("\n") == 1 and r.stdout == ""
    assert r.stderr.startswith("sweeper: error: the results have no metric 'val_los'; did you "
                               "mean 'val_loss'?; metrics: val_loss, x_seen")
    ok = cli("merge", str(done_sweep), "--metric", "x_seen", "--direction", "maximize")
    assert ok.returncode == 0 and "top 3 by x_seen (maximize)" in ok.stdout


def test_merge_and_report_into_another_dir(cli, done_sweep: Path, tmp_path: Path) -> None:
    before = _files(done_sweep, skip="results.parquet")
    merged = cli("merge", str(done_sweep), "--out", str(tmp_path / "mine"))
    assert merged.returncode == 0, merged.stderr
    assert f"-> {tmp_path / 'mine' / 'results.parquet'}" in merged.stdout
    assert pq.read_table(tmp_path / "mine" / "results.parquet").num_rows == 3
    report = cli("report", str(done_sweep), "--out", str(tmp_path / "rep"))
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "rep" / "index.html").is_file()
    assert f"report: {tmp_path / 'rep' / 'index.html'}" in report.stdout
    assert not (done_sweep / "report").exists()
    assert _files(done_sweep, skip="results.parquet") == before


def test_merge_and_report_out_where_nothing_can_be_written(cli, done_sweep: Path,
                                                            tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for command in ("merge", "report"):
        r = cli(command, str(done_sweep), "--out", str(blocker / "out"))
        assert r.returncode == 2, (command, r.stderr)
        assert r.stderr.startswith(f"sweeper: error: --out {blocker / 'out'}") and \
            r.stderr.count("\n") == 1 and "pass a dir you can write" in r.stderr


def _without_root_powers() -> list[str]:
    """A command prefix under which chmod 0555 stops writes, as it does for a colleague
    (as in test_merge.py: root writes through the mode bits)."""
    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        pytest.skip("root writes through 0555 and setpriv (util-linux) is not here to stop it")
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner"]


def _as_a_colleague(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)])}
    return subprocess.run([*_without_root_powers(), sys.executable, "-m", "sweeper", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_merge_and_report_on_a_read_only_sweep_dir(done_sweep: Path) -> None:
    (done_sweep / "results" / "trial-000001.parquet").touch()  # merge has something to re-read
    before = _files(done_sweep)
    dirs = [p for p in [done_sweep, *done_sweep.rglob("*")] if p.is_dir()]
    for d in dirs:
        d.chmod(0o555)
    try:
        merged = _as_a_colleague("merge", str(done_sweep))
        report = _as_a_colleague("report", str(done_sweep))
        rerun = _as_a_colleague("rerun", str(done_sweep), "1")
    finally:
        for d in dirs:
            d.chmod(0o755)
    assert merged.returncode == 0, merged.stderr
    assert "top 3 by val_loss (minimize)" in merged.stdout
    assert merged.stderr.startswith("[sweeper] 3 trials (3 completed), merged but not written: ")
    assert merged.stderr.count("\n") == 1 and "write them elsewhere with --out DIR" in merged.stderr
    assert report.returncode == 0, report.stderr
    assert "best 3 of 3 completed trials" in report.stdout
    assert report.stderr.startswith(f"[sweeper] report not written: {done_sweep / 'report'} "
                                    "is not writable (")
    assert report.stderr.count("\n") == 1 and report.stderr.endswith("--out DIR\n")
    assert rerun.returncode == 2 and rerun.stderr == (
        f"sweeper: error: cannot write the rerun dir {done_sweep / 'rerun'} (Permission denied); "
        "pass --out DIR to rerun into a dir you can write\n")
    assert _files(done_sweep) == before


def test_plan_checks_task_fn_without_running_the_package(cli, tmp_path: Path) -> None:
    """The check reads the module's source; the package's __init__ (which may import torch)
    must not run."""
    lib = tmp_path / "lib"
    pkg = lib / "thatpkg"
    (pkg / "sub").mkdir(parents=True)
    init = "import pathlib\npathlib.Path(__file__).with_name('IMPORTED').touch()\n"
    for d in (pkg, pkg / "sub"):
        (d / "__init__.py").write_text(init)
    (pkg / "sub" / "mod.py").write_text("def fn(cfg):\n    return 1.0\n")
    env = {"PYTHONPATH": os.pathsep.join([str(lib), str(TESTS), str(ROOT)])}
    for i, ref in enumerate(("thatpkg.sub.mod:fn", "thatpkg.sub.mod.fn")):
        r = cli(*BASE, f"task.fn={ref}", f"hydra.sweep.dir={tmp_path / f's{i}'}", env=env)
        assert r.returncode == 0, r.stderr
    assert not (pkg / "IMPORTED").exists() and not (pkg / "sub" / "IMPORTED").exists()
    for ref, fragment in (("thatpkg.sub.mod:fnn", "the module defines no 'fnn'; did you mean 'fn'?"),
                          ("thatpkg.sub.nope:fn", "no module named 'thatpkg.sub.nope'")):
        r = cli(*BASE, f"task.fn={ref}", f"hydra.sweep.dir={tmp_path / 'bad'}", env=env)
        assert r.returncode == 2, r.stderr
        assert r.stderr.count("\n") == 1 and fragment in r.stderr
        assert not (tmp_path / "bad").exists()
