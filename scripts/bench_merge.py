"""Benchmark: a cold merge of 10,000 result files against polars and duckdb, in one run.

    python scripts/bench_merge.py [--trials 10000] [--dir DIR] [--rounds 1] [--naive]

Writes a synthetic sweep dir (real trials.parquet and result rows from sweeper's own
writer, with a 20-epoch curve and a config_yaml each), reads every file once so that no
reader pays for a cold page cache, then times, in each round:
  polars:  pl.scan_parquet(files, missing_columns="insert", extra_columns="ignore").collect()
  duckdb:  duckdb.read_parquet(files, union_by_name=True), as an Arrow table
  sweeper: sweeper.merge.merge(paths) with nothing merged before (it reads every file, checks
           each row against the plan, and writes results.parquet and curves.parquet)
and then sweeper again after 0, 100 and 1000 files changed; --naive adds
pd.concat([pd.read_parquet(f) for f in files]) (about 40 s). polars and duckdb are not
sweeper's dependencies: install them in the venv to compare (`pip install polars duckdb`);
one that is missing is skipped with a message. Target: sweeper / polars <= 1.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from sweeper.merge import MergeResult, merge
from sweeper.paths import SweepPaths


def make_sweep(root: Path, n: int) -> None:
    from sweeper.overrides import build_request
    from sweeper.results import TrialOutcome, write_result
    from sweeper.state import TrialState
    from sweeper.strategies import RandomStrategy
    from sweeper.trials import build_table, write_trials

    space = {"optimizer.lr": {"type": "loguniform", "low": 1e-5, "high": 1e-1},
             "training.batch_size": [16, 32, 64, 128], "model.hidden_size": {"type": "int", "low": 8, "high": 512},
             "model.dropout": {"type": "uniform", "low": 0.0, "high": 0.5}}
    request = build_request(space, ["+search=random"], lambda k: k == "search")
    design = RandomStrategy(n, seed=0).propose(request.space.params)
    table, _ = build_table(request, design, np.zeros(n, np.int64), ["v"], [0])
    paths = SweepPaths(root)
    write_trials(table, paths, "bench")
    rng = np.random.default_rng(0)
    now = dt.datetime.now(dt.timezone.utc)
    config_yaml = "\n".join(f"key_{i}: value_{i}" for i in range(60))
    for i in range(n):
        failed = i % 50 == 7
        curve = [] if failed else [{"epoch": e, "train_loss": float(rng.random()), "val_loss": float(rng.random()),
                                    "lr": 1e-3} for e in range(20)]
        outcome = TrialOutcome(
            TrialState.FAILED if failed else TrialState.COMPLETED, now, now, curve=curve,
            metrics={} if failed else {"val_loss": float(rng.random()), "train_time_s": 1.0,
                                       "best_epoch": 3, "epochs_run": 20},
            error="RuntimeError: boom" if failed else None, config_yaml=config_yaml,
            provenance={"hostname": "node1", "git_commit": "abc", "git_dirty": False, "python_version": "3.11"})
        write_result(paths, table.slice(i, 1), outcome)


def _polars(files: list[Path]) -> int:
    import polars as pl

    # Failed trials have no metric columns: polars needs to be told to fill them with nulls.
    return pl.scan_parquet(files, missing_columns="insert", extra_columns="ignore").collect().height


def _duckdb(files: list[Path]) -> int:
    import duckdb

    rel = duckdb.connect().read_parquet([str(f) for f in files], union_by_name=True)
    table = rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.arrow()
    return int(table.num_rows)


def _naive(files: list[Path]) -> int:
    import pandas as pd

    return len(pd.concat([pd.read_parquet(f) for f in files]))


def _cpu_s() -> float:
    """CPU time of this process's threads and of its finished child processes."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _timed(name: str, fn: Callable[[], Any]) -> tuple[float | None, Any]:
    try:
        t, cpu = time.perf_counter(), _cpu_s()
        value = fn()
        seconds, cpu = time.perf_counter() - t, _cpu_s() - cpu
    except ImportError as ex:
        print(f"{name}: skipped, {ex.name} is not installed (pip install {ex.name})")
        return None, None
    print(f"{name}: {seconds:.2f}s ({cpu:.1f} CPU-s; load average {os.getloadavg()[0]:.1f})")
    return seconds, value


def _cold_round(paths: SweepPaths, files: list[Path], naive: bool, sweeper_first: bool
                ) -> MergeResult:
    """Each reader once; the order alternates between rounds, so neither always goes first."""
    readers: dict[str, Callable[[], Any]] = {
        "polars": lambda: _polars(files), "duckdb": lambda: _duckdb(files)}
    if naive:
        readers["naive"] = lambda: _naive(files)
    times, result = {}, None
    for name in (["sweeper", *readers] if sweeper_first else [*readers, "sweeper"]):
        if name == "sweeper":
            paths.merged.unlink(missing_ok=True)  # cold: nothing merged before
            times[name], result = _timed("sweeper merge, cold", lambda: merge(paths))
            assert result.files_read == result.results.num_rows == len(files) and result.written
        else:
            times[name], rows = _timed(name, readers[name])
            assert rows in (None, len(files)), f"{name} read {rows} rows, not {len(files)}"
    ratios = [f"sweeper/{k} = {times['sweeper'] / v:.2f}"  # type: ignore[operator]
              for k, v in times.items() if v and k != "sweeper"]
    if ratios:
        print("  ".join(ratios))
    assert result is not None
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=10_000)
    ap.add_argument("--dir", type=Path, help="reuse or create the sweep dir here")
    ap.add_argument("--rounds", type=int, default=1, help="cold comparisons, one after another")
    ap.add_argument("--naive", action="store_true", help="also time a pandas read_parquet loop")
    args = ap.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="bench-merge-"))
    paths = SweepPaths(root)
    if len(paths.result_files()) != args.trials:
        t = time.perf_counter()
        make_sweep(root, args.trials)
        print(f"wrote {args.trials} result files in {time.perf_counter() - t:.1f}s to {root}")
    files = paths.result_files()
    t = time.perf_counter()
    size = sum(len(f.read_bytes()) for f in files)
    print(f"{len(files)} files, {size / 1e6:.0f} MB, read once in {time.perf_counter() - t:.1f}s "
          f"(page cache warm for every reader); {os.cpu_count()} CPUs")
    for i in range(args.rounds):
        cold = _cold_round(paths, files, args.naive, sweeper_first=i % 2 == 1)
    for changed in (0, min(100, len(files)), min(1000, len(files))):
        for f in files[:changed]:  # as if these trials had finished since the last merge
            os.utime(f)
        t = time.perf_counter()
        warm = merge(paths)
        t_warm = time.perf_counter() - t
        assert warm.results.equals(cold.results) and warm.files_read == changed
        print(f"sweeper merge, {changed} new files since the last merge: {t_warm:.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
