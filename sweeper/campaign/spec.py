"""A campaign's settings (``conf/campaign/*.yaml``, the ``campaign:`` node), checked whole
before anything is planned: every bad stage list is one line naming the stage and the fix."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sweeper.errors import ConfigError, closest
from sweeper.schema import DIRECTIONS, SEARCH_METHODS, SearchConf, validate

__all__ = ["KINDS", "CampaignConf", "StageConf", "check_campaign"]

#: search: any method over the campaign's space; narrow: a search over the space narrowed
#: around the best so far; top_k_cv: the k best configs so far, re-trained on each fold;
#: final: the config chosen by cross-validation, trained on train+validation, scored on test.
KINDS = ("search", "narrow", "top_k_cv", "final")


@dataclass
class StageConf:
    # a short name; the stage's dir is stage-<i>-<name>
    name: str = ""
    # search | narrow | top_k_cv | final
    kind: str = "search"
    # search and narrow: grid | random | qmc | tpe | gp | cmaes
    method: str = "random"
    # search and narrow: how many trials
    n_trials: int | None = None
    # task config values for this stage's trials, as Hydra overrides: the epoch budget, e.g.
    # [training.epochs=8]
    overrides: list[str] = field(default_factory=list)
    # as search.pruner and search.sampler
    pruner: dict[str, Any] = field(default_factory=lambda: {"type": "none"})
    sampler: dict[str, Any] = field(default_factory=dict)
    # search and narrow with tpe, gp or cmaes: the stage's study starts with the completed
    # trials of the search and narrow stages before it (those inside its space), so its
    # sampler models from them at once instead of sampling at random again
    warm_start: bool = True
    # narrow: log keys go to x/÷ factor around the best, linear ones to ± fraction of their
    # range, ints to ± int_steps steps; categoricals keep their `top` best choices
    factor: float = 3.0
    fraction: float = 0.25
    int_steps: int = 2
    top: int = 2
    # top_k_cv: how many of the best configs so far, and the folds of each
    top_k: int = 5
    n_folds: int = 3


@dataclass
class CampaignConf:
    name: str = "campaign"
    # the metric every stage ranks by (the final stage reports test_loss too)
    metric: str = "val_loss"
    direction: str = "minimize"
    seed: int = 0
    # the search space of the search stages, as search.space
    space: dict[str, Any] = field(default_factory=dict)
    stages: list[Any] = field(default_factory=list)


def check_campaign(node: Any) -> tuple[CampaignConf, list[StageConf]]:
    """The campaign and its stages, or a ConfigError naming the first bad stage."""
    camp = validate(node, CampaignConf, "campaign")
    if camp.direction not in DIRECTIONS:
        raise ConfigError(f"unknown campaign.direction {camp.direction!r}"
                          f"{closest(camp.direction, DIRECTIONS)}; options: {', '.join(DIRECTIONS)}")
    if not camp.stages:
        raise ConfigError("campaign.stages is empty; list the stages, e.g. "
                          "[{kind: search, method: random, n_trials: 20}]")
    stages = []
    for i, raw in enumerate(camp.stages):
        where = f"campaign.stages[{i}]"
        if not isinstance(raw, dict):
            raise ConfigError(f"{where} must be a mapping, got {raw!r}; e.g. "
                              "{kind: search, method: random, n_trials: 20}")
        stage = validate(raw, StageConf, where)
        stage.name = stage.name or stage.kind
        stages.append(stage)
    _check_order(stages)
    return camp, stages


def _check_order(stages: list[StageConf]) -> None:
    searched = 0  # trials of the search and narrow stages before this one
    for i, s in enumerate(stages):
        where = f"campaign.stages[{i}] ({s.name})"
        if s.kind not in KINDS:
            raise ConfigError(f"{where}: unknown stage kind {s.kind!r}{closest(s.kind, KINDS)}; "
                              f"kinds: {', '.join(KINDS)}")
        if s.kind in ("search", "narrow"):
            if s.method not in SEARCH_METHODS:
                raise ConfigError(f"{where}: unknown method {s.method!r}"
                                  f"{closest(s.method, SEARCH_METHODS)}; options: "
                                  f"{', '.join(SEARCH_METHODS)}")
            if s.method != "grid" and (s.n_trials is None or s.n_trials < 1):
                raise ConfigError(f"{where}: method {s.method} needs n_trials >= 1, got "
                                  f"{s.n_trials}")
        if s.kind == "narrow" and searched == 0:
            raise ConfigError(f"{where}: a narrow stage narrows around the best of the search "
                              "stages before it, and there is none; put a search stage first")
        if s.kind == "top_k_cv":
            if s.n_folds < 2:
                raise ConfigError(f"{where}: n_folds must be at least 2, got {s.n_folds}")
            if s.n_folds * s.top_k > SearchConf.max_trials:
                raise ConfigError(f"{where}: top_k={s.top_k} x n_folds={s.n_folds:,} runs are over "
                                  f"{SearchConf.max_trials:,}; lower n_folds")
            if searched == 0 or s.top_k < 1 or s.top_k > searched:
                raise ConfigError(f"{where}: top_k={s.top_k} must be between 1 and the {searched} "
                                  "trials of the search stages before it; lower top_k")
        if s.kind == "final":
            if i != len(stages) - 1:
                raise ConfigError(f"{where}: the final stage must be the last (it alone sees the "
                                  "test split); move it to the end")
            if not any(x.kind == "top_k_cv" for x in stages[:i]) and searched == 0:
                raise ConfigError(f"{where}: a final stage needs a stage before it to choose "
                                  "its config")
        if s.kind in ("search", "narrow"):
            searched += s.n_trials or 10**9  # a grid without a cap: its size, at least
