"""The two consoles every command prints to: results on stdout, progress and notes on stderr.

Markup is off, so text such as ``[sweeper]`` or a path with brackets prints as it is,
and lines are not wrapped, so paths stay copyable.
"""

from __future__ import annotations

from rich.console import Console

__all__ = ["err", "out"]

out = Console(markup=False, highlight=False, soft_wrap=True)
err = Console(stderr=True, markup=False, highlight=False, soft_wrap=True)
