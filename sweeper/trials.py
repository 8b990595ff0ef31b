"""The trial table: one row per trial, frozen in ``trials.parquet`` before anything runs.

Columns: ``trial_id``, ``variant`` (the frozen config variant), one typed column per
searched parameter named by its dotted key, ``overrides`` (the trial's Hydra override
strings), ``config_hash`` and ``seed``. Building it is vectorised, so a grid of a
million points takes about a second.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sweeper.errors import SpaceError, SweepDirError
from sweeper.overrides import SweepRequest
from sweeper.paths import SweepPaths, atomic_path
from sweeper.space import Param, encode_value
from sweeper.strategies import Design

__all__ = ["RESERVED_COLUMNS", "ParamColumn", "append_trials", "build_table", "next_trial_id",
           "read_trials", "trial_ids", "write_trials"]

RESERVED_COLUMNS = frozenset({
    "trial_id", "variant", "overrides", "config_hash", "seed", "status", "error", "traceback",
    "started_at", "finished_at", "duration_s", "attempt", "hostname", "slurm_job_id",
    "slurm_array_task_id", "git_commit", "git_dirty", "python_version", "torch_version",
    "device", "config_yaml", "curve", "optuna_trial",
})
_ROW_GROUP = 65_536


@dataclass(frozen=True)
class ParamColumn:
    """How one parameter is stored: ``encoding`` is ``value`` (a typed column) or
    ``override`` (the Hydra override string, for lists, dicts and mixed types)."""

    key: str
    prefix: str
    encoding: str
    group: bool


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a cheap, well-spread 64-bit mixing step."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


_HEX = np.array([f"{i:02x}".encode() for i in range(256)], dtype="S2")


def _hex(h: np.ndarray) -> pa.Array:
    as_bytes = h.astype(">u8").view(np.uint8).reshape(-1, 8)
    text = np.ascontiguousarray(_HEX[as_bytes]).view("S16").ravel()
    return pa.array(text, type=pa.binary(16)).cast(pa.string())


def _choice_type(choices: Sequence[object]) -> pa.DataType | None:
    """The Arrow type for a categorical's values, or None when they need encoding."""
    present = [c for c in choices if c is not None]
    kinds = {type(c) for c in present}
    for py, arrow in ((bool, pa.bool_()), (int, pa.int64()), (float, pa.float64()), (str, pa.string())):
        if kinds <= {py}:
            return arrow
    return None


def _column(p: Param, data: np.ndarray) -> tuple[pa.Array, str]:
    if p.kind == "categorical":
        arrow_type = _choice_type(p.choices)
        if arrow_type is None:
            return pa.array(p.labels, pa.string()).take(pa.array(data)), "override"
        return pa.array(list(p.choices), arrow_type).take(pa.array(data)), "value"
    return pa.array(data, pa.int64() if p.kind == "int" else pa.float64()), "value"


def _labels(p: Param, data: np.ndarray) -> tuple[list[str], np.ndarray]:
    """The override strings a parameter uses, and each trial's index into them."""
    if p.kind == "categorical":
        return [f"{p.override_key}={label}" for label in p.labels], data
    strings = [f"{p.override_key}={encode_value(v)}" for v in data.tolist()]
    return strings, np.arange(len(strings))


def _overrides(request: SweepRequest, design: Design, n: int) -> pa.Array:
    """list<dictionary<string>>: each trial's override strings, sharing one dictionary,
    so a million trials cost a few integer arrays instead of millions of strings."""
    by_key = {p.key: (p, data) for p, data in design.columns}
    dictionary: list[str] = []
    codes: list[np.ndarray] = []
    for _, entry in request.entries:
        strings, index = ([entry], np.zeros(n, np.int64)) if isinstance(entry, str) \
            else _labels(*by_key[entry.key])
        codes.append(index.astype(np.int32) + len(dictionary))
        dictionary.extend(strings)
    k = len(codes)
    flat = np.stack(codes, axis=1).ravel() if k else np.zeros(0, np.int32)
    values = pa.DictionaryArray.from_arrays(pa.array(flat, pa.int32()), pa.array(dictionary, pa.string()))
    return pa.ListArray.from_arrays(pa.array(np.arange(0, n * k + 1, max(k, 1), dtype=np.int32)
                                             if k else np.zeros(n + 1, np.int32)), values)


def _contribution(p: Param, data: np.ndarray) -> np.ndarray:
    if p.kind == "categorical":
        per_choice = np.array([_hash64(label) for label in p.labels], dtype=np.uint64)
        return per_choice[data]
    return np.ascontiguousarray(data).view(np.uint64)


