"""A trial's config, rebuilt from the frozen sweep record, and the Hydra state a task
written for Hydra expects (``HydraConfig.get()``), without composing anything again."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import setup_globals
from omegaconf import DictConfig, OmegaConf, open_dict

from sweeper import context, provenance
from sweeper.record import SweepRecord, hydra_node

__all__ = ["set_hydra_config", "trial_config", "warm"]


def _param_value(encoding: str, value: Any) -> Any:
    if encoding == "override":
        from hydra.core.override_parser.overrides_parser import OverridesParser

        return OverridesParser.create().parse_override(f"x={value}").value()
    return value


def trial_config(record: SweepRecord, trial: Mapping[str, Any]) -> DictConfig:
    """The trial's config: its frozen variant with the trial's values applied."""
    cfg = OmegaConf.create(record.variant_container(int(trial["variant"])))
    assert isinstance(cfg, DictConfig)
    OmegaConf.set_struct(cfg, True)
    for spec in record.params:
        if spec.group:
            continue
        value = _param_value(spec.encoding, trial[spec.key])
        with open_dict(cfg):
            OmegaConf.update(cfg, spec.key, value, merge=True, force_add=bool(spec.prefix))
    return cfg


def set_hydra_config(record: SweepRecord, trial: Mapping[str, Any]) -> None:
    """Let a task written for Hydra call ``HydraConfig.get()`` as it would under Hydra."""
    node = hydra_node(record, int(trial["variant"]))
    if node is None:
        return
    setup_globals()
    if not OmegaConf.has_resolver("sweeper_trial_dir"):
        # Created only if the task asks for it, as Hydra's output dir would be.
        OmegaConf.register_new_resolver("sweeper_trial_dir", lambda: str(context.trial_dir()),
                                        use_cache=False)
    node.hydra.job.num = int(trial["trial_id"])
    node.hydra.job.id = os.environ.get("SLURM_JOB_ID", str(trial["trial_id"]))
    node.hydra.job.override_dirname = _override_dirname(node.hydra, trial.get("overrides") or [])
    node.hydra.runtime.output_dir = "${sweeper_trial_dir:}"
    OmegaConf.set_readonly(node.hydra, True)
    # HydraConfig.set_config insists on a structured HydraConf node, which costs ~40 ms
    # per trial to build; get() only reads `cfg.hydra`, so set the plain node directly.
    HydraConfig.instance().cfg = node  # type: ignore[assignment]


def _override_dirname(hydra: DictConfig, overrides: Sequence[str]) -> str:
    """As Hydra builds hydra.job.override_dirname: sorted key=value pairs, minus excluded keys."""
    conf = OmegaConf.select(hydra, "job.config.override_dirname", default=None)
    kv, item = (conf.kv_sep, conf.item_sep) if conf is not None else ("=", ",")
    excluded = set(conf.exclude_keys) if conf is not None else set()
    pairs = [o.split("=", 1) for o in overrides if "=" in o]
    return item.join(f"{k}{kv}{v}" for k, v in sorted(pairs) if k not in excluded)


def warm(record: SweepRecord) -> None:
    """Parse the variants once (the fork server shares them with every trial)."""
    for i in range(len(record.variants)):
        record.variant_container(i)
        hydra_node(record, i)
    provenance.torch_version()
