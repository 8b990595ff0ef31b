"""`sweeper rerun DIR ID`: one trial again from its frozen config, in a scratch dir, compared
with its row; the sweep's own files never change."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import run_cli

# A task whose metric is read from a file beside it: a test changes the file between the
# sweep and the rerun to make the rerun differ; a file fail-X makes trial x=X fail.
FLAKY = """\
from pathlib import Path


def train(cfg):
    if Path(__file__).with_name(f"fail-{cfg.x}").exists():
        raise RuntimeError("planned failure")
    value = float(Path(__file__).with_name("value.txt").read_text())
    return {"val_loss": value + int(cfg.x), "x_seen": int(cfg.x), "train_time_s": 0.1}
"""


def _files(root: Path) -> dict[str, bytes]:
    """The sweep's own files (not its rerun/ dir) with their bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.relative_to(root).parts[0] != "rerun"}


def _one_error(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("sweeper: error: "), r.stderr
    return r.stderr


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two trials of the built-in LSTM on the tiny scenario, run on this machine."""
    sweep_dir = tmp_path_factory.mktemp("rerun") / "tiny"
    r = run_cli("scenario=tiny", "cluster=local", "optimizer.lr=0.001,0.003",
                f"hydra.sweep.dir={sweep_dir}")
    assert r.returncode == 0, r.stderr
    return sweep_dir


@pytest.fixture
def flaky_sweep(tmp_path: Path) -> Path:
    (tmp_path / "flaky.py").write_text(FLAKY)
    (tmp_path / "value.txt").write_text("1.0")
    sweep_dir = tmp_path / "s"
    r = run_cli("cluster=local", f"task.fn=file:{tmp_path / 'flaky.py'}:train", "+x=0,1",
                f"hydra.sweep.dir={sweep_dir}")
    assert r.returncode == 0, r.stderr
    return sweep_dir


@pytest.mark.slow
def test_a_tiny_lstm_trial_reproduces(cli, tiny_sweep: Path) -> None:
    before = _files(tiny_sweep)
    r = cli("rerun", str(tiny_sweep), "1")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert r.stdout.rstrip().endswith("reproduced: 3 metric(s) within rtol=1e-06")
    val_loss = next(line for line in r.stdout.splitlines() if "│ val_loss " in line)
    assert [c.strip() for c in val_loss.split("│")][4:6] == ["0", "ok"]  # bit for bit
    assert "not compared (timing)" in r.stdout  # train_time_s
    (scratch,) = (tiny_sweep / "rerun").iterdir()
    assert scratch.name.startswith("trial-000001-")
    again = pq.read_table(scratch / "results" / "trial-000001.parquet").to_pylist()[0]
    first = pq.read_table(tiny_sweep / "results" / "trial-000001.parquet").to_pylist()[0]
    for key in ("config_yaml", "seed", "config_hash", "optimizer.lr", "val_loss"):
        assert again[key] == first[key], key
    assert [p["val_loss"] for p in again["curve"]] == [p["val_loss"] for p in first["curve"]]
    assert _files(tiny_sweep) == before


@pytest.mark.parametrize("bad", ["2", "99", "-1"])
def test_a_bad_trial_id_names_the_valid_range(cli, flaky_sweep: Path, bad: str) -> None:
    before = _files(flaky_sweep)
    error = _one_error(cli("rerun", str(flaky_sweep), bad))
    assert f"trial id {bad} is not in the sweep {flaky_sweep}: valid ids are 0..1" in error
    assert not (flaky_sweep / "rerun").exists() and _files(flaky_sweep) == before


def test_a_changed_result_differs_and_rtol_decides(cli, flaky_sweep: Path) -> None:
    (flaky_sweep.parent / "value.txt").write_text("1.5")
    before = _files(flaky_sweep)
    r = cli("rerun", str(flaky_sweep), "1")
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "differs: val_loss (rtol=1e-06); the rerun is in " in r.stdout
    row = next(line for line in r.stdout.splitlines() if "│ val_loss " in line)
    assert [c.strip() for c in row.split("│")][1:6] == ["val_loss", "2", "2.5", "0.5", "DIFFERS"]
    loose = cli("rerun", str(flaky_sweep), "1", "--rtol", "0.25", "--out",
                str(flaky_sweep.parent / "mine"))
    assert loose.returncode == 0, (loose.stdout, loose.stderr)
    assert "reproduced: 2 metric(s) within rtol=0.25" in loose.stdout  # x_seen, val_loss
    assert (flaky_sweep.parent / "mine" / "results" / "trial-000001.parquet").is_file()
    assert _files(flaky_sweep) == before
    again = cli("rerun", str(flaky_sweep), "1", "--out", str(flaky_sweep.parent / "mine"))
    assert "already holds a rerun of trial 1; pass a fresh --out dir" in _one_error(again)


def test_a_trial_without_a_completed_row_is_refused(cli, flaky_sweep: Path) -> None:
    (flaky_sweep / "results" / "trial-000000.parquet").unlink()
    error = _one_error(cli("rerun", str(flaky_sweep), "0"))
    assert "trial 0 has no result yet" in error and f"sweeper resume {flaky_sweep}" in error
    (flaky_sweep.parent / "fail-0").touch()
    assert cli("resume", str(flaky_sweep)).returncode == 1
    error = _one_error(cli("rerun", str(flaky_sweep), "0"))
    assert "trial 0 ended failed, not completed, so it has no metrics to reproduce" in error
    error = _one_error(cli("rerun", str(flaky_sweep), "1", "--rtol", "-1"))
    assert "--rtol must be >= 0, got -1.0" in error


def test_a_rerun_that_fails_differs(cli, flaky_sweep: Path) -> None:
    (flaky_sweep.parent / "fail-1").touch()
    r = cli("rerun", str(flaky_sweep), "1")
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "the rerun ended failed: RuntimeError: planned failure" in r.stderr
    assert "differs: val_loss, x_seen (rtol=1e-06)" in r.stdout
