"""Join the YAML search space with Hydra's sweep grammar from the command line.

Order and precedence follow Hydra's BasicSweeper: entries from ``search.space``
come first, then ``hydra.sweeper.params``, then the command line; a later entry for
the same key replaces the earlier one in its original position. The last key
varies fastest in a grid.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sweeper.errors import ConfigError, SpaceError
from sweeper.space import Param, SearchSpace, param_from_yaml, with_group_flag

__all__ = ["MAX_LISTED", "SweepRequest", "build_request", "parse_overrides"]

# A range that cannot stay lazy (float, descending, shuffled) is listed in memory, as Hydra
# does; beyond this many values that would take gigabytes, so it is refused.
MAX_LISTED = 1_000_000


@dataclass(frozen=True)
class SweepRequest:
    """A search space plus the fixed overrides that shape every trial.

    ``entries`` lists, in order, each override key with either its fixed override
    string or its :class:`Param`: the per-trial override list follows this order.
    """

    space: SearchSpace
    entries: tuple[tuple[str, str | Param], ...]

    @property
    def fixed(self) -> list[str]:
        return [v for _, v in self.entries if isinstance(v, str)]


def parse_overrides(strings: Sequence[str], config_loader: Any = None) -> list[Any]:
    """Parse Hydra override strings; a malformed one is a one-line ConfigError."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create(config_loader=config_loader)
    parsed = []
    for s in strings:
        try:
            parsed.append(parser.parse_override(s))
        except HydraException as ex:  # OverrideParseException, or a wrapped ANTLR error
            first = str(ex).strip().splitlines()[0]
            raise ConfigError(
                f"malformed override {s!r}: {first}; write key=value, key=a,b or "
                "key=choice(...)/range(...)/interval(...), quoting values that hold spaces"
            ) from None
    return parsed


def _param_from_override(override: Any) -> Param:
    key_prefix = override.get_key_element()
    prefix = key_prefix[: len(key_prefix) - len(key_prefix.lstrip("+~"))]
    key = key_prefix[len(prefix):]
    if prefix == "~":
        raise SpaceError(f"cannot sweep a delete override: {override.input_line!r}; drop the ~")
    if override.is_range_sweep():
        return _param_from_range(override, key, prefix)
    if override.is_discrete_sweep():
        labels = list(override.sweep_string_iterator())
        from hydra.core.override_parser.overrides_parser import OverridesParser

        parser = OverridesParser.create()
        values = [parser.parse_override(f"x={label}").value() for label in labels]
        return Param.categorical(key, values, labels, prefix=prefix)
    sweep = override.value()
    low, high = sweep.start, sweep.end
    spec: dict[str, Any] = {"low": low, "high": high}
    if isinstance(low, int) and isinstance(high, int):
        spec.update(type="int", log="log" in sweep.tags)
    else:
        spec["type"] = "loguniform" if "log" in sweep.tags else "uniform"
    return param_from_yaml(key_prefix, spec)


def _range_count(start: float, stop: float, step: float) -> int:
    """How many values Hydra's range(start,stop,step) holds, without listing them."""
    if all(isinstance(x, int) for x in (start, stop, step)):
        return len(range(int(start), int(stop), int(step)))
    # Hydra steps floats in Decimal; this count only guards memory, the values come from Hydra.
    span = (Decimal(stop) - Decimal(start)) / Decimal(step)
    return max(0, math.ceil(span))


def _param_from_range(override: Any, key: str, prefix: str) -> Param:
    """``range(...)`` as a parameter. An ascending int range stays a lazy int range (the
    values and order Hydra lists); any other range is listed, as Hydra does, within a cap."""
    sweep, text = override.value(), override.input_line
    start, stop, step = sweep.start, sweep.stop, sweep.step
    if step == 0:
        raise SpaceError(f"the step of a range must be non-zero: {text!r}; e.g. range(0,10,2)")
    count = _range_count(start, stop, step)
    if count == 0:
        raise SpaceError(f"{text!r} holds no values (range(start,stop,step) stops before stop, "
                         "as in Python); e.g. range(0,10,2)")
    if all(isinstance(x, int) for x in (start, stop, step)) and step > 0 and not sweep.shuffle:
        return param_from_yaml(prefix + key, {"type": "int", "low": start,
                                              "high": start + (count - 1) * step, "step": step})
    if count > MAX_LISTED:
        raise SpaceError(
            f"{text!r} has {count:,} values, over the {MAX_LISTED:,} that a float, descending "
            "or shuffled range may list; use an ascending int range, or a YAML range such as "
            "{type: uniform, low: 0, high: 1, step: 0.01}")
    from hydra.core.override_parser.types import Transformer

    values = list(override.sweep_iterator())  # once: a shuffled range draws from `random`
    labels = [Transformer.str(v) for v in values]
    return Param.categorical(key, values, labels, prefix=prefix)


def build_request(
    yaml_space: Mapping[str, Any] | None,
    arguments: Sequence[str],
    is_group: Callable[[str], bool],
    config_loader: Any = None,
    shuffle_seed: int = 0,
) -> SweepRequest:
    """Build the sweep from the YAML space and override strings (params, then CLI).

    >>> req = build_request({"a": [1, 2]}, ["b=3,4", "c=5"], lambda k: False)
    >>> [p.key for p in req.space.params], req.fixed
    (['a', 'b'], ['c=5'])
    """
    entries: dict[str, str | Param] = {}
    for key, spec in (yaml_space or {}).items():
        param = param_from_yaml(str(key), spec)
        entries[param.key] = with_group_flag(param, is_group(param.key))
    # Hydra's shuffle() draws from the global `random`; seed it so plans are repeatable.
    random.seed(shuffle_seed)
    for override in parse_overrides(arguments, config_loader):
        if override.is_hydra_override():
            continue
        name = override.key_or_group + (f"@{override.package}" if override.package else "")
        if override.is_sweep_override():
            param = _param_from_override(override)
            entries[name] = with_group_flag(param, is_group(override.key_or_group))
        else:
            key = override.get_key_element()
            entries[name] = f"{key}={override.get_value_element_as_str()}"
    params = tuple(v for v in entries.values() if isinstance(v, Param))
    return SweepRequest(space=SearchSpace(params), entries=tuple(entries.items()))
