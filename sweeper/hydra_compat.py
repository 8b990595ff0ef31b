"""What sweeper takes from Hydra's running app (composing a variant, telling config groups
from keys, the config's source, the task), and Hydra's multi-line composition errors as
sweeper's one-line ConfigErrors. Used by a sweep and by a campaign alike."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from sweeper import taskref
from sweeper.errors import ConfigError, SweeperError
from sweeper.executors import resolve_executor
from sweeper.paths import SweepPaths
from sweeper.schema import ClusterConf

__all__ = ["composer", "config_source", "executor_kind", "is_group_of", "one_line_errors",
           "task_fallback", "translate"]


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


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """Hydra's and OmegaConf's input errors raised inside come out as one-line ConfigErrors;
    sweeper's own errors and anything else pass through as they are."""
    try:
        yield
    except SweeperError:
        raise
    except Exception as ex:
        err = translate(ex)
        if err is None:
            raise
        raise err from None


def composer(loader: Any, master: DictConfig) -> Callable[[list[str]], DictConfig]:
    """Compose the app's config with overrides, as Hydra composes each job of a multirun;
    its errors are one line."""

    def compose(overrides: list[str]) -> DictConfig:
        with one_line_errors():
            return loader.load_sweep_config(master, list(overrides))  # type: ignore[no-any-return,unused-ignore]

    return compose


def is_group_of(loader: Any) -> Callable[[str], bool]:
    """Whether a key names a config group of the app (``scenario``), not a value."""

    def is_group(key: str) -> bool:
        try:
            return bool(loader.repository.group_exists(key))
        except Exception:
            return False

    return is_group


def config_source(master: DictConfig) -> tuple[str, str]:
    """The primary config dir and the config's name, so the sweep can be planned again."""
    sources = OmegaConf.select(master, "hydra.runtime.config_sources", default=None) or []
    main = next((s for s in sources if s.get("provider") == "main"), None)
    name = OmegaConf.select(master, "hydra.job.config_name", default=None)
    return (str(main.path) if main is not None and main.schema == "file" else "",
            str(name) if name else "")


def executor_kind(cluster: ClusterConf, sweep_dir: str) -> str:
    """Where to run: as the user asked, or, for ``auto`` in a dir planned before, where it
    was planned (a sweep never switches between local and SLURM behind the user's back)."""
    if cluster.executor == "auto":
        from sweeper.record import SweepRecord

        paths = SweepPaths(Path(sweep_dir))
        if paths.sweep_yaml.is_file():
            return SweepRecord.load(paths).executor
    return resolve_executor(cluster)


def task_fallback(task_function: Any) -> str | None:
    """The task when the config names none: the user's own @hydra.main function."""
    if getattr(task_function, "_sweeper_entry", False):
        return os.environ.get("SWEEPER_TASK_FALLBACK")
    return taskref.ref_for(task_function)
