"""The report's Optuna part. On real sweeps: interactive figures with plotly.js inlined once,
drawn by headless Chromium with every trial's point; a PNG per plot; the study read back
through optuna-dashboard's HTTP API; a sweep that keeps its own study, and one where nothing
completed. On hand-made tables: the Pareto front's trials, and pruned curves marked."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from conftest import run_cli
from sweeper.analysis.data import ReportData
from sweeper.analysis.html import OptunaSection, page
from sweeper.analysis.optuna_plots import draw
from sweeper.analysis.study_view import pareto_trials, study_from_rows, study_journal
from sweeper.paths import SweepPaths
from sweeper.record import SweepRecord

LSTM = ["scenario=tiny", "cluster=local", "optimizer.lr=0.003,0.03", "model.hidden_size=8,16",
        "model.dropout=0.0,1.5"]  # dropout 1.5 is invalid: half the trials fail
PLOTS = ["history", "importance", "slices", "contour", "parallel", "intermediate"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sweep_dir = tmp_path_factory.mktemp("optuna") / "sweep"
    r = run_cli(*LSTM, f"hydra.sweep.dir={sweep_dir}")
    assert r.returncode == 1, r.stderr  # the invalid dropout failed, the rest completed
    return sweep_dir


@pytest.fixture(scope="module")
def report(sweep: Path) -> str:
    r = run_cli("report", str(sweep))
    assert r.returncode == 0, r.stderr
    return r.stdout


def study_name_of(sweep: Path) -> str:
    from sweeper.study import study_name

    return study_name(SweepRecord.load(SweepPaths(sweep)))


def rows(sweep: Path) -> pd.DataFrame:
    return pd.read_parquet(sweep / "results.parquet").set_index("trial_id").sort_index()


def figure_data(html: str, name: str) -> list[dict[str, Any]]:
    """The traces of one figure, as the page hands them to Plotly.newPlot."""
    start = re.search(rf'Plotly\.newPlot\(\s*"optuna-{name}",\s*', html)
    assert start, f"no figure optuna-{name}"
    traces, _ = json.JSONDecoder().raw_decode(html, start.end())
    return traces


def figure_dom(dom: str, name: str) -> str:
    """The rendered DOM of one figure: from its div to the next figure's."""
    start = dom.index(f'id="optuna-{name}"')
    end = dom.find('id="optuna-', start + 1)
    return dom[start:end if end > 0 else None]


def test_report_says_how_to_open_the_study(sweep: Path, report: str) -> None:
    journal = sweep / "report" / "study.journal"
    assert f"optuna-dashboard {journal}" in report
    assert f"optuna-dashboard {journal}" in (sweep / "report" / "index.html").read_text()
    assert journal.is_file() and not (sweep / "study.journal").exists()


def test_page_inlines_plotly_once_and_a_figure_per_plot(sweep: Path, report: str) -> None:
    from plotly.offline import get_plotlyjs

    html = (sweep / "report" / "index.html").read_text()
    assert html.count(get_plotlyjs()[:300]) == 1
    assert not re.findall(r"<script[^>]*\bsrc=", html)  # offline: nothing to fetch
    assert html.count('class="plotly-graph-div"') == len(PLOTS)
    for name in PLOTS:
        assert figure_data(html, name), name
    done = rows(sweep).query("status == 'completed'")
    points = [t for t in figure_data(html, "history") if t.get("mode") == "markers"]
    assert sorted(y for t in points for y in t["y"]) == sorted(done["val_loss"])
    curves = [t for t in figure_data(html, "intermediate") if t.get("name", "").startswith("Trial")]
    assert len(curves) == len(done)  # one per completed trial; the failed ones have none


