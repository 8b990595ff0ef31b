"""Join the YAML search space with Hydra's sweep grammar from the command line.

Order and precedence follow Hydra's BasicSweeper: entries from ``search.space``
come first, then ``hydra.sweeper.params``, then the command line; a later entry for
the same key replaces the earlier one in its original position. The last key
varies fastest in a grid.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sweeper.errors import ConfigError, SpaceError
from sweeper.space import Param, SearchSpace, param_from_yaml, with_group_flag

__all__ = ["SweepRequest", "build_request", "parse_overrides"]


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
