"""Staged campaigns and cross-validated sweeps, end to end on real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import ROOT, TESTS, result_rows, run_cli

QUICK = ["+campaign=quick", "scenario=tiny", "cluster=local"]
STAGES = ["stage-1-coarse", "stage-2-bayes", "stage-3-fine", "stage-4-cv", "stage-5-final"]


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("campaign") / "c"
    r = run_cli(*QUICK, f"hydra.sweep.dir={root}")
    assert r.returncode == 0, r.stderr
    (root.parent / "stderr.txt").write_text(r.stderr)
    return root


def rows_of(root: Path, stage: str) -> pd.DataFrame:
    return pd.DataFrame(list(result_rows(root / stage).values()))


def test_the_stages_run_in_order(quick: Path) -> None:
    ends, starts = [], []
    for stage in STAGES:
        df = rows_of(quick, stage)
        assert (df["status"] == "completed").all(), stage
        starts.append(df["started_at"].min())
        ends.append(df["finished_at"].max())
    assert all(ends[i] <= starts[i + 1] for i in range(len(STAGES) - 1))
    record = yaml.safe_load((quick / "campaign.yaml").read_text())
    assert [s["state"] for s in record["stages"]] == ["done"] * 5


def test_one_progress_display_covers_every_stage(quick: Path) -> None:
    lines = (quick.parent / "stderr.txt").read_text().splitlines()
    shown = [ln for ln in lines if "; campaign " in ln]
    # Each stage reports to the campaign's one display, never a bar of its own.
    assert not [ln for ln in lines if ln.startswith("[sweeper]") and " done, " in ln], lines
    assert [ln.split(":")[0] for ln in shown][-1] == "[campaign] stage 5/5 final"
    assert shown[-1].split("; ")[1].startswith("campaign 16/16 trials")
    for n in range(1, 6):
        assert any(ln.startswith(f"[campaign] stage {n}/5 ") for ln in shown), n


def test_an_adaptive_stage_starts_from_the_trials_before_it(quick: Path) -> None:
    from sweeper.paths import SweepPaths
    from sweeper.record import SweepRecord
    from sweeper.study import open_study

    paths = SweepPaths(quick / "stage-2-bayes")
    study = open_study(paths, SweepRecord.load(paths))
    priors = [t for t in study.trials if "sweeper_prior" in t.user_attrs]
    own = [t for t in study.trials if "sweeper_prior" not in t.user_attrs]
    coarse = rows_of(quick, "stage-1-coarse").sort_values("trial_id")
    # every coarse trial, with its params and metric; the stage's own budget is untouched
    assert [t.user_attrs["sweeper_prior"] for t in priors] == \
        [f"coarse trial {i}" for i in coarse["trial_id"]]
    assert [t.value for t in priors] == pytest.approx(coarse["val_loss"].tolist())
    assert [t.params["optimizer.lr"] for t in priors] == \
        pytest.approx(coarse["optimizer.lr"].tolist())
    assert len(own) == 4 and len(rows_of(quick, "stage-2-bayes")) == 4
    assert all(t.number > p.number for t in own for p in priors)
    # The narrowed (TPE) stage starts from the earlier trials that lie inside its space.
    paths = SweepPaths(quick / "stage-3-fine")
    fine = SweepRecord.load(paths)
    space = {s["key"]: s for s in fine.space}

    def inside(row: pd.Series) -> bool:
        for key, s in space.items():
            v = row[key]
            if s["kind"] == "categorical":
                ok = v in s["choices"]
            else:
                ok = s["low"] <= v <= s["high"] and (
                    s["kind"] != "int" or (v - s["low"]) % (s.get("step") or 1) == 0)
            if not ok:
                return False
        return True

    before = pd.concat([rows_of(quick, s).assign(stage=s.split("-")[-1]) for s in STAGES[:2]])
    want = sorted(f"{r.stage} trial {r.trial_id}" for _, r in before.iterrows() if inside(r))
    study = open_study(paths, fine)
    got = sorted(t.user_attrs["sweeper_prior"] for t in study.trials
                 if "sweeper_prior" in t.user_attrs)
    assert got == want and len(got) > 0, (got, want)  # the best, at least, is inside


def test_the_narrow_stage_records_the_space_derived_from_the_best(quick: Path) -> None:
    from sweeper.narrow import narrow_space
    from sweeper.paths import SweepPaths
    from sweeper.record import SweepRecord

    before = pd.concat([rows_of(quick, s) for s in STAGES[:2]])
    best = before.sort_values(["val_loss", "trial_id"]).iloc[0]
    base = SweepRecord.load(SweepPaths(quick / "base"))
    keys = [s["key"] for s in base.space]
    want = narrow_space(list(base.space), {k: best[k] for k in keys}, factor=3.0, fraction=0.25,
                        int_steps=2, top=2, ranked={"scheduler.name": list(
                            before.sort_values("val_loss")["scheduler.name"].drop_duplicates())})
    fine = SweepRecord.load(SweepPaths(quick / "stage-3-fine"))
    got = {s["key"]: (s.get("low"), s.get("high"), tuple(s.get("choices", ()))) for s in fine.space}
    assert got == {s["key"]: (s.get("low"), s.get("high"), tuple(s.get("choices", ())))
                   for s in want}
    lr = rows_of(quick, "stage-3-fine")["optimizer.lr"]
    assert (lr >= got["optimizer.lr"][0]).all() and (lr <= got["optimizer.lr"][1]).all()
    assert got["optimizer.lr"][1] - got["optimizer.lr"][0] < 0.1 - 1e-3  # narrower than the space


def test_the_cv_table_is_the_mean_and_std_of_the_fold_rows(quick: Path) -> None:
    folds = rows_of(quick, "stage-4-cv")
    assert sorted(folds["data.fold"].unique()) == [0, 1] and len(folds) == 4
    keys = ["optimizer.lr", "model.hidden_size", "scheduler.name"]
    want = folds.groupby(keys)["val_loss"].agg(["mean", "std"]).reset_index()
    got = pd.read_csv(quick / "cv.csv")
    merged = got.merge(want, on=keys)
    assert len(merged) == 2
    assert merged["val_loss_mean"].to_numpy() == pytest.approx(merged["mean"].to_numpy())
    assert merged["val_loss_std"].to_numpy() == pytest.approx(merged["std"].to_numpy())
    # The final stage trains the config with the best mean.
    final = rows_of(quick, "stage-5-final").iloc[0]
    best = got.sort_values("val_loss_mean").iloc[0]
    assert final["optimizer.lr"] == pytest.approx(best["optimizer.lr"])


def test_only_the_final_stage_sees_the_test_split_and_its_model_is_saved(quick: Path) -> None:
    for stage in STAGES[:-1]:
        df = rows_of(quick, stage)
        assert "test_loss" not in df or df["test_loss"].isna().all(), stage
    final = rows_of(quick, "stage-5-final")
    assert len(final) == 1 and final["test_loss"].notna().all()
    assert final["model_saved"].iloc[0] == 1.0
    assert (quick / "stage-5-final" / "checkpoints" / "trial-000000" / "model.pt").is_file()
    summary = yaml.safe_load((quick / "summary.yaml").read_text())
    assert summary["final"]["test_loss"] == pytest.approx(final["test_loss"].iloc[0])
    assert summary["total_epochs"] == sum(int(rows_of(quick, s)["epochs_run"].sum())
                                          for s in STAGES)


def test_status_merge_and_report_work_on_the_campaign_dir(quick: Path) -> None:
    r = run_cli("status", str(quick))
    assert r.returncode == 0 and "5 final" in r.stdout and "not planned" not in r.stdout
    r = run_cli("merge", str(quick))
    assert r.returncode == 0 and "test_loss=" in r.stdout
    r = run_cli("report", str(quick))
    assert r.returncode == 0, r.stderr
    page = (quick / "report" / "index.html").read_text()
    for part in ("stage 3: fine", "cross-validation", "test_loss", "epochs"):
        assert part in page
    r = run_cli("resume", str(quick))
    assert r.returncode == 0, r.stderr
    assert "running" not in r.stderr  # every stage is done: nothing runs again


def test_a_campaign_killed_mid_stage_resumes_without_rerunning(tmp_path: Path) -> None:
    root = tmp_path / "c"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)])}
    driver = subprocess.Popen([sys.executable, "-m", "sweeper", *QUICK, "training.epochs=2",
                               f"hydra.sweep.dir={root}"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list(
                (root / "stage-2-bayes" / "results").glob("*.parquet")
                if (root / "stage-2-bayes" / "results").is_dir() else []):
            time.sleep(0.1)
        driver.send_signal(signal.SIGKILL)
        driver.wait(10)
    finally:
        if driver.poll() is None:
            driver.kill()
    time.sleep(11)  # its trial processes notice and end
    done_before = {p: p.stat().st_mtime_ns for p in root.glob("stage-*/results/*.parquet")
                   if pq.read_table(p, columns=["status"]).column(0)[0].as_py() == "completed"}
    assert any("stage-1" in str(p) for p in done_before)
    r = run_cli("resume", str(root))
    assert r.returncode == 0, r.stderr
    for path, mtime in done_before.items():
        assert path.stat().st_mtime_ns == mtime, path  # no completed trial ran again
    record = yaml.safe_load((root / "campaign.yaml").read_text())
    assert [s["state"] for s in record["stages"]] == ["done"] * 5
    for stage in STAGES:
        assert (rows_of(root, stage)["attempt"] == 1).sum() >= 1


BAD = [
    ("{kind: explore, method: random, n_trials: 2}", "unknown stage kind 'explore'"),
    ("{kind: narrow, method: random, n_trials: 2}", "there is none; put a search stage first"),
    ("{kind: top_k_cv, top_k: 9}", "top_k=9 must be between 1 and the 4 trials"),
    ("{kind: top_k_cv, top_k: 2, n_folds: 1}", "n_folds must be at least 2, got 1"),
    ("{kind: top_k_cv, top_k: 2, n_folds: 100000000}", "runs are over 100,000; lower n_folds"),
    ("{kind: final}", "the final stage must be the last"),
]


@pytest.mark.parametrize("stage, message", BAD, ids=[b[1][:30] for b in BAD])
def test_bad_campaigns_are_one_line_and_run_nothing(tmp_path: Path, stage: str,
                                                    message: str) -> None:
    first = "{kind: search, method: random, n_trials: 4}"
    stages = f"[{stage}]" if "narrow" in stage else f"[{first}, {stage}, {first}]" \
        if "final" in stage else f"[{first}, {stage}]"
    root = tmp_path / "c"
    r = run_cli(*QUICK, f"campaign.stages={stages}", f"hydra.sweep.dir={root}")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, r.stderr
    assert len(lines) == 1 and message in lines[0], r.stderr
    assert not (root / "campaign.yaml").exists()


def test_a_cross_validated_grid_has_n_folds_rows_per_trial(tmp_path: Path) -> None:
    root = tmp_path / "s"
    r = run_cli("scenario=tiny", "cluster=local", "optimizer.lr=0.003,0.03",
                "search.cross_validation.enabled=true", "search.cross_validation.n_folds=3",
                f"hydra.sweep.dir={root}")
    assert r.returncode == 0, r.stderr
    rows = pd.DataFrame(list(result_rows(root).values()))
    assert len(rows) == 6 and sorted(rows.groupby("optimizer.lr")["data.fold"].apply(sorted)
                                     .tolist()) == [[0, 1, 2], [0, 1, 2]]
    assert "configs by the mean over 3 folds" in r.stdout
    want = rows.groupby("optimizer.lr")["val_loss"].agg(["mean", "std"])
    for lr, (mean, std) in want.iterrows():
        assert f"{mean:.6g}"[:5] in r.stdout and f"{std:.6g}"[:5] in r.stdout, (lr, r.stdout)
    r = run_cli("merge", str(root))
    assert r.returncode == 0 and "val_loss_std" in r.stdout
    r = run_cli("report", str(root))
    assert r.returncode == 0, r.stderr
    page = (root / "report" / "index.html").read_text()
    assert "cross-validation" in page and "val_loss_std" in page


STATIC_CAMPAIGN = """# @package _global_
defaults:
  - override /hydra/sweeper: sweeper
