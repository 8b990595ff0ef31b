"""Shared fixtures: run the real CLI in a subprocess, and paths that are hard on shells."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300,
            cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """``python -m sweeper ARGS`` in a fresh process, with the test tasks importable."""
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)])}
    full_env.pop("SLURM_JOB_ID", None)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "sweeper", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    return run_cli


@pytest.fixture
def weird_path(tmp_path: Path) -> Path:
    """A directory whose name holds spaces, quotes, a semicolon and a newline."""
    path = tmp_path / "we ird 'q' \"dq\" ;rm -rf x;\nline"
    path.mkdir()
    return path


def read_results(sweep_dir: Path) -> list[dict]:
    return pq.read_table(sweep_dir / "results.parquet").to_pylist()


def result_rows(sweep_dir: Path) -> dict[int, dict]:
    rows = {}
    for f in sorted((sweep_dir / "results").glob("trial-*.parquet")):
        row = pq.read_table(f).to_pylist()[0]
        rows[row["trial_id"]] = row
    return rows


#: Files whose every test uses the one SLURM cluster; elsewhere a SLURM test has "slurm" in
#: its name (checked at collection).
SLURM_FILES = frozenset({"test_slurm.py", "test_adaptive_slurm.py", "test_local_cluster.py"})


def uses_the_cluster(nodeid: str) -> bool:
    path, _, name = nodeid.partition("::")
    return Path(path).name in SLURM_FILES or "slurm" in name


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under pytest-xdist (scripts/test.sh runs ``-n 2``): every test that uses the one SLURM
    cluster runs on one worker, one after another as without xdist (they count the node's
    free CPUs, preempt its jobs, stop its accounting); the tests of any other file stay
    together on one worker, so its module fixtures are built once."""
    from xdist.scheduler import LoadScopeScheduling

    class BySlurmAndFile(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "slurm" if uses_the_cluster(nodeid) else nodeid.split("::")[0]

    return BySlurmAndFile(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test marked ``slurm`` must be one the scheduler above keeps with the other SLURM
    tests."""
    stray = [i.nodeid for i in items if i.get_closest_marker("slurm") is not None
             and not uses_the_cluster(i.nodeid)]
    if stray:
        raise pytest.UsageError(f"SLURM tests outside {sorted(SLURM_FILES)} need 'slurm' in "
                                f"their names (tests/conftest.py): {stray}")
