"""A task's numbers: one check for what ``sweeper.report(...)`` and a task's return value hold."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from sweeper.errors import TaskError

__all__ = ["number", "to_metrics"]


def number(name: str, value: Any, where: str = "the task returned") -> float | int:
    """``value`` as a Python int or float (tensors and numpy scalars via ``.item()``).

    >>> number("val_loss", 0.5)
    0.5
    """
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TaskError(f"{where} {name}={value!r}; metrics must be numbers: pass a float, "
                        "e.g. loss.item()")
    return value


def to_metrics(value: Any, metric: str, taken: Collection[str] = ()) -> dict[str, float | int]:
    """A task's return value as metric columns; a bare number is named after ``metric``.

    ``taken`` are column names a metric may not have (the searched keys and the row's own
    columns): a metric called like a searched key would overwrite that key's values.

    >>> to_metrics({"val_loss": 0.25, "epochs_run": 3}, "val_loss")
    {'val_loss': 0.25, 'epochs_run': 3}
    """
    from sweeper.trials import RESERVED_COLUMNS

    if isinstance(value, Mapping):
        out = {str(k): number(str(k), v) for k, v in value.items()}
    elif value is None:
        raise TaskError("the task returned None; return the metric (a float) or a dict of floats")
    else:
        out = {metric: float(number(metric, value))}
    clash = sorted(set(out) & (RESERVED_COLUMNS | set(taken)))
    if clash:
        what = "a searched key" if clash[0] in taken else "a results column"
        raise TaskError(f"the task returned a metric named {clash[0]!r}, which is {what} of "
                        f"that name; rename the metric, e.g. {clash[0]}_final")
    return out
