"""What every command that reads a sweep dir shares."""

from __future__ import annotations

import argparse

from sweeper.errors import ConfigError
from sweeper.paths import SweepPaths

__all__ = ["sweep_paths"]


def sweep_paths(args: argparse.Namespace) -> SweepPaths:
    paths = SweepPaths(args.dir)
    if not paths.sweep_yaml.is_file():
        raise ConfigError(
            f"{paths.root} is not a sweep dir (it has no sweep.yaml); pass the dir a sweep "
            "printed when it started, e.g. multirun/2026-11-23/10-00-00"
        )
    return paths
