"""Reading many one-row Parquet result files fast: on every CPU, and only what is needed.

Opening a one-row Parquet file costs about 0.6 ms of CPU whatever its size (footer, schema,
one reader per column), so many files are read on worker processes, each sending back one
Arrow IPC buffer, and each file gives only the wanted columns. Used by :mod:`sweeper.merge`.
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

# The reader under pq.ParquetFile: ParquetFile's own set-up in Python is a fifth of the
# cost of a one-row file.
from pyarrow._parquet import ParquetReader

__all__ = ["ReadCounter", "Want", "read_counter", "read_files"]

# Below this many files, starting worker processes costs more than it saves.
_POOL_MIN_FILES = 200

_Skipped = list[tuple[Path, str]]


@dataclass(frozen=True)
class Want:
    """Which columns to read: those in ``keep`` (None: all) and not in ``drop``."""

    keep: frozenset[str] | None = None
    drop: frozenset[str] = frozenset()

    def __call__(self, name: str) -> bool:
        return (self.keep is None or name in self.keep) and name not in self.drop


@dataclass
class ReadCounter:
    """Result files this process has opened, for tests and benchmarks."""

    files: int = 0


read_counter = ReadCounter()


def _leaf_count(t: pa.DataType) -> int:
    n = t.num_fields
    return 1 if n == 0 else sum(_leaf_count(t.field(i).type) for i in range(n))


class _Columns:
    """The Parquet leaf columns to read (``read_all`` takes leaves, not fields), worked out
    again only when a file's Parquet schema differs from the last one's: comparing those
    costs a microsecond, converting a file's schema to Arrow's thirty."""

    def __init__(self, want: Want) -> None:
        self.want = want
        self.schema: pq.ParquetSchema | None = None
        self.leaves: list[int] | None = None  # None: the file has no trial_id
        self.changes = 0  # how many times the schema changed: files in between share one

    def of(self, reader: ParquetReader) -> list[int] | None:
        schema = reader.metadata.schema
        if self.schema is None or not schema.equals(self.schema):
            self.schema, self.changes, arrow = schema, self.changes + 1, reader.schema_arrow
            self.leaves, at = ([] if "trial_id" in arrow.names else None), 0
            for f in arrow:
                n = _leaf_count(f.type)
                if self.want(f.name) and self.leaves is not None:
                    self.leaves.extend(range(at, at + n))
                at += n
        return self.leaves


def _read_one(path: str, columns: _Columns) -> pa.Table | str:
    """One result row with only the wanted columns, or why it cannot be read."""
    try:
        reader = ParquetReader()
        # Without pre_buffer each column is one small read on this thread, not a hop to
        # Arrow's IO threads: cheaper for files this small.
        reader.open(path, pre_buffer=False)
        leaves = columns.of(reader)
        if leaves is None or reader.metadata.num_rows != 1:
            return "not a one-row sweeper result"
        return reader.read_all(column_indices=leaves, use_threads=False)
    except (OSError, pa.ArrowException) as ex:
        return str(ex).splitlines()[0] if str(ex) else type(ex).__name__


def _concat(runs: list[list[pa.Table]]) -> pa.Table:
    """A permissive concat of runs of tables read with one Parquet schema: within a run the
    plain concat nearly always applies, and it is ten times cheaper."""
    parts = []
    for run in runs:
        try:
            parts.append(pa.concat_tables(run))
        except pa.ArrowInvalid:  # one Parquet schema, two Arrow ones (e.g. a time zone)
            parts.append(pa.concat_tables(run, promote_options="permissive"))
    return pa.concat_tables(parts, promote_options="permissive")


def _read_chunk(files: list[str], want: Want) -> tuple[pa.Table | None, list[tuple[str, str]]]:
    runs: dict[int, list[pa.Table]] = {}
    skipped, columns = [], _Columns(want)
    for path in files:
        got = _read_one(path, columns)
        if isinstance(got, str):
            skipped.append((path, got))
        else:
            runs.setdefault(columns.changes, []).append(got)
    if not runs:
        return None, skipped
    # One chunk, not thousands of one-row chunks: kernels and the IPC writer pay per chunk.
    return _concat(list(runs.values())).combine_chunks(), skipped


def _read_chunk_ipc(files: list[str], want: Want
                    ) -> tuple[pa.Buffer | None, list[tuple[str, str]]]:
    """``_read_chunk`` in a worker process; its table goes back as one IPC buffer."""
    table, skipped = _read_chunk(files, want)
    if table is None:
        return None, skipped
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue(), skipped


def _default_workers() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))  # what this process may use, e.g. under SLURM
    except AttributeError:
        cpus = os.cpu_count() or 1
    # One more than the CPUs: every CPU stays busy while a worker sends its chunk back
    # (10,000 files on 2 CPUs: 2 workers 4.2-4.6 s, 3 workers 4.0-4.1 s). At most 8: a
    # login node's 64 cores are not all ours.
    return min(cpus + 1, 8)


def _in_pool(files: list[str], want: Want, n: int
             ) -> list[tuple[pa.Table | None, list[tuple[str, str]]]]:
    size = -(-len(files) // (n * 4))  # several contiguous chunks per worker even out the load
    chunks = [files[i:i + size] for i in range(0, len(files), size)]
    # fork starts a worker in milliseconds, spawn in ~0.3 s of imports. Arrow re-creates its
    # thread pools in a forked child; a Python thread could hold a lock the child needs.
    method = "fork" if threading.active_count() == 1 and "fork" in mp.get_all_start_methods() \
        else "spawn"
    try:
        # No cyclic GC in the workers: they make no cycles, and its passes over the objects
        # inherited from this process cost 5% and copy-on-write pages.
        with ProcessPoolExecutor(min(n, len(chunks)), mp_context=mp.get_context(method),
                                 initializer=gc.disable) as pool:
            got = list(pool.map(_read_chunk_ipc, chunks, [want] * len(chunks)))
    except (OSError, BrokenProcessPool):  # no processes allowed here: read in this one
        return [_read_chunk(files, want)]
    return [(pa.ipc.open_stream(buf).read_all() if buf is not None else None, skipped)
            for buf, skipped in got]


def read_files(files: list[Path], want: Want, workers: int | None
                ) -> tuple[list[pa.Table], _Skipped]:
    """Read result files, in order, on ``workers`` processes (default: one per CPU and one
    more, once there are enough files to pay for starting them; 1: in this process)."""
    names = [str(f) for f in files]
    n = workers or (_default_workers() if len(names) >= _POOL_MIN_FILES else 1)
    got = _in_pool(names, want, n) if n > 1 and names else [_read_chunk(names, want)]
    read_counter.files += len(names)
    tables = [t for t, _ in got if t is not None]
    return tables, [(Path(p), why) for _, skipped in got for p, why in skipped]