def test_figures_render_with_every_completed_trial_in_chromium(sweep: Path, report: str,
                                                             tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (scripts/test.sh installs it as root)")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000"]
    page_uri = (sweep / "report" / "index.html").as_uri()
    dom = subprocess.run([chromium, *flags, "--dump-dom", page_uri], capture_output=True,
                         text=True, timeout=120).stdout
    assert 'id="optuna-history"' in dom, dom[-500:]
    done = rows(sweep).query("status == 'completed'")
    for name in PLOTS:
        assert 'class="main-svg"' in figure_dom(dom, name), f"{name} was not drawn"
    assert figure_dom(dom, "history").count('class="point"') == len(done)


def test_a_png_per_optuna_plot(sweep: Path, report: str) -> None:
    for name in PLOTS:
        png = sweep / "report" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert f'href="{PLOTS[0]}.png"' in (sweep / "report" / "index.html").read_text()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str, deadline_s: float = 30.0) -> Any:
    """The JSON at ``url``, asked again until the server answers or the deadline passes."""
    end = time.monotonic() + deadline_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                return json.load(answer)
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.2)


def test_optuna_dashboard_serves_the_sweeps_rows(sweep: Path, report: str) -> None:
    exe = Path(sys.executable).parent / "optuna-dashboard"
    if not exe.is_file():
        pytest.skip("optuna-dashboard is not installed (pip install -e '.[test]' installs it)")
    journal = study_journal(SweepPaths(sweep), SweepRecord.load(SweepPaths(sweep)))
    port = free_port()
    dashboard = subprocess.Popen([str(exe), str(journal), "--host", "127.0.0.1", "--port",
                                  str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        studies = get_json(f"http://127.0.0.1:{port}/api/studies")["study_summaries"]
        assert [s["study_name"] for s in studies] == [study_name_of(sweep)]
        trials = get_json(f"http://127.0.0.1:{port}/api/studies/{studies[0]['study_id']}")["trials"]
    finally:
        dashboard.terminate()
        dashboard.wait(timeout=30)
    table = rows(sweep)
    assert len(trials) == len(table)
    for trial in trials:
        attrs = {a["key"]: a["value"] for a in trial["user_attrs"]}
        row = table.loc[int(attrs["trial_id"])]
        if row["status"] == "completed":
            assert trial["state"] == "Complete" and trial["values"] == [row["val_loss"]]
        else:
            assert trial["state"] == "Fail" and not trial.get("values")
        assert {p["name"]: p["param_external_value"] for p in trial["params"]} == \
            {k: str(row[k]) for k in ("optimizer.lr", "model.hidden_size", "model.dropout")}


def test_a_pruned_sweep_opens_its_own_study(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "pruned"
    r = run_cli("cluster=local", "task.fn=sweeper_test_tasks:bowl", "training.epochs=4",
                "optimizer.lr=0.0001,0.01", "+search.pruner={type:threshold,upper:3.0}",
                f"hydra.sweep.dir={sweep_dir}")  # lr=1e-4 starts at val_loss 5: pruned
    assert r.returncode == 0, r.stderr
    rep = run_cli("report", str(sweep_dir))
    assert rep.returncode == 0, rep.stderr
    assert f"optuna-dashboard {sweep_dir / 'study.journal'}" in rep.stdout
    assert not (sweep_dir / "report" / "study.journal").exists()
    html = (sweep_dir / "report" / "index.html").read_text()
    pruned = [t for t in figure_data(html, "intermediate") if t.get("name") == "pruned"]
    assert rows(sweep_dir)["status"].tolist() == ["pruned", "completed"]
    assert len(pruned) == 1 and pruned[0]["x"] == [0] and pruned[0]["y"] == [5.0]


def test_a_sweep_where_nothing_completed_still_reports(tmp_path: Path) -> None:
    sweep_dir, markers = tmp_path / "failed", tmp_path / "markers"
    markers.mkdir()
    for x in (0, 1):
        (markers / f"raise-{x}").touch()  # sweeper_test_tasks.behave raises for these
    r = run_cli("cluster=local", "task.fn=sweeper_test_tasks:behave", "+x=0,1",
                f"+markers={markers}", f"hydra.sweep.dir={sweep_dir}")
    assert r.returncode == 1, r.stderr
    rep = run_cli("report", str(sweep_dir))
    assert rep.returncode == 0, rep.stderr
    html = (sweep_dir / "report" / "index.html").read_text()
    assert "Plotly.newPlot" not in html and "plotly.js v" not in html  # no figure: no plotly.js
    assert html.count("not drawn: no completed trials yet") == len(PLOTS) - 1
    assert "not drawn: no trial reported val_loss per epoch" in html
    journal = JournalFileBackend(str(sweep_dir / "report" / "study.journal"))
    study = optuna.load_study(study_name=study_name_of(sweep_dir),
                              storage=JournalStorage(journal))
    assert [t.state.name for t in study.trials] == ["FAIL", "FAIL"]


def hand_made(tmp_path: Path, results: dict[str, list[Any]], curves: pd.DataFrame | None = None,
              objectives: tuple[tuple[str, str], ...] = ()) -> ReportData:
    """A ReportData without a sweep: what the study is built from, and nothing else."""
    table = pd.DataFrame(results)
    n = len(table)
    table = table.assign(trial_id=range(n), x=[i / 10 for i in range(n)],
                         y=["a" if i % 2 else "b" for i in range(n)])
    space = [{"key": "x", "kind": "float", "low": 0.0, "high": 1.0},
             {"key": "y", "kind": "categorical", "choices": ["a", "b"]}]
    metric = objectives[0][0] if objectives else "val_loss"
    return ReportData(SweepPaths(tmp_path), None, table,  # type: ignore[arg-type]
                      curves if curves is not None else pd.DataFrame(columns=["trial_id", "epoch"]),
                      metric, "minimize", ["x", "y"], space, objectives)


def test_multi_objective_study_lists_the_pareto_front(tmp_path: Path) -> None:
    data = hand_made(tmp_path, {"status": ["completed"] * 5 + ["failed"],
                                "loss": [1.0, 2.0, 3.0, 2.5, 1.5, None],
                                "time": [5.0, 2.0, 1.0, 3.0, 6.0, None]},
                     objectives=(("loss", "minimize"), ("time", "minimize")))
    study = study_from_rows(data)
    assert len(study.directions) == 2 and study.metric_names == ["loss", "time"]
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 5 + ["FAIL"]
    front = pareto_trials(study, data)
    assert front is not None and front["trial_id"].tolist() == [0, 1, 2]
    figures = draw(study, data, tmp_path, {})
    assert (tmp_path / "pareto_front.png").is_file()
    html = page("t", {}, [], pd.DataFrame(), [], pd.DataFrame(), pd.DataFrame(), "", "",
                OptunaSection(figures, "optuna-dashboard x", front))
    listed = html.split("The trials on the front:", 1)[1].split("</table>", 1)[0]
    assert re.findall(r"<tr><td>(\d+)</td>", listed) == ["0", "1", "2"]


def test_pruned_curves_are_marked_where_they_stop(tmp_path: Path) -> None:
    curves = pd.DataFrame({"trial_id": [0, 0, 0, 1, 1, 2, 2, 2],
                           "epoch": [0, 1, 2, 0, 1, 0, 1, 2],
                           "val_loss": [1.0, 0.6, 0.4, 1.2, 1.1, 0.9, 0.5, 0.3]})
    data = hand_made(tmp_path, {"status": ["completed", "pruned", "completed"],
                                "val_loss": [0.4, 1.1, 0.3]}, curves)
    study = study_from_rows(data)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "PRUNED", "COMPLETE"]
    assert study.trials[1].intermediate_values == {0: 1.2, 1: 1.1}
    figure = next(f for f in draw(study, data, tmp_path, {}) if f.name == "intermediate")
    marks = [t for t in figure.plotly.data if t.name == "pruned"]
    assert len(marks) == 1 and list(marks[0].x) == [1] and list(marks[0].y) == [1.1]
    assert figure.png is not None and figure.png.stat().st_size > 0
