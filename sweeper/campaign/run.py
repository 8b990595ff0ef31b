"""Running a campaign: its stages in order, each a normal sweep dir under the campaign dir.

``CAMPAIGN_DIR/campaign.yaml`` freezes the stage list and records each stage's state
(``open``, ``done``, or ``stopped`` with the reason). ``resume`` goes on from the first
stage not done; a stage already planned finds its own dir and runs only what it lacks.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from sweeper.campaign.spec import CampaignConf, StageConf, check_campaign
from sweeper.campaign.stages import earlier_results, frozen_composer, stage_design
from sweeper.console import err as console
from sweeper.console import shell_path
from sweeper.crossval import cv_keys, cv_table
from sweeper.errors import SweepDirError, SweeperError
from sweeper.executors import Executor, LaunchResult
from sweeper.paths import SweepPaths, atomic_path
from sweeper.record import SweepRecord
from sweeper.state import TrialState

__all__ = ["CAMPAIGN_NAME", "CampaignRecord", "is_campaign", "run_stages"]

CAMPAIGN_NAME = "campaign.yaml"
BASE_DIR = "base"
_MAX_LAUNCHES = 3


def is_campaign(root: Path) -> bool:
    return (Path(root) / CAMPAIGN_NAME).is_file()


@dataclass
class StageState:
    dir: str
    state: str = "open"  # open | done | stopped
    reason: str = ""
    note: str = ""
    launches: int = 0  # SLURM: times its arrays were submitted


@dataclass
class CampaignRecord:
    """``campaign.yaml``: the frozen campaign, and where each stage stands."""

    campaign: dict[str, Any]
    stages: list[StageState] = field(default_factory=list)
    executor: str = "local"

    @property
    def conf(self) -> tuple[CampaignConf, list[StageConf]]:
        return check_campaign(self.campaign)

    @classmethod
    def load(cls, root: Path) -> CampaignRecord:
        path = Path(root) / CAMPAIGN_NAME
        try:
            node = OmegaConf.to_container(OmegaConf.load(path))
            assert isinstance(node, dict)
            return cls(node["campaign"], [StageState(**s) for s in node["stages"]],
                       str(node.get("executor", "local")))
        except (OSError, KeyError, TypeError, AssertionError, ValueError) as ex:
            raise SweepDirError(f"{path} is unreadable ({type(ex).__name__}: {ex}); restore it, "
                                "or start the campaign afresh in a new dir") from None

    def save(self, root: Path) -> None:
        node = {"campaign": self.campaign, "executor": self.executor,
                "stages": [dataclasses.asdict(s) for s in self.stages]}
        with atomic_path(Path(root) / CAMPAIGN_NAME) as tmp:
            OmegaConf.save(OmegaConf.create(node), tmp)


def stage_dirs(root: Path, stages: list[StageConf]) -> list[str]:
    return [f"stage-{i + 1}-{s.name}" for i, s in enumerate(stages)]


def run_stages(root: Path, executor: Executor, wait: bool = False) -> LaunchResult:
    """Run every stage not done yet, in order; returns the last stage's launch. Locally one
    display shows the whole campaign's progress."""
    record = CampaignRecord.load(root)
    _, stages = record.conf
    base = SweepRecord.load(SweepPaths(root / BASE_DIR))
    compose, is_group = frozen_composer(base)
    if not executor.runs_here:
        return _run_stages(root, record, executor, base, compose, is_group, wait)
    from sweeper.progress import CampaignProgress

    sizes = [_size(stage) for stage in stages]
    done = sum(n for n, st in zip(sizes, record.stages, strict=True) if st.state == "done")
    with CampaignProgress(sizes, [st.name for st in stages], done_before=done):
        return _run_stages(root, record, executor, base, compose, is_group, wait)


