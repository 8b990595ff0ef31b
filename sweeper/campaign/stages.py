"""Planning one stage of a campaign, without Hydra: every stage is a normal sweep dir.

The campaign's config variants (one per combination of config-group options in its space)
are composed once, by Hydra, when the campaign starts, and frozen in ``CAMPAIGN_DIR/base``.
A stage is planned from them: its own overrides (the epoch budget) are applied to the frozen
configs by :func:`frozen_composer`, so a later stage needs no Hydra and no config files (a
SLURM planning job, or ``resume`` after the YAML changed, plans from what was frozen).

- search: the stage's method over the campaign's space;
- narrow: over the space narrowed around the best trial so far (:mod:`sweeper.narrow`);
- top_k_cv: the k best distinct configs so far, each on every fold (``data.fold``);
- final: the config with the best mean over the folds, on train+validation, scored on test.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf, open_dict

from sweeper.campaign.spec import CampaignConf, StageConf
from sweeper.errors import SweeperError
from sweeper.overrides import build_request, parse_overrides
from sweeper.paths import SweepPaths
from sweeper.record import SweepRecord
from sweeper.schema import SearchConf
from sweeper.space import Param
from sweeper.state import TrialState
from sweeper.strategies import Design

__all__ = ["FOLD_KEY", "StagePlan", "earlier_results", "frozen_composer", "stage_design"]

FOLD_KEY = "data.fold"


def frozen_composer(base: SweepRecord) -> tuple[Callable[[list[str]], DictConfig],
                                                  Callable[[str], bool]]:
    """A composer over the frozen variants: group choices pick the variant, value overrides
    are applied to a copy of it. Returns (compose, is_group)."""
    groups = {p.key for p in base.params if p.group}
    variants = {v.choices: v for v in base.variants}

    def is_group(key: str) -> bool:
        return key.lstrip("+~") in groups

    def compose(overrides: list[str]) -> DictConfig:
        chosen = tuple(o for o in overrides if is_group(o.split("=")[0]))
        variant = variants.get(chosen)
        if variant is None:
            raise SweeperError(f"the campaign's frozen configs have no variant {list(chosen)} "
                               f"(frozen: {[list(v) for v in variants]})")
        cfg = OmegaConf.create(OmegaConf.to_container(variant.config, resolve=False))
        assert isinstance(cfg, DictConfig)
        for o in parse_overrides([o for o in overrides if not is_group(o.split("=")[0])]):
            with open_dict(cfg):
                OmegaConf.update(cfg, o.key_or_group, o.value(), merge=True,
                                 force_add=o.is_add() or o.is_force_add())
        if variant.hydra is not None:
            with open_dict(cfg):
                cfg.hydra = OmegaConf.to_container(variant.hydra, resolve=False)
        return cfg

    return compose, is_group


class StagePlan:
    """What :func:`sweeper.planner.plan_sweep` needs for one stage."""

    def __init__(self, search: SearchConf, request: Any, design: Design | None,
                 note: str = "") -> None:
        self.search, self.request, self.design, self.note = search, request, design, note


def _search(camp: CampaignConf, stage: StageConf, index: int, **changes: Any) -> SearchConf:
    fields: dict[str, Any] = dict(
        method=stage.method, n_trials=stage.n_trials, seed=camp.seed + index, metric=camp.metric,
        direction=camp.direction, pruner=dict(stage.pruner), sampler=dict(stage.sampler))
    fields.update(changes)
    return SearchConf(**fields)


def stage_design(camp: CampaignConf, stages: Sequence[StageConf], index: int,
                 base: SweepRecord, before: pd.DataFrame, is_group: Callable[[str], bool],
                 cv: pd.DataFrame | None = None) -> StagePlan:
    """The stage's search settings, space and (for CV and final) its explicit trials.
    ``before`` holds the completed trials of the earlier search and narrow stages, ``cv``
    the cross-validation table of an earlier top_k_cv stage (best mean first)."""
    stage = stages[index]
    overrides = [*base.fixed_overrides, *stage.overrides]
    if stage.kind == "search":
        request = build_request(camp.space, overrides, is_group, None, camp.seed + index)
        return StagePlan(_search(camp, stage, index), request, None)
    if before.empty:
        raise SweeperError(f"stage {index + 1} ({stage.name}) cannot be planned: no trial of the "
                           "stages before it completed with "
                           f"{camp.metric}; see their errors with `sweeper status`")
    ranked = _ranked(before, camp)
    keys = [str(s["key"]) for s in base.space]
    if stage.kind == "narrow":
        from sweeper.narrow import narrow_space, to_yaml_space

        best = ranked.iloc[0]
        space = narrow_space(list(base.space), {k: _plain(best[k]) for k in keys},
                             factor=stage.factor, fraction=stage.fraction,
                             int_steps=stage.int_steps, top=stage.top,
                             ranked=_choice_ranks(ranked, base))
        request = build_request(to_yaml_space(space), overrides, is_group, None,
                                camp.seed + index)
        return StagePlan(_search(camp, stage, index), request, None,
                         f"narrowed around trial {best['trial_id']} of {best['stage']}")
    if stage.kind == "final" and cv is not None and len(cv):
        return _final_plan(camp, stage, index, base, cv.head(1), keys, overrides, is_group)
    configs = ranked.drop_duplicates(subset=keys).head(
        stage.top_k if stage.kind == "top_k_cv" else 1)
    if stage.kind == "top_k_cv":
        return _cv_plan(camp, stage, index, base, configs, keys, overrides, is_group)
    return _final_plan(camp, stage, index, base, configs, keys, overrides, is_group)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _ranked(before: pd.DataFrame, camp: CampaignConf) -> pd.DataFrame:
    return before.sort_values([camp.metric, "stage_index", "trial_id"],
                              ascending=[camp.direction == "minimize", True, True])


def _choice_ranks(ranked: pd.DataFrame, base: SweepRecord) -> dict[str, list[Any]]:
    """Each categorical key's choices, best first (by the best trial that used each)."""
    out = {}
    for spec in base.space:
        if spec["kind"] == "categorical":
            key = str(spec["key"])
            out[key] = [_plain(v) for v in ranked[key].drop_duplicates().tolist()]
    return out


