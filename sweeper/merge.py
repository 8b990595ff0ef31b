"""Merge: every trial's result file -> ``results.parquet`` (one row per trial) and
``curves.parquet`` (one row per trial and epoch).

Trials without a file get status ``missing``. A damaged file, or one from another
plan (its config_hash does not match), is reported and left out; it never stops
the merge. Only pyarrow is used: merging does not import torch.

Merging is incremental: ``results.parquet`` remembers the size, mtime and inode of
each file it took a row from, so a later merge reads only files that are new or changed.
Reading a one-row Parquet file costs about 0.6 ms of CPU whatever its size (footer,
schema, one reader per column), so a cold merge reads on every CPU (worker processes,
each sending back one Arrow IPC buffer) and takes from each file only what the plan
does not already hold: parameters, overrides and seed come once from ``trials.parquet``,
after config_hash has shown that the row is this plan's. ``current_rows`` gives
``status`` the state columns the same way, without writing anything.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

# The reader under pq.ParquetFile: ParquetFile's own set-up in Python is a fifth of the
# cost of a one-row file.
from sweeper.paths import SweepPaths, atomic_path
from sweeper.rowfiles import ReadCounter, Want, read_counter, read_files
from sweeper.state import TrialState

__all__ = ["STATE_COLUMNS", "MergeResult", "ReadCounter", "current_rows", "explode_curves",
           "merge", "read_counter", "top_trials"]

_STATE_KEY = b"sweeper.merge_state"
STATE_COLUMNS = ("trial_id", "status", "attempt", "slurm_job_id", "slurm_array_task_id",
                 "finished_at")

_Files = dict[int, tuple[Path, list[int]]]  # trial_id -> (path, [size, mtime_ns, inode])
_Prior = tuple[pa.Table, dict[str, list[int]]]  # rows, and the stamps of their files
_Skipped = list[tuple[Path, str]]


@dataclass(frozen=True)
class MergeResult:
    """The merged tables, and whether they were written.

    ``written`` is False when ``merge(write=False)`` or when the output dir cannot be
    written (a colleague's read-only sweep dir); ``write_error`` then says why, and
    ``results_path`` and ``curves_path`` say where the tables would have gone.
    """

    results: pa.Table
    curves: pa.Table
    results_path: Path
    curves_path: Path
    skipped: _Skipped = field(default_factory=list)
    files_read: int = 0
    written: bool = False
    write_error: str | None = None


def _scan(paths: SweepPaths) -> _Files:
    """Every result file with its stamp, from one directory scan."""
    found: _Files = {}
    if not paths.results_dir.is_dir():
        return found
    with os.scandir(paths.results_dir) as entries:
        for e in entries:
            name = e.name
            if name.startswith("trial-") and name.endswith(".parquet") and name[6:-8].isdigit():
                st = e.stat()
                # The inode too: a row replaced within one clock tick by one of the same
                # size (mtime is that coarse) still arrived by rename, as a new inode.
                found[int(name[6:-8])] = (Path(e.path), [st.st_size, st.st_mtime_ns, st.st_ino])
    return found


def _fingerprint(paths: SweepPaths) -> str:
    try:
        meta = pq.read_schema(paths.trials).metadata or {}
    except (OSError, pa.ArrowException):
        return ""
    return meta.get(b"sweeper.fingerprint", b"").decode()


def _load_merged(path: Path, fingerprint: str, want: Want) -> _Prior | None:
    """A previous merge's rows (the wanted columns) and the stamps of their files."""
    try:
        file = pq.ParquetFile(path)
        state = json.loads((file.schema_arrow.metadata or {})[_STATE_KEY])
        if state.get("fingerprint") != fingerprint:
            return None
        names = [n for n in file.schema_arrow.names if want(n)]
        return file.read(columns=names).replace_schema_metadata(None), state.get("files", {})
    except (OSError, pa.ArrowException, KeyError, ValueError):
        return None


def _reuse(prior: _Prior | None, files: _Files) -> tuple[pa.Table | None, set[int]]:
    """The prior rows whose file is unchanged since, and their trial ids."""
    if prior is None:
        return None, set()
    old, stamps = prior
    keep = {tid for tid, (_, stamp) in files.items() if stamps.get(str(tid)) == stamp}
    mask = pc.is_in(old.column("trial_id"), pa.array(sorted(keep), pa.int64()))
    return old.filter(mask), keep


def _gather(prior: _Prior | None, files: _Files, want: Want, workers: int | None
            ) -> tuple[pa.Table | None, _Skipped, int]:
    """Every current row: reused where its file is unchanged, read where it is not."""
    cached, kept = _reuse(prior, files)
    to_read = [path for tid, (path, _) in sorted(files.items()) if tid not in kept]
    tables, skipped = read_files(to_read, want, workers)
    parts = ([cached] if cached is not None and cached.num_rows else []) + tables
    if not parts:
        return None, skipped, len(to_read)
    return pa.concat_tables(parts, promote_options="permissive").combine_chunks(), skipped, \
        len(to_read)


def _with_plan(found: pa.Table, trials: pa.Table) -> tuple[pa.Table, pa.Table]:
    """This plan's rows, with the plan's columns from the trial table; and the foreign rows."""
    want = pc.index_in(found.column("trial_id"), trials.column("trial_id"))
    expected = trials.column("config_hash").take(pc.fill_null(want, 0))
    hashes = found.column("config_hash") if "config_hash" in found.column_names \
        else pa.nulls(found.num_rows, pa.string())
    ok = pc.fill_null(pc.and_(pc.is_valid(want), pc.equal(hashes, expected)), False)
    rows = trials.take(want.filter(ok))
    for name in found.column_names:
        if name not in trials.column_names:
            rows = rows.append_column(found.field(name), found.column(name).filter(ok))
    return rows, found.filter(pc.invert(ok))


def explode_curves(results: pa.Table) -> pa.Table:
    """One row per (trial, epoch): trial_id, epoch and the reported values."""
    if "curve" not in results.column_names or not pa.types.is_list(results.column("curve").type):
        return pa.table({"trial_id": pa.array([], pa.int64()), "epoch": pa.array([], pa.int64())})
    curve = results.column("curve").combine_chunks()
    parents = pc.list_parent_indices(curve)
    points = pc.list_flatten(curve)
    cols = {"trial_id": results.column("trial_id").take(parents)}
    for i, f in enumerate(points.type):
        cols[f.name] = points.field(i)
    return pa.table(cols)


def _write(results: pa.Table, curves: pa.Table, state: dict, target: SweepPaths) -> str | None:
    """Write both tables; None, or why they could not be (a read-only dir)."""
    stamped = results.replace_schema_metadata({_STATE_KEY: json.dumps(state).encode()})
    try:
        # results.parquet last: its stamps must never describe curves that were not written.
        for table, path in ((curves, target.curves), (stamped, target.merged)):
            with atomic_path(path) as tmp:
                pq.write_table(table, tmp)
    except OSError as ex:
        return f"{target.root} is not writable ({ex.strerror or ex})"
    return None


def _assemble(found: pa.Table | None, trials: pa.Table, paths: SweepPaths
              ) -> tuple[pa.Table, list[int], _Skipped]:
    """One row per planned trial: its result row, or ``missing``; the ids that have a row,
    and the rows left out as another plan's."""
    parts, foreign = [], []
    if found is not None:
        rows, other = _with_plan(found, trials)
        foreign = [(paths.result(t), "its config_hash is not this plan's; left out")
                   for t in other.column("trial_id").to_pylist()]
        parts.append(rows)
    ids = parts[0].column("trial_id").combine_chunks() if parts else pa.array([], pa.int64())
    missing = trials.filter(pc.invert(pc.is_in(trials.column("trial_id"), ids)))
    parts.append(missing.append_column(
        "status", pa.array([TrialState.MISSING.value] * missing.num_rows, pa.string())))
    results = pa.concat_tables(parts, promote_options="permissive").sort_by("trial_id")
    return results, ids.to_pylist(), foreign


def merge(paths: SweepPaths, write: bool = True, out: Path | None = None,
          workers: int | None = None) -> MergeResult:
    """Build the merged tables of a sweep dir and write them to ``out`` (default: the sweep
    dir) unless ``write`` is False; a dir that cannot be written is reported, not raised.
    For example, ``merge(SweepPaths(Path("their/sweep")), out=Path("mine"))`` writes
    ``mine/results.parquet`` from a colleague's read-only sweep dir.
    """
    # Lazily: trials.py imports the planner's stack, which worker processes do not need.
    from sweeper.trials import read_trials

    trials, fingerprint = read_trials(paths), _fingerprint(paths)
    target = SweepPaths(out) if out is not None else paths
    files = _scan(paths)
    want = Want(drop=frozenset(trials.column_names) - {"trial_id", "config_hash"})
    # A colleague's results.parquet serves as well as our own until we have one.
    prior = _load_merged(target.merged, fingerprint, want) or (
        _load_merged(paths.merged, fingerprint, want) if out is not None else None)
    found, skipped, n_read = _gather(prior, files, want, workers)
    results, merged_ids, foreign = _assemble(found, trials, paths)
    curves = explode_curves(results)
    error = None
    if write:
        stamps = {str(t): files[t][1] for t in merged_ids if t in files}
        error = _write(results, curves, {"fingerprint": fingerprint, "files": stamps}, target)
    return MergeResult(results, curves, target.merged, target.curves, skipped + foreign,
                       n_read, written=write and error is None, write_error=error)


# The last current_rows() answer: a status --watch poll then reads only what changed since.
_recent: dict[tuple[Path, frozenset[str]], tuple[str, _Prior]] = {}


def current_rows(paths: SweepPaths, columns: Sequence[str] = STATE_COLUMNS,
                 workers: int | None = None) -> pa.Table:
    """``columns`` of every readable result row, sorted by trial_id; never writes.

    Rows whose file is unchanged (size, mtime, inode) since this process's last call, or
    since ``results.parquet`` was written, are reused; only the other files are opened.
    ``sweeper status`` reads ``current_rows(paths, STATE_COLUMNS)`` on every poll.
    """
    keep = frozenset(columns) | {"trial_id"}
    fingerprint = _fingerprint(paths)
    key = (paths.root, keep)
    last = _recent.get(key)
    prior = last[1] if last is not None and last[0] == fingerprint else \
        _load_merged(paths.merged, fingerprint, Want(keep))
    files = _scan(paths)
    table, _, _ = _gather(prior, files, Want(keep), workers)
    if table is None:
        table = pa.table({"trial_id": pa.array([], pa.int64())})
    table = table.sort_by("trial_id")
    stamps = {str(t): files[t][1] for t in table.column("trial_id").to_pylist() if t in files}
    _recent.clear()  # one sweep's rows at a time: bounded memory
    _recent[key] = (fingerprint, (table, stamps))
    return table.select([c for c in columns if c in table.column_names])


def top_trials(results: pa.Table, metric: str, direction: str, k: int = 5) -> pa.Table:
    """The k best completed trials by ``metric``."""
    if metric not in results.column_names:
        return results.slice(0, 0)
    done = results.filter(pc.and_(pc.equal(results.column("status"), TrialState.COMPLETED.value),
                                  pc.is_valid(results.column(metric))))
    order = "descending" if direction == "maximize" else "ascending"
    return done.sort_by([(metric, order)]).slice(0, k)
