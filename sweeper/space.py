"""Search spaces: typed parameters, checked when they are built.

A parameter is categorical (a plain YAML list is shorthand), uniform, loguniform,
or int (with ``step``, or ``log``). Every rule is checked here, before anything
runs, and a broken one raises :class:`~sweeper.errors.SpaceError` naming the key,
the value and the fix.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from sweeper.errors import SpaceError, closest

__all__ = ["Param", "SearchSpace", "encode_value", "param_from_yaml", "quote"]

TYPES = ("categorical", "uniform", "loguniform", "int")
_ALLOWED = {
    "categorical": {"type", "choices", "values"},
    "uniform": {"type", "low", "high", "step", "values", "num"},
    "loguniform": {"type", "low", "high", "values", "num"},
    "int": {"type", "low", "high", "step", "log", "values", "num"},
}


def quote(text: str) -> str:
    """Quote a string for Hydra's override grammar, whatever characters it holds.

    Hydra reads a backslash as an escape only before a quote or at the end.

    >>> quote("it's")
    "'it\\\\'s'"
    """
    body = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", text)
    body = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, body)
    return f"'{body}'"


def encode_value(value: Any) -> str:
    """The Hydra override string for a Python value, as Hydra writes it where it can.

    >>> encode_value(0.001), encode_value("adam"), encode_value([1, 2])
    ('0.001', 'adam', '[1,2]')
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import Transformer

    def round_trips(text: str) -> bool:
        try:
            parsed = OverridesParser.create().parse_override(f"x={text}").value()
        except Exception:
            return False
        return bool(parsed == value and type(parsed) is type(value))

    text = Transformer.str(value)
    if isinstance(value, (bool, int, float)) or value is None or round_trips(text):
        return text
    if isinstance(value, str) and round_trips(quote(value)):
        return quote(value)
    raise SpaceError(f"the value {value!r} cannot be written as a Hydra override; use plain "
                     "strings, numbers, lists or dicts")


@dataclass(frozen=True)
class Param:
    """One searched config key.

    ``kind`` is ``categorical`` (``choices`` with their override ``labels``),
    ``float`` or ``int`` (``low``..``high`` inclusive, optional ``step``, ``log``, ``num``).

    >>> Param.categorical("model.dropout", [0.1, 0.2]).size
    2
    """

    key: str
    kind: str
    prefix: str = ""
    choices: tuple[Any, ...] = ()
    labels: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    num: int | None = None
    group: bool = False

    @staticmethod
    def categorical(
        key: str, choices: Sequence[Any], labels: Sequence[str] | None = None, **kw: Any
    ) -> Param:
        if len(choices) == 0:
            raise SpaceError(f"'{key}' has no choices; give it at least one value")
        labels = tuple(labels) if labels is not None else tuple(encode_value(c) for c in choices)
        return Param(key=key, kind="categorical", choices=tuple(choices), labels=labels, **kw)

    @property
    def override_key(self) -> str:
        return f"{self.prefix}{self.key}"

    @property
    def finite(self) -> bool:
        return self.kind in ("categorical", "int") or self.step is not None

    @property
    def size(self) -> int | None:
        """Number of distinct values, or None for a continuous range."""
        if self.kind == "categorical":
            return len(self.choices)
        if self.step is not None and self.kind == "int":
            return int(self.high - self.low) // int(self.step) + 1  # type: ignore[operator]
        if self.step is not None:
            return math.floor((self.high - self.low) / self.step + 1e-9) + 1  # type: ignore[operator]
        if self.kind == "int":
            return int(self.high - self.low) + 1  # type: ignore[operator]
        return None

    def grid_size(self) -> int:
        """How many values :meth:`grid` lists, counted without listing them, so a huge
        range is refused before it takes memory. With ``num`` on an int range it is an
        upper bound: rounding may merge points.

        >>> param_from_yaml("h", {"type": "int", "low": 1, "high": 10**9}).grid_size()
        1000000000
        """
        if self.kind == "categorical":
            return len(self.choices)
        if self.num is not None and self.kind == "int":
            return min(self.num, int(self.high - self.low) + 1)  # type: ignore[operator]
        if self.num is not None:
            return self.num
        if self.size is None:
            raise self._no_grid()
        return self.size

    def grid(self) -> Param:
        """This parameter as the finite list of values a grid search walks."""
        if self.kind == "categorical":
            return self
        if self.num is not None:
            values = self._spaced(self.num)
        elif self.finite:
            step = self.step if self.step is not None else 1
            values = (self.low + step * np.arange(self.grid_size())).tolist()  # type: ignore[operator]
        else:
            raise self._no_grid()
        values = [int(v) if self.kind == "int" else float(f"{v:.12g}") for v in values]
        return Param.categorical(self.key, list(dict.fromkeys(values)), prefix=self.prefix)

    def _no_grid(self) -> SpaceError:
        kind = "loguniform" if self.log else "uniform"
        return SpaceError(
            f"grid search needs a finite set of values for '{self.key}' ({kind} "
            f"{self.low}..{self.high}); give it `values: [...]` or `num: N` in the search YAML "
            "(choice(...) or range(...) on the command line), "
            "or use search.method=random"
        )

    def _spaced(self, num: int) -> list[float]:
        lo, hi = float(self.low), float(self.high)  # type: ignore[arg-type]
        values = np.geomspace(lo, hi, num) if self.log else np.linspace(lo, hi, num)
        if self.kind == "int":
            values = np.unique(np.rint(values).astype(np.int64))
        return [v.item() for v in values]


