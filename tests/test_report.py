"""`sweeper report` and `sweeper next` on real sweeps, and the selection rules on hand-made tables."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import ROOT, run_cli
from sweeper.analysis import markdown_table, optuna_plots, plots, space_table, status_table
from sweeper.analysis.data import ReportData, load, pareto_front, selection_scores
from sweeper.analysis.html import page
from sweeper.analysis.plots import heatmap_data
from sweeper.paths import SweepPaths

ARTIFACTS = ROOT / "test-artifacts"
LSTM = ["scenario=tiny", "cluster=local", "optimizer.lr=0.003,0.03", "model.hidden_size=8,16",
        "model.dropout=0.0,1.5"]  # dropout 1.5 is invalid: half the trials fail, as they would


@pytest.fixture(scope="module")
def lstm_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sweep_dir = tmp_path_factory.mktemp("report") / "sweep"
    r = run_cli(*LSTM, f"hydra.sweep.dir={sweep_dir}")
    assert r.returncode == 1, r.stderr  # the invalid dropout failed, the rest completed
    return sweep_dir


@pytest.fixture(scope="module")
def report(lstm_sweep: Path) -> Path:
    r = run_cli("report", str(lstm_sweep))
    assert r.returncode == 0, r.stderr
    assert "best 4 of 4 completed trials (8 in all)" in r.stdout
    return lstm_sweep / "report"


def test_report_writes_every_file(report: Path) -> None:
    expected = ["best_config.yaml", "top_k.csv", "top_k.md", "index.html", "heatmap.png",
                "importance.png", "history.png", "parallel.png", "slices.png", "curves.png",
                "failures.png"]
    for name in expected:
        assert (report / name).is_file() and (report / name).stat().st_size > 0, name
    top = pd.read_csv(report / "top_k.csv")
    assert len(top) == 4 and top["val_loss"].is_monotonic_increasing
    assert (report / "top_k.md").read_text().startswith("| trial_id | val_loss |")
    html = (report / "index.html").read_text()
    assert html.count('<img alt=') == 7 and "ValueError" in html
    assert ">nan<" not in html and "nan" not in (report / "top_k.md").read_text()


def test_best_config_reruns_to_the_same_metric(lstm_sweep: Path, report: Path, tmp_path: Path) -> None:
    best = pd.read_csv(report / "top_k.csv").iloc[0]
    assert "cluster_overrides" not in yaml.safe_load((report / "best_config.yaml").read_text())
    r = run_cli("--config-path", str(report), "--config-name", "best_config",
                f"hydra.run.dir={tmp_path / 'run'}",
                env={"SWEEPER_CPUS_PER_TRIAL": "1", "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    again = float(re.search(r"val_loss=([0-9.e+-]+)", r.stderr).group(1))
    assert again == pytest.approx(best["val_loss"], rel=1e-5)


def test_heatmap_data_is_the_pivot_table_of_the_results(lstm_sweep: Path) -> None:
    data = load(SweepPaths(lstm_sweep))
    merged = pd.read_parquet(lstm_sweep / "results.parquet")
    done = merged[merged["status"] == "completed"]
    expected = done.pivot_table(index="model.hidden_size", columns="optimizer.lr",
                                values="val_loss", aggfunc="min")
    got = heatmap_data(data, "optimizer.lr", "model.hidden_size")
    pd.testing.assert_frame_equal(got, expected, check_names=False)


def test_report_never_imports_torch(lstm_sweep: Path) -> None:
    code = ("import sys; from sweeper.cli import main; rc = main(['report', sys.argv[1]]); "
            "print('TORCH' if 'torch' in sys.modules else 'NO_TORCH'); sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code, str(lstm_sweep)], cwd=ROOT, capture_output=True,
                       text=True)
    assert r.returncode == 0 and "NO_TORCH" in r.stdout, r.stderr


def test_selection_score_picks_the_expected_trial() -> None:
    table = pd.DataFrame({"trial_id": [0, 1, 2, 3],
                          "val_loss": [0.10, 0.11, 0.30, 0.10],
                          "train_time_s": [100.0, 10.0, 5.0, 90.0]})
    scores = selection_scores(table, {"val_loss": 0.8, "train_time_s": 0.2})
    # normalised: loss (0, .05, 1, 0), time (1, .053, 0, .895): trial 1 wins on the weighted sum
    assert int(table.loc[scores.idxmin(), "trial_id"]) == 1
    assert int(table.loc[selection_scores(table, {"val_loss": 1.0}).idxmin(), "trial_id"]) == 0
    accuracy = table.assign(acc=[0.9, 0.5, 0.95, 0.91])
    assert int(accuracy.loc[selection_scores(accuracy, {"acc": 1.0}, maximize=["acc"]).idxmin(),
                            "trial_id"]) == 2


def test_pareto_front_on_a_hand_made_table() -> None:
    table = pd.DataFrame({"loss": [1.0, 2.0, 3.0, 2.5, 1.5], "time": [5.0, 2.0, 1.0, 3.0, 6.0]})
    assert pareto_front(table, "loss", "time").tolist() == [True, True, True, False, False]


def test_unknown_select_metric_is_a_clear_error(lstm_sweep: Path) -> None:
    r = run_cli("report", str(lstm_sweep), "--select", "val_los=1")
    assert r.returncode == 2 and "no metric 'val_los'; did you mean 'val_loss'?" in r.stderr


def test_select_and_pareto_from_the_command_line(lstm_sweep: Path) -> None:
    r = run_cli("report", str(lstm_sweep), "--select", "val_loss=0.8,train_time_s=0.2",
                "--pareto", "val_loss,train_time_s")
    assert r.returncode == 0, r.stderr
    assert "score" in pd.read_csv(lstm_sweep / "report" / "top_k.csv").columns
    assert (lstm_sweep / "report" / "pareto.png").stat().st_size > 0


def test_edge_of_the_range_is_flagged_and_next_widens_it(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    (conf / "search").mkdir(parents=True)
    (conf / "search" / "edge.yaml").write_text(
        "# @package _global_\nhydra:\n  mode: MULTIRUN\nsearch:\n  method: grid\n  space:\n"
        "    optimizer.lr: {type: loguniform, low: 1.0e-4, high: 1.0e-2, num: 3}\n"
        "    model.hidden_size: [16, 32, 64]\n")
    sweep_dir = tmp_path / "sweep"
    common = ["cluster=local", "task.fn=sweeper_test_tasks:quadratic"]
    r = run_cli(f"--config-dir={conf}", "+search=edge", *common, f"hydra.sweep.dir={sweep_dir}")
    assert r.returncode == 0, r.stderr
    rep = run_cli("report", str(sweep_dir))
    assert rep.returncode == 0, rep.stderr
    assert "the best optimizer.lr=0.01 is at the top of what was searched: widen it upward" in rep.stdout
    assert "model.hidden_size" not in " ".join(ln for ln in rep.stdout.splitlines() if ln.startswith("next:"))
    nxt = run_cli("next", str(sweep_dir))
    assert nxt.returncode == 0, nxt.stderr
    spec = yaml.safe_load((sweep_dir / "report" / "search" / "next.yaml").read_text())
    lr = spec["search"]["space"]["optimizer.lr"]
    assert lr["type"] == "loguniform" and lr["high"] > 1e-2 and lr["low"] < 1e-2 < lr["high"]
    assert spec["search"]["space"]["model.hidden_size"] == [16, 32, 64]  # 32 is inside: neighbours
    # usable directly as +search=next
    plan = run_cli("plan", "--config-dir", str(sweep_dir / "report"), "+search=next", *common,
                   f"hydra.sweep.dir={tmp_path / 'next'}")
    assert plan.returncode == 0, plan.stderr
    assert "planned 9 trials" in plan.stderr


def test_index_html_images_load_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (scripts/test.sh installs it as root)")
    check = tmp_path / "check.html"
    check.write_text((report / "index.html").read_text().replace("</body>", """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.insertAdjacentHTML('beforeend', `<p id="img-check">loaded ${ok} of ${imgs.length}</p>`);
});
</script></body>"""))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000"]
    dom = subprocess.run([chromium, *flags, "--dump-dom", check.as_uri()], capture_output=True,
                         text=True, timeout=120).stdout
    found = re.search(r"loaded (\d+) of (\d+)", dom)
    images = (report / "index.html").read_text().count("<img ")
    assert images >= 7 and found and int(found.group(1)) == int(found.group(2)) == images, dom[-500:]
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    subprocess.run([chromium, *flags, "--window-size=1200,3000", f"--screenshot={shot}",
                    (report / "index.html").as_uri()], capture_output=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 10_000


def test_tensorboard_event_files(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    sweep_dir = tmp_path / "s"
    r = run_cli("scenario=tiny", "cluster=local", "model.hidden_size=8,16", "tracking.tensorboard=true",
                f"hydra.sweep.dir={sweep_dir}")
    assert r.returncode == 0, r.stderr
    runs = sorted((sweep_dir / "tensorboard").iterdir())
    assert [p.name for p in runs] == ["trial-000000", "trial-000001"]
    events = EventAccumulator(str(runs[0]))
    events.Reload()
    assert [e.step for e in events.Scalars("val_loss")] == [0, 1, 2]
    assert "train_loss" in events.Tags()["scalars"]


def hand_made(tmp_path: Path, statuses: list[str], values: list[float]) -> ReportData:
    """A ReportData without a sweep: what the plots and tables read, and nothing else."""
    n = len(statuses)
    results = pd.DataFrame({
        "trial_id": range(n), "status": statuses, "val_loss": values, "x": range(n),
        "error": [f"ValueError: bad x={i}" if s == "failed" else None for i, s in enumerate(statuses)],
        "finished_at": pd.date_range("2026-01-01", periods=n, freq="min"),
    })
    return ReportData(SweepPaths(tmp_path), None, results, pd.DataFrame(columns=["trial_id", "epoch"]),  # type: ignore[arg-type]
                      "val_loss", "minimize", ["x"], [{"key": "x", "kind": "int", "low": 0, "high": 9}])


def test_search_space_table_says_yes_or_no_for_log_and_never_nan() -> None:
    space = [{"key": "optimizer.lr", "kind": "float", "low": 1e-4, "high": 1e-2, "log": True},
             {"key": "model.dropout", "kind": "float", "low": 0.0, "high": 0.4},
             {"key": "model.hidden_size", "kind": "int", "low": 16, "high": 64, "step": 16},
             {"key": "scenario", "kind": "categorical", "choices": ["tiny", "lorenz"], "group": True}]
    table = space_table(space)
    assert table["log"].tolist() == ["yes", "no", "no", ""]
    assert table["step"].tolist() == ["", "", 16, ""]
    html = page("t", {}, [], pd.DataFrame(), [], table, pd.DataFrame(), "", "")
    assert "nan" not in html.lower() and "None" not in html
    assert "nan" not in markdown_table(table).lower()


@pytest.mark.parametrize(("values", "scale"), [
    ([0.01, 0.2, 0.5, 3.0], "log"),          # positive, 300x: log shows the good trials apart
    ([1.0, 1.5, 2.0, 9.0], "linear"),        # positive, under 10x
    ([-50.0, -1.0, 0.0, 2.0], "symlog"),     # not all positive, magnitudes over 10x
    ([-2.0, -1.0, 0.0, 1.5], "linear"),
])
def test_history_y_scale_follows_the_spread_of_the_metric(tmp_path: Path, values: list[float],
                                                          scale: str) -> None:
    fig = optuna_plots.history(hand_made(tmp_path, ["completed"] * len(values), values))
    assert fig.axes[0].get_yscale() == scale


def test_pruned_trials_are_finished_not_failed(tmp_path: Path) -> None:
    data = hand_made(tmp_path, ["completed", "pruned", "pruned", "failed", "missing", "lost"],
                     [1.0, 2.0, 3.0, float("nan"), float("nan"), float("nan")])
    assert data.failed["status"].tolist() == ["failed", "lost"]
    table = status_table(data.results).set_index("status")
    assert table.index.tolist() == ["completed", "pruned", "failed", "lost", "missing"]  # state order
    assert table.loc["pruned", "trials"] == 2 and table.loc["pruned", "counts as"] == "finished"
    assert table.loc["lost", "counts as"] == "failed or stopped"
    assert table.loc["missing", "counts as"] == "not run yet"
    assert plots.failures(data).axes[0].get_title().startswith("2 trials failed or were stopped")
    only_pruned = hand_made(tmp_path, ["completed", "pruned"], [1.0, 2.0])
    assert plots.failures(only_pruned) is None
