"""``status``, ``resume``, ``cancel``, ``merge`` and ``report`` on a campaign dir (one that holds
``campaign.yaml``): each works stage by stage, on the stages' own sweep dirs."""

from __future__ import annotations

import argparse
import html
from pathlib import Path
from typing import Any

from sweeper.console import err, out, shell_path
from sweeper.paths import SweepPaths, atomic_path

__all__ = ["CAMPAIGN_COMMANDS", "campaign_command"]

CAMPAIGN_COMMANDS = ("status", "resume", "cancel", "merge", "report")


def campaign_command(args: argparse.Namespace) -> int:
    return int({"status": _status, "resume": _resume, "cancel": _cancel, "merge": _merge,
                "report": _report}[args.command](Path(args.dir)))


def _stages(root: Path) -> list[tuple[int, Any, Any, SweepPaths]]:
    from sweeper.campaign.run import CampaignRecord

    record = CampaignRecord.load(root)
    _, stages = record.conf
    return [(i, s, st, SweepPaths(root / st.dir))
            for i, (s, st) in enumerate(zip(stages, record.stages, strict=True))]


def _status(root: Path) -> int:
    from rich.table import Table

    from sweeper.status import sweep_state

    table = Table(title=f"campaign {root}")
    for name in ("stage", "kind", "state", "trials"):
        table.add_column(name)
    for i, stage, st, paths in _stages(root):
        counts = ""
        if paths.sweep_yaml.is_file():
            c = sweep_state(paths).counts()
            counts = ", ".join(f"{n} {s.value}" for s, n in sorted(c.items(), key=lambda x: x[0].value))
        state = st.state + (f": {st.reason}" if st.reason else "")
        table.add_row(f"{i + 1} {stage.name}", stage.kind, state, counts or "not planned")
    out.print(table)
    return 0


def _resume(root: Path) -> int:
    from sweeper.campaign.run import BASE_DIR, CampaignRecord, run_stages
    from sweeper.executors import make_executor
    from sweeper.record import SweepRecord

    base = SweepRecord.load(SweepPaths(root / BASE_DIR))
    executor = make_executor(base.cluster, CampaignRecord.load(root).executor)
    err.print(f"[campaign] resuming {root} on: {executor.describe()}")
    return run_stages(root, executor).exit_code


def _cancel(root: Path) -> int:
    from sweeper.driver import cancel_local
    from sweeper.executors.slurm import cancel_arrays

    stopped = failures = 0
    for _, _, _, paths in _stages(root):
        if not paths.sweep_yaml.is_file():
            continue
        local, _ = cancel_local(paths)
        arrays, failure = cancel_arrays(paths)
        stopped += local + arrays
        failures += bool(failure)
    out.print(f"[campaign] stopped {stopped} local sweep(s) or array(s); continue later with "
              f"`sweeper resume {shell_path(root)}`")
    return 1 if failures else 0


def _merge(root: Path) -> int:
    from sweeper.campaign.run import summarize

    summarize(root)
    return 0


def _report(root: Path) -> int:
    """One page: each stage's results and space, the CV table, the final test score and the
    compute per stage; each stage's own report is linked."""
    from sweeper.analysis import ReportOptions, build_report
    from sweeper.campaign.run import CampaignRecord, stage_cv_table, summarize
    from sweeper.record import SweepRecord

    summary = summarize(root)
    parts = [f"<h1>campaign {html.escape(str(root.name))}</h1>", _table(summary["stages"])]
    record = CampaignRecord.load(root)
    for i, stage, st, paths in _stages(root):
        parts.append(f"<h2>stage {i + 1}: {html.escape(stage.name)} ({stage.kind})</h2>")
        if st.note:
            parts.append(f"<p>{html.escape(st.note)}</p>")
        if not paths.sweep_yaml.is_file():
            parts.append("<p>not planned yet</p>")
            continue
        srec = SweepRecord.load(paths)
        parts.append("<p>space:</p>" + _table([dict(s) for s in srec.space]))
        try:
            build_report(paths, ReportOptions())
            parts.append(f'<p><a href="../{html.escape(st.dir)}/report/index.html">its '
                         "report</a></p>")
        except Exception as ex:  # a stage without results still has a campaign page
            parts.append(f"<p>no report: {html.escape(str(ex))}</p>")
        if stage.kind == "top_k_cv":
            cv = stage_cv_table(root, record, i)
            parts.append("<p>cross-validation, best mean first:</p>"
                         + _table(cv.to_dict("records")))
    if summary["final"]:
        parts.append(f"<h2>final model</h2><p>test_loss = {summary['final']['test_loss']:.6g}; "
                     f"saved in {html.escape(summary['final']['trial_dir'])}</p>")
    target = root / "report" / "index.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        tmp.write_text("<!doctype html><meta charset=utf-8><title>campaign</title>"
                       + "\n".join(parts))
    out.print(f"[campaign] report: {target}")
    return 0


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p>(none)</p>"
    keys = list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in keys)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(k)))}</td>" for k in keys)
                   + "</tr>" for r in rows)
    return f"<table border=1><tr>{head}</tr>{body}</table>"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else str(value)
