"""Turn Hydra's multi-line composition errors into sweeper's one-line ConfigErrors."""

from __future__ import annotations

from sweeper.errors import ConfigError

__all__ = ["translate"]


def _one_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return "; ".join(lines)


def translate(ex: BaseException) -> ConfigError | None:
    """A ConfigError for a Hydra or OmegaConf input error, or None for anything else."""
    from hydra.errors import (
        ConfigCompositionException,
        MissingConfigException,
        OverrideParseException,
    )
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(ex, MissingConfigException) and ex.options is not None and ex.missing_cfg_file:
        group, _, option = ex.missing_cfg_file.rpartition("/")
        from sweeper.errors import closest

        return ConfigError(
            f"unknown option {option!r} for config group '{group}'{closest(option, ex.options)}; "
            f"options: {', '.join(ex.options)}"
        )
    if isinstance(ex, OverrideParseException):
        return ConfigError(f"malformed override: {_one_line(str(ex))}")
    if isinstance(ex, (ConfigCompositionException, OmegaConfBaseException)):
        text = str(ex).strip()
        cause = ex.__cause__
        if cause is not None and (not text or "Error merging override" in text):
            text = f"{text} {str(cause).splitlines()[0]}".strip()
        first = text.split("\nConfig search path")[0]
        return ConfigError(f"config error: {_one_line(first)}")
    return None