def _size(stage: StageConf) -> int:
    """How many trials a stage will have, before it is planned (for the progress bar)."""
    if stage.kind == "top_k_cv":
        return stage.top_k * stage.n_folds
    return 1 if stage.kind == "final" else int(stage.n_trials or 0)


def _run_stages(root: Path, record: CampaignRecord, executor: Executor, base: SweepRecord,
                compose: Any, is_group: Any, wait: bool) -> LaunchResult:
    from sweeper.planner import plan_sweep
    from sweeper.progress import campaign_display
    from sweeper.sweep import run_pending

    camp, stages = record.conf
    result = LaunchResult()
    for i, stage in enumerate(stages):
        state = record.stages[i]
        if state.state == "done":
            continue
        if (display := campaign_display()) is not None:
            display.stage(i)
        paths = SweepPaths(root / state.dir)
        console.print(f"[campaign] stage {i + 1}/{len(stages)} {stage.name} ({stage.kind}"
                      f"{', ' + stage.method if stage.kind in ('search', 'narrow') else ''}"
                      f"{', ' + ' '.join(stage.overrides) if stage.overrides else ''})")
        try:
            before = earlier_results(_searched(root, record, stages, i), camp.metric)
            plan = stage_design(camp, stages, i, base, before, is_group, _cv_before(root, record,
                                                                                     stages, i))
            planned = plan_sweep(paths, plan.search, plan.request, compose,
                                 cluster=base.cluster, executor=record.executor,
                                 is_group=is_group, task_fallback=base.variants[0].task_fn,
                                 command=base.command, design=plan.design,
                                 workers=executor.workers)
        except SweeperError as ex:
            _stop(root, record, i, str(ex))
            raise
        state.note = plan.note
        record.save(root)
        console.print(f"[campaign] {planned.n_trials or plan.search.n_trials} trial(s) in "
                      f"{paths.root}" + (f": {plan.note}" if plan.note else ""))
        if stage.warm_start and plan.search.adaptive and not before.empty:
            _warm_start(paths, planned.record, before)
        result = run_pending(paths, planned.record, planned.table, executor, False, wait)
        if result.interrupted:
            return result
        if result.job_ids and not result.waited:
            # SLURM: a planning job goes on once this stage's arrays have ended.
            _chain(root, record, i, base, result.job_ids)
            return result
        if not _any_completed(paths, plan.search.metrics[0]):
            _stop(root, record, i, f"no trial of stage {i + 1} ({stage.name}) completed")
            return result
        state.state = "done"
        record.save(root)
    summarize(root)
    return result


def _chain(root: Path, record: CampaignRecord, i: int, base: SweepRecord,
           job_ids: tuple[str, ...]) -> None:
    """Submit the planning job that continues after stage ``i``'s arrays; a stage submitted
    again and again (its trials keep getting lost) stops the campaign instead."""
    from sweeper.campaign.chain import submit_next

    state = record.stages[i]
    state.launches += 1
    if state.launches > _MAX_LAUNCHES:
        _stop(root, record, i, f"stage {i + 1} was submitted {_MAX_LAUNCHES} times and still "
                               "has trials to run; see its status")
        return
    job = submit_next(root, base.cluster, base.python or sys.executable, job_ids)
    record.save(root)
    console.print(f"[campaign] stage {i + 1} submitted ({', '.join(job_ids)}); planning job "
                  f"{job} goes on after it. Watch: sweeper status {shell_path(root)}")


def _stop(root: Path, record: CampaignRecord, i: int, reason: str) -> None:
    record.stages[i].state, record.stages[i].reason = "stopped", reason
    record.save(root)
    console.print(f"[campaign] stopped at stage {i + 1}: {reason}")


def _any_completed(paths: SweepPaths, metric: str) -> bool:
    from sweeper.merge import merge

    results = merge(paths).results
    return any(s == TrialState.COMPLETED.value for s in results.column("status").to_pylist())