def build_table(
    request: SweepRequest,
    design: Design,
    variant_ids: np.ndarray,
    variant_hashes: Sequence[str],
    variant_seeds: Sequence[int],
) -> tuple[pa.Table, list[ParamColumn]]:
    """Assemble the trial table and describe how each parameter column is encoded."""
    n = design.n_trials
    columns: dict[str, pa.Array] = {
        "trial_id": pa.array(np.arange(n, dtype=np.int64)),
        "variant": pa.array(variant_ids.astype(np.int64)),
    }
    specs: list[ParamColumn] = []
    h = np.array([_hash64(v) for v in variant_hashes], dtype=np.uint64)[variant_ids]
    for pos, (p, data) in enumerate(design.columns):
        if p.key in RESERVED_COLUMNS and p.key != "seed":
            raise SpaceError(
                f"the searched key '{p.key}' clashes with a results column of that name; "
                "rename it in your config"
            )
        columns[p.key], encoding = _column(p, data)
        specs.append(ParamColumn(p.key, p.prefix, encoding, p.group))
        # Salted by the key's name, so {a: [1, 2]} and {b: [1, 2]} hash apart.
        salt = np.uint64(_hash64(f"{pos}:{p.key}"))
        h = _mix(h ^ _mix(_contribution(p, data) + salt))
    columns["overrides"] = _overrides(request, design, n)
    columns["config_hash"] = _hex(h)
    if "seed" not in columns:
        columns["seed"] = pa.array(np.asarray(variant_seeds, dtype=np.int64)[variant_ids])
    elif not pa.types.is_integer(columns["seed"].type):
        raise SpaceError("the searched key 'seed' must take whole numbers, e.g. seed=range(0,5)")
    return pa.table(columns), specs


def write_trials(table: pa.Table, paths: SweepPaths, fingerprint: str) -> None:
    meta = {b"sweeper.fingerprint": fingerprint.encode()}
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **meta})
    with atomic_path(paths.trials) as tmp:
        pq.write_table(table, tmp, row_group_size=_ROW_GROUP)


def _parts(paths: SweepPaths) -> list[Path]:
    """The planned table, then the appended parts, in the order they were written."""
    if not paths.trials.is_file():
        raise SweepDirError(
            f"{paths.trials} does not exist, so {paths.root} is not a planned sweep dir; "
            "plan one with `sweeper plan ...` or `python -m sweeper +search=NAME`"
        )
    parts = sorted(paths.trial_parts_dir.glob("part-*.parquet")) \
        if paths.trial_parts_dir.is_dir() else []
    return [paths.trials, *parts]


def append_trials(paths: SweepPaths, rows: pa.Table) -> pa.Table:
    """Append rows to the trial table as a new part; their ids continue from the highest.

    Callers hold the sweep dir's lock (one writer at a time); a part is written atomically,
    so readers see all of it or none. Returns the rows with the ids they were given.
    """
    start = next_trial_id(paths)
    rows = rows.set_column(rows.schema.get_field_index("trial_id"), "trial_id",
                           pa.array(np.arange(start, start + rows.num_rows, dtype=np.int64)))
    number = len(_parts(paths))
    target = paths.trial_part(number)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        pq.write_table(rows, tmp, row_group_size=_ROW_GROUP)
    return rows


def next_trial_id(paths: SweepPaths) -> int:
    """One past the highest trial id in the table (ids are never reused)."""
    highest = -1
    for part in _parts(paths):
        meta = pq.ParquetFile(part).metadata
        if meta.num_rows:
            ids = pq.read_table(part, columns=["trial_id"]).column(0)
            highest = max(highest, int(pc.max(ids).as_py()))
    return highest + 1


def read_trials(paths: SweepPaths, trial_ids: Sequence[int] | None = None) -> pa.Table:
    """Read the trial table (the planned rows and every appended part), or only the given
    trials; a damaged file is a SweepDirError."""
    tables = []
    for path in _parts(paths):
        try:
            filters = [("trial_id", "in", list(trial_ids))] if trial_ids is not None else None
            tables.append(pq.read_table(path, filters=filters))
        except (pa.ArrowException, OSError) as ex:
            raise SweepDirError(
                f"{path} is unreadable ({str(ex).splitlines()[0]}); move it aside and re-run "
                f"the sweep's command with hydra.sweep.dir={paths.root}: planning is "
                "deterministic and completed results are kept"
            ) from None
    if len(tables) == 1:
        return tables[0]
    return pa.concat_tables([t.replace_schema_metadata(None) for t in tables],
                            promote_options="permissive")


def trial_ids(paths: SweepPaths) -> list[int]:
    """The ids present in the trial table, in order (readers iterate these, not a count)."""
    return read_trials_columns(paths, ["trial_id"]).column(0).to_pylist()


def read_trials_columns(paths: SweepPaths, columns: Sequence[str]) -> pa.Table:
    tables = [pq.read_table(p, columns=list(columns)) for p in _parts(paths)]
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables)
