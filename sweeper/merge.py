"""Merge: every trial's result file -> ``results.parquet`` (one row per trial) and
``curves.parquet`` (one row per trial and epoch).

Trials without a file get status ``missing``. A damaged file, or one from another
plan (its config_hash does not match), is reported and left out; it never stops
the merge. Only pyarrow is used: merging does not import torch.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sweeper.paths import SweepPaths, atomic_path
from sweeper.results import Status
from sweeper.trials import read_trials

__all__ = ["MergeResult", "explode_curves", "merge", "read_results", "top_trials"]


@dataclass
class MergeResult:
    results: pa.Table
    curves: pa.Table
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def _read_one(path: Path) -> pa.Table | str:
    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowException) as ex:
        return str(ex).splitlines()[0] if str(ex) else type(ex).__name__


def read_results(files: list[Path], threads: int = 8) -> tuple[list[pa.Table], list[tuple[Path, str]]]:
    """Read result files in parallel (pyarrow releases the GIL); collect the damaged ones."""
    tables, skipped = [], []
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for path, got in zip(files, pool.map(_read_one, files), strict=True):
            if isinstance(got, str):
                skipped.append((path, got))
            elif got.num_rows != 1 or "trial_id" not in got.column_names:
                skipped.append((path, "not a one-row sweeper result"))
            else:
                tables.append(got)
    return tables, skipped


def _check_plan(found: pa.Table, trials: pa.Table) -> tuple[pa.Table, pa.Table]:
    """Split rows into those matching the trial table's config_hash and the others."""
    want = pc.index_in(found.column("trial_id"), trials.column("trial_id"))
    expected = trials.column("config_hash").take(pc.fill_null(want, 0))
    ok = pc.and_(pc.is_valid(want), pc.equal(found.column("config_hash"), expected))
    ok = pc.fill_null(ok, False)
    return found.filter(ok), found.filter(pc.invert(ok))


def explode_curves(results: pa.Table) -> pa.Table:
    """One row per (trial, epoch): trial_id, epoch and the reported values."""
    if "curve" not in results.column_names or pa.types.is_null(results.column("curve").type):
        return pa.table({"trial_id": pa.array([], pa.int64()), "epoch": pa.array([], pa.int64())})
    curve = results.column("curve").combine_chunks()
    parents = pc.list_parent_indices(curve)
    points = pc.list_flatten(curve)
    cols = {"trial_id": results.column("trial_id").take(parents)}
    for i, f in enumerate(points.type):
        cols[f.name] = points.field(i)
    return pa.table(cols)


def merge(paths: SweepPaths, write: bool = True) -> MergeResult:
    """Build (and by default write) the merged tables of a sweep dir."""
    trials = read_trials(paths)
    tables, skipped = read_results(paths.result_files())
    found = pa.concat_tables(tables, promote_options="permissive") if tables else None
    parts = []
    if found is not None:
        found, foreign = _check_plan(found, trials)
        for tid in foreign.column("trial_id").to_pylist():
            skipped.append((paths.result(tid), "its config_hash is not this plan's; left out"))
        parts.append(found)
    have = found.column("trial_id") if found is not None else pa.array([], pa.int64())
    missing = trials.filter(pc.invert(pc.is_in(trials.column("trial_id"), have)))
    parts.append(missing.append_column("status", pa.array([Status.MISSING.value] * missing.num_rows,
                                                         pa.string())))
    results = pa.concat_tables(parts, promote_options="permissive")
    results = results.sort_by("trial_id")
    curves = explode_curves(results)
    if write:
        for table, target in ((results, paths.merged), (curves, paths.curves)):
            with atomic_path(target) as tmp:
                pq.write_table(table, tmp)
    return MergeResult(results, curves, skipped)


def top_trials(results: pa.Table, metric: str, direction: str, k: int = 5) -> pa.Table:
    """The k best completed trials by ``metric``."""
    if metric not in results.column_names:
        return results.slice(0, 0)
    done = results.filter(pc.and_(pc.equal(results.column("status"), "completed"),
                                  pc.is_valid(results.column(metric))))
    order = "descending" if direction == "maximize" else "ascending"
    return done.sort_by([(metric, order)]).slice(0, k)