def _explicit(params: list[Param], rows: list[list[int]]) -> Design:
    """A design of the given rows (indices into each param's choices)."""
    data = np.asarray(rows, dtype=np.int64).reshape(len(rows), len(params))
    return Design(len(rows), tuple((p, data[:, j]) for j, p in enumerate(params)))


def _config_params(base: SweepRecord, configs: pd.DataFrame, keys: list[str]
                   ) -> tuple[list[Param], list[list[int]]]:
    """One categorical param per key over the configs' values; each config's indices."""
    params, index = [], []
    groups = {p.key: p for p in base.params}
    for key in keys:
        values = list(dict.fromkeys(_plain(v) for v in configs[key].tolist()))
        spec = next(s for s in base.space if s["key"] == key)
        param = Param.categorical(key, values, prefix=str(spec.get("prefix", "")),
                                  group=groups[key].group)
        params.append(param)
        index.append([values.index(_plain(v)) for v in configs[key].tolist()])
    return params, [list(col) for col in zip(*index, strict=True)] if index else \
        [[] for _ in range(len(configs))]


def _cv_plan(camp: CampaignConf, stage: StageConf, index: int, base: SweepRecord,
             configs: pd.DataFrame, keys: list[str], overrides: list[str],
             is_group: Callable[[str], bool]) -> StagePlan:
    """The configs as a grid, cross-validated: each config becomes ``n_folds`` trials, and the
    stage's pruner (e.g. Wilcoxon) may stop a config after a few folds."""
    from sweeper.schema import CrossValidationConf

    params, rows = _config_params(base, configs, keys)
    request = _request_of(params, overrides, is_group)
    folds = CrossValidationConf(enabled=True, n_folds=stage.n_folds, fold_key=FOLD_KEY)
    search = _search(camp, stage, index, method="grid", n_trials=None, sampler={},
                     cross_validation=folds)
    return StagePlan(search, request, _explicit(params, rows),
                     f"{len(configs)} config(s) x {stage.n_folds} folds")


def _final_plan(camp: CampaignConf, stage: StageConf, index: int, base: SweepRecord,
                configs: pd.DataFrame, keys: list[str], overrides: list[str],
                is_group: Callable[[str], bool]) -> StagePlan:
    params, rows = _config_params(base, configs, keys)
    request = _request_of(params, [*overrides, "data.use_test=true"], is_group)
    search = _search(camp, stage, index, method="grid", n_trials=None, sampler={},
                     pruner={"type": "none"}, metric="test_loss")
    return StagePlan(search, request, _explicit(params, rows), "the best config by the folds' mean"
                     if "folds" in configs else "the best config so far")


def _request_of(params: list[Param], fixed: list[str], is_group: Callable[[str], bool]) -> Any:
    from sweeper.overrides import SweepRequest
    from sweeper.space import SearchSpace, with_group_flag

    params = [with_group_flag(p, is_group(p.key)) for p in params]
    entries: list[tuple[str, Any]] = [(s.split("=")[0], s) for s in fixed]
    entries += [(p.override_key, p) for p in params]
    return SweepRequest(SearchSpace(tuple(params)), tuple(entries))


def earlier_results(stage_dirs: Sequence[tuple[int, str, SweepPaths]], metric: str
                    ) -> pd.DataFrame:
    """The completed trials of the given stages, with the metric, tagged with their stage."""
    from sweeper.merge import merge

    frames = []
    for i, name, paths in stage_dirs:
        if not paths.trials.is_file():
            continue
        df = merge(paths).results.to_pandas()
        df = df[(df["status"] == TrialState.COMPLETED.value) & df.get(metric, pd.Series(dtype=float)).notna()]
        if len(df):
            frames.append(df.assign(stage=name, stage_index=i))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
