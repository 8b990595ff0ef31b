"""One hierarchy for every error sweeper raises on purpose.

Each message states the rule, the value that broke it, and the fix or the options,
on one line, so that the CLI can print it as it is and exit with code 2.
The input errors also derive from ``ValueError``, so a caller's existing
``except ValueError`` keeps working.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "ConfigError",
    "SpaceError",
    "SweepDirError",
    "SweeperError",
    "TaskError",
    "TaskImportError",
    "closest",
]


class SweeperError(Exception):
    """Base class of every error sweeper raises on purpose."""

    exit_code = 1


class ConfigError(SweeperError, ValueError):
    """Bad input: a config, override, option or path. Nothing has run."""

    exit_code = 2


class SpaceError(ConfigError):
    """A search space that breaks a rule (bounds, types, sizes)."""


class SweepDirError(ConfigError):
    """A sweep dir that cannot be used: another sweep's, unwritable or corrupt."""


class TaskImportError(ConfigError):
    """``task.fn`` does not name an importable callable."""


class TaskError(SweeperError, ValueError):
    """A task broke the task contract (what it returned or reported). The trial fails with
    this message; the sweep goes on."""


def closest(word: str, options: Iterable[str]) -> str:
    """Return a ``"; did you mean 'x'?"`` hint, or ``""`` when nothing is close.

    >>> closest("optimizer.lrr", ["optimizer.lr", "model.dropout"])
    "; did you mean 'optimizer.lr'?"
    """
    match = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f"; did you mean '{match[0]}'?" if match else ""
