"""A user's own Hydra app, outside the sweeper package: sweeper is only its sweeper."""

import hydra
from objective import loss  # a sibling module, as real apps have
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def train(cfg: DictConfig) -> dict[str, float]:
    if cfg.get("fail_above") is not None and cfg.x > cfg.fail_above:
        raise ValueError(f"x={cfg.x} is above fail_above={cfg.fail_above}")
    return {"loss": loss(cfg.x, cfg.y), "from_app": 1.0}


if __name__ == "__main__":
    train()