hydra:
  mode: MULTIRUN
data:
  test_fraction: 0.15
campaign:
  name: static
  space:
    optimizer.lr: {type: loguniform, low: 1.0e-3, high: 1.0e-1}
    model.hidden_size: {type: int, low: 8, high: 32, step: 8}
  stages:
    - {name: coarse, kind: search, method: random, n_trials: 3, overrides: [training.epochs=2]}
    - {name: fine, kind: narrow, method: random, n_trials: 2, overrides: [training.epochs=3]}
    - {name: cv, kind: top_k_cv, top_k: 2, n_folds: 2, overrides: [training.epochs=3]}
    - {name: final, kind: final, overrides: [training.epochs=3]}
"""


@pytest.mark.slurm
@pytest.mark.slow
def test_a_campaign_on_slurm_chains_its_stages_and_matches_the_local_run(tmp_path: Path) -> None:
    import shutil

    from test_slurm import job_ids, sacct

    conf = tmp_path / "conf"
    shutil.copytree(ROOT / "conf", conf)
    (conf / "campaign" / "static.yaml").write_text(STATIC_CAMPAIGN)
    env = {"SWEEPER_CONFIG_DIR": str(conf)}
    common = ["+campaign=static", "scenario=tiny"]
    local = tmp_path / "local"
    assert run_cli(*common, "cluster=local", f"hydra.sweep.dir={local}", env=env).returncode == 0
    root = tmp_path / "slurm"
    start = time.monotonic()
    r = run_cli(*common, "cluster=slurm", "cluster.mem_gb=0.5", f"hydra.sweep.dir={root}", env=env)
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - start < 40 and "planning job" in r.stderr  # returns at once
    deadline = time.monotonic() + 420
    while time.monotonic() < deadline:
        states = [s["state"] for s in yaml.safe_load((root / "campaign.yaml").read_text())["stages"]]
        if all(s == "done" for s in states) or "stopped" in states:
            break
        time.sleep(3)
    assert states == ["done"] * 4, (states, sorted((root / "logs").glob("campaign-*.log")))
    names = ["stage-1-coarse", "stage-2-fine", "stage-3-cv", "stage-4-final"]
    spans = []
    for name in names:
        runs = sacct(job_ids(root / name), expect=1)
        spans.append((min(r["Start"] for r in runs), max(r["End"] for r in runs)))
    assert all(spans[i][1] <= spans[i + 1][0] for i in range(3)), spans
    for name in names:  # the same trials, the same numbers, as the local run
        a, b = rows_of(local, name), rows_of(root, name)
        assert len(a) == len(b)
        metric = "test_loss" if name.endswith("final") else "val_loss"
        assert sorted(b[metric]) == pytest.approx(sorted(a[metric]), rel=1e-5), name
