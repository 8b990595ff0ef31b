"""The two consoles every command prints to: results on stdout, progress and notes on stderr.

Markup is off, so text such as ``[sweeper]`` or a path with brackets prints as it is,
and lines are not wrapped, so paths stay copyable.
"""

from __future__ import annotations

import math
import shlex
import sys
from typing import Any

from rich.console import Console

__all__ = ["err", "fmt", "out", "shell_path"]

# Logs and pipes get wide tables instead of rich's default of 80 columns.
out = Console(markup=False, highlight=False, soft_wrap=True,
              width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, markup=False, highlight=False, soft_wrap=True,
              width=None if sys.stderr.isatty() else 200)


def fmt(value: Any) -> str:
    """A table cell: floats to 6 significant digits, everything else as str."""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def shell_path(path: Any) -> str:
    """A path as it must be typed in a shell (quoted when it holds spaces, quotes, ...)."""
    return shlex.quote(str(path))