@dataclass(frozen=True)
class SearchSpace:
    """Ordered parameters. The last key varies fastest in a grid, as in Hydra."""

    params: tuple[Param, ...]

    def __post_init__(self) -> None:
        keys = [p.key for p in self.params]
        if len(set(keys)) != len(keys):
            raise SpaceError(f"a key appears twice in the space: {keys}; keep one")

    @property
    def keys(self) -> list[str]:
        return [p.key for p in self.params]

    @property
    def groups(self) -> tuple[Param, ...]:
        return tuple(p for p in self.params if p.group)

    def finite_size(self) -> int | None:
        """Number of distinct points, or None when some parameter is continuous."""
        sizes = [p.size for p in self.params]
        return None if any(s is None for s in sizes) else math.prod(sizes)  # type: ignore[arg-type]


def _number(key: str, spec: Mapping[str, Any], name: str) -> float:
    value = spec.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpaceError(f"'{key}' needs a number for `{name}`, got {value!r}; e.g. {name}: 0.1")
    return value


def param_from_yaml(key: str, spec: Any) -> Param:
    """Build a parameter from its YAML spec: a list, or a mapping with ``type``.

    >>> param_from_yaml("optimizer.lr", {"type": "loguniform", "low": 1e-4, "high": 1e-2}).log
    True
    """
    prefix, bare = _split_prefix(key)
    if isinstance(spec, (list, tuple)):
        return Param.categorical(bare, list(spec), prefix=prefix)
    if not isinstance(spec, Mapping):
        raise SpaceError(
            f"'{key}' must be a list of values or a mapping with `type`, got {spec!r}; "
            f"e.g. {key}: [0.1, 0.2]"
        )
    kind = spec.get("type")
    if kind not in TYPES:
        raise SpaceError(
            f"unknown type {kind!r} for '{key}'{closest(str(kind), TYPES)}; "
            f"options: {', '.join(TYPES)}"
        )
    extra = set(spec) - _ALLOWED[kind]
    if extra:
        bad = sorted(extra)[0]
        raise SpaceError(
            f"'{key}' ({kind}) has an unknown setting `{bad}`{closest(bad, _ALLOWED[kind])}; "
            f"allowed: {', '.join(sorted(_ALLOWED[kind]))}"
        )
    if kind == "categorical" or "values" in spec:
        values = spec.get("choices", spec.get("values"))
        if not isinstance(values, (list, tuple)):
            raise SpaceError(f"'{key}' needs a list of values, got {values!r}; e.g. values: [1, 2]")
        return Param.categorical(bare, list(values), prefix=prefix, log=kind == "loguniform")
    return _ranged(bare, prefix, kind, spec)


def _ranged(key: str, prefix: str, kind: str, spec: Mapping[str, Any]) -> Param:
    low, high = _number(key, spec, "low"), _number(key, spec, "high")
    if low > high:
        raise SpaceError(
            f"`low <= high` must hold for '{key}', but got low={low}, high={high}; swap them"
        )
    log = kind == "loguniform" or bool(spec.get("log", False))
    if log and low <= 0:
        raise SpaceError(
            f"a log scale needs low > 0 for '{key}', got low={low}; use a positive low "
            "such as 1e-6, or a linear type"
        )
    step = spec.get("step")
    if step is not None:
        step = _number(key, spec, "step")
        if step <= 0 or (step > high - low and high > low):
            raise SpaceError(
                f"`step` must be in (0, high-low] for '{key}', got step={step} with "
                f"high-low={high - low}; use a smaller step or widen the range"
            )
        if log:
            raise SpaceError(f"'{key}' sets both `log` and `step`; keep one of them")
    num = spec.get("num")
    if num is not None and (isinstance(num, bool) or not isinstance(num, int) or num < 1):
        raise SpaceError(f"`num` must be a positive integer for '{key}', got {num!r}")
    if kind == "int":
        for name, v in (("low", low), ("high", high), ("step", step)):
            if v is not None and not float(v).is_integer():
                raise SpaceError(f"an int parameter needs whole numbers: '{key}' has {name}={v}")
        low, high = int(low), int(high)
        step = int(step) if step is not None else None
    return Param(key=key, kind="int" if kind == "int" else "float", prefix=prefix,
                 low=low, high=high, log=log, step=step, num=num)


def _split_prefix(key: str) -> tuple[str, str]:
    for prefix in ("++", "+"):
        if key.startswith(prefix):
            return prefix, key[len(prefix):]
    return "", key


def with_group_flag(param: Param, group: bool) -> Param:
    if group and param.kind != "categorical":
        raise SpaceError(
            f"'{param.key}' is a config group, so it can only take a list of options, "
            f"not a {param.kind} range"
        )
    return replace(param, group=group)