def _warm_start(paths: SweepPaths, srec: SweepRecord, before: pd.DataFrame) -> None:
    """Give an adaptive stage's study the completed trials of the stages before it (once: a
    resumed stage's study has them already)."""
    from sweeper.study import PRIOR_ATTR, add_priors, open_study

    study = open_study(paths, srec)
    if any(PRIOR_ATTR in t.user_attrs for t in study.get_trials(deepcopy=False)):
        return
    rows = before.to_dict("records")
    n = add_priors(study, srec, rows, [f"{r['stage']} trial {r['trial_id']}" for r in rows])
    console.print(f"[campaign] its study starts with {n} completed trial(s) of the stages "
                  f"before it (of {len(rows)}; the rest lie outside its space)")


def _searched(root: Path, record: CampaignRecord, stages: list[StageConf], i: int
              ) -> list[tuple[int, str, SweepPaths]]:
    return [(j, stages[j].name, SweepPaths(root / record.stages[j].dir)) for j in range(i)
            if stages[j].kind in ("search", "narrow")]


def _cv_before(root: Path, record: CampaignRecord, stages: list[StageConf], i: int
               ) -> pd.DataFrame | None:
    cv = [j for j in range(i) if stages[j].kind == "top_k_cv"]
    if not cv:
        return None
    return stage_cv_table(root, record, cv[-1])


def stage_cv_table(root: Path, record: CampaignRecord, j: int) -> pd.DataFrame:
    from sweeper.merge import merge

    camp, _ = record.conf
    paths = SweepPaths(root / record.stages[j].dir)
    srec = SweepRecord.load(paths)
    return cv_table(merge(paths).results.to_pandas(), cv_keys(srec), camp.metric,
                    camp.direction, srec.search.cross_validation.aggregation)


def summarize(root: Path) -> dict[str, Any]:
    """Per stage: trials, states and epochs trained; the CV table; the final test score.
    Printed, and written to CAMPAIGN_DIR/summary.yaml (and cv.csv)."""
    from sweeper.merge import merge

    record = CampaignRecord.load(root)
    _, stages = record.conf
    rows: list[dict[str, Any]] = []
    final: dict[str, Any] = {}
    for i, (stage, state) in enumerate(zip(stages, record.stages, strict=True)):
        paths = SweepPaths(root / state.dir)
        if not paths.trials.is_file():
            rows.append({"stage": i + 1, "name": stage.name, "kind": stage.kind,
                         "state": state.state, "trials": 0, "epochs": 0})
            continue
        df = merge(paths).results.to_pandas()
        epochs = int(df["epochs_run"].fillna(0).sum()) if "epochs_run" in df else 0
        rows.append({"stage": i + 1, "name": stage.name, "kind": stage.kind,
                     "state": state.state, "trials": len(df), "epochs": epochs,
                     **{str(s): int(n) for s, n in df["status"].value_counts().items()}})
        if stage.kind == "top_k_cv":
            stage_cv_table(root, record, i).to_csv(root / "cv.csv", index=False)
        if stage.kind == "final" and "test_loss" in df and df["test_loss"].notna().any():
            best = df[df["test_loss"].notna()].iloc[0]
            final = {"test_loss": float(best["test_loss"]), "trial_dir": str(
                paths.checkpoint_dir(int(best["trial_id"])))}
    summary = {"stages": rows, "final": final,
               "total_epochs": int(sum(r["epochs"] for r in rows))}
    with atomic_path(root / "summary.yaml") as tmp:
        OmegaConf.save(OmegaConf.create(summary), tmp)
    table = pd.DataFrame(rows).fillna(0)
    print(table.to_string(index=False))
    if final:
        print(f"[campaign] final model: test_loss={final['test_loss']:.6g}, saved in "
              f"{final['trial_dir']}")
    print(f"[campaign] {summary['total_epochs']} epochs in all; summary: "
          f"{shell_path(root / 'summary.yaml')}", file=sys.stderr)
    return summary
