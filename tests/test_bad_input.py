"""Bad input is refused at once, in one line, before memory or disk is spent on it; and the
config's defaults are written once (the schema dataclasses), so nothing composed disagrees."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import ROOT, TESTS
from sweeper.errors import ConfigError
from sweeper.executors import check_cluster, make_executor
from sweeper.schema import (
    ClusterConf,
    ReportConf,
    SearchConf,
    TrackingConf,
    check_task_nodes,
    register_schemas,
)

BASE = ["plan", "+search=coarse", "scenario=tiny"]
# Address space for the whole CLI process: plenty for a plan, far below what listing a
# hundred million values (or drawing a billion trials) took before it was refused.
MEMORY_CAP = 2_000_000_000


def _capped_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)])}
    env.pop("SLURM_JOB_ID", None)
    argv = ["prlimit", f"--as={MEMORY_CAP}", sys.executable, "-m", "sweeper", *args]
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


CAPPED_CASES = [
    (["model.hidden_size=range(1,100000000)"],
     "the grid has 1,199,999,988 points (4 x 3 x 99,999,999), over search.max_trials=100,000"),
    (["search.method=random", "search.n_trials=1000000000"],
     "search.n_trials=1,000,000,000 is over search.max_trials=100,000"),
    (["search.method=random", "search.n_trials=20", "model.hidden_size=range(1,100000000)",
      "search.max_trials=10"], "search.n_trials=20 is over search.max_trials=10"),
    (["model.hidden_size=range(0,10,0)"], "the step of a range must be non-zero"),
    (["model.dropout=range(0.0,1.0,0.0)"], "the step of a range must be non-zero"),
    (["model.dropout=range(0,1e9,0.5)"], "has 2,000,000,000 values, over the 1,000,000"),
    (["model.hidden_size=range(1000000000,0,-1)"], "has 1,000,000,000 values"),
    (["model.hidden_size=shuffle(range(0,1000000000))"], "has 1,000,000,000 values"),
    (["search.direction=sideways"], "unknown search.direction 'sideways'; options: minimize, maximize"),
    (["cluster=slurm", "cluster.max_parallel=-1"], "cluster.max_parallel must be at least 1, got -1"),
    (["cluster.max_retries=-1"], "cluster.max_retries must be at least 0, got -1"),
]


@pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs util-linux prlimit")
@pytest.mark.parametrize(("extra", "fragment"), CAPPED_CASES, ids=[c[1][:40] for c in CAPPED_CASES])
def test_bad_input_is_refused_at_once_under_a_memory_cap(tmp_path: Path, extra: list[str],
                                                         fragment: str) -> None:
    sweep_dir = tmp_path / "sweep"
    cluster = [] if any(a.startswith("cluster=") for a in extra) else ["cluster=local"]
    r = _capped_cli(*BASE, *cluster, *extra, f"hydra.sweep.dir={sweep_dir}")
    assert r.returncode == 2, (r.stdout, r.stderr[-2000:])
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("sweeper: error: "), r.stderr[-2000:]
    assert fragment in lines[0]
    assert not sweep_dir.exists()


def test_a_plan_still_fits_under_the_cap(tmp_path: Path) -> None:
    """The cap above refuses only what is too big: a real plan with a large lazy range runs."""
    if shutil.which("prlimit") is None:
        pytest.skip("needs util-linux prlimit")
    r = _capped_cli(*BASE, "cluster=local", "search.method=random", "search.n_trials=50",
                    "model.hidden_size=range(1,100000000)", f"hydra.sweep.dir={tmp_path / 's'}")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "planned 50 trials" in r.stderr


# -- cluster numbers, for every executor ---------------------------------------------------

BAD_CLUSTER = [
    ("max_parallel", 0), ("trials_per_gpu", 0), ("cpus_per_trial", 0), ("timeout_min", 0),
    ("timeout_min", -5.0), ("mem_gb", 0.0), ("cpus_per_task", 0), ("gpus_per_task", -1),
    ("array_parallelism", 0), ("trials_per_task", 0), ("max_array_size", 0),
    ("max_retries", -1), ("signal_delay_s", -1),
]


@pytest.mark.parametrize("kind", ["local", "slurm"])
@pytest.mark.parametrize(("name", "value"), BAD_CLUSTER)
def test_every_cluster_number_is_checked_for_every_executor(kind: str, name: str,
                                                            value: float) -> None:
    cluster = ClusterConf(executor=kind, **{name: value})
    with pytest.raises(ConfigError) as info:
        make_executor(cluster, kind)
    message = str(info.value)
    assert message.startswith(f"cluster.{name} must be ") and f"got {value}" in message
    assert "\n" not in message and ";" in message  # the rule, the value, then the fix


def test_cluster_defaults_and_nulls_pass() -> None:
    check_cluster(ClusterConf())
    check_cluster(ClusterConf(max_retries=0, signal_delay_s=0, gpus_per_task=0, max_parallel=1))


# -- report: and tracking: -------------------------------------------------------------------

@pytest.mark.parametrize(("node", "fragment"), [
    ({"report": {"selct": {"val_loss": 1.0}}}, "'report.selct' is not a known setting; did you mean 'select'?"),
    ({"report": {"top_kk": 5}}, "did you mean 'top_k'?"),
    ({"tracking": {"tensorbord": True}}, "'tracking.tensorbord' is not a known setting; did you mean 'tensorboard'?"),
    ({"report": {"top_k": "ten"}}, "'report.top_k' has a value of the wrong type"),
    ({"report": {"pareto": ["val_loss"]}}, "report.pareto takes two metrics"),
    ({"report": {"top_k": 0}}, "report.top_k must be at least 1"),
    ({"tracking": True}, "'tracking' must be a mapping of settings"),
])
def test_task_nodes_refuse_unknown_keys(node: dict, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_task_nodes(OmegaConf.create(node))
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_task_nodes_accept_good_and_absent_settings() -> None:
    check_task_nodes(OmegaConf.create({}))
    check_task_nodes(OmegaConf.create({
        "report": {"select": {"val_loss": 0.8, "train_time_s": 0.2}, "maximize": ["acc"],
                   "pareto": ["val_loss", "train_time_s"], "top_k": 3},
        "tracking": {"tensorboard": True}}))


# -- defaults are written once ---------------------------------------------------------------

def _compose(*overrides: str) -> dict:
    from hydra import compose, initialize_config_dir

    register_schemas()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("base", overrides=list(overrides))
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


@pytest.mark.parametrize("option", ["auto", "local", "slurm"])
def test_composed_config_is_the_dataclass_defaults(option: str) -> None:
    """Each cluster file sets only `executor`; everything else is ClusterConf's default.
    With cluster=auto nothing else leaks in from slurm.yaml (a 60-minute local limit did)."""
    cfg = _compose(f"cluster={option}")
    assert cfg["cluster"] == {**dataclasses.asdict(ClusterConf()), "executor": option}
    assert cfg["search"] == dataclasses.asdict(SearchConf())
    assert cfg["report"] == dataclasses.asdict(ReportConf())
    assert cfg["tracking"] == dataclasses.asdict(TrackingConf())


@pytest.mark.parametrize("name", ["coarse", "fine", "random"])
def test_search_files_set_only_what_they_are_for(name: str) -> None:
    search = _compose(f"+search={name}", "cluster=local")["search"]
    defaults = dataclasses.asdict(SearchConf())
    differing = {k for k, v in search.items() if v != defaults[k]}
    assert differing <= {"method", "n_trials", "space"}, differing


def test_every_setting_can_be_overridden_on_the_command_line() -> None:
    cfg = _compose("cluster=slurm", "cluster.mem_gb=8", "search.max_trials=5",
                   "report.top_k=3", "tracking.tensorboard=true")
    assert cfg["cluster"]["mem_gb"] == 8 and cfg["search"]["max_trials"] == 5
    assert cfg["report"]["top_k"] == 3 and cfg["tracking"]["tensorboard"] is True
