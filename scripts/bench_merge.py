"""Benchmark: merge 10,000 result files, against a naive pandas loop, in the same run.

    python scripts/bench_merge.py [--trials 10000] [--dir DIR]

Writes a synthetic sweep dir (real trials.parquet and result rows from sweeper's own
writer, with a 20-epoch curve and a config_yaml each), then times:
  naive:   pd.concat([pd.read_parquet(f) for f in files])
  sweeper: sweeper.merge.merge(paths), which also writes results.parquet and curves.parquet,
           cold (nothing merged before) and again after 0, 100 and 1000 files changed.
Target: sweeper <= 1 s and >= 10x faster than naive.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_sweep(root: Path, n: int) -> None:
    from sweeper.overrides import build_request
    from sweeper.paths import SweepPaths
    from sweeper.results import Status, TrialOutcome, write_result
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
            Status.FAILED if failed else Status.COMPLETED, now, now, curve=curve,
            metrics={} if failed else {"val_loss": float(rng.random()), "train_time_s": 1.0,
                                       "best_epoch": 3, "epochs_run": 20},
            error="RuntimeError: boom" if failed else None, config_yaml=config_yaml,
            provenance={"hostname": "node1", "git_commit": "abc", "git_dirty": False, "python_version": "3.11"})
        write_result(paths, table.slice(i, 1), outcome)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=10_000)
    ap.add_argument("--dir", type=Path, help="reuse or create the sweep dir here")
    args = ap.parse_args()
    import pandas as pd

    from sweeper.merge import merge
    from sweeper.paths import SweepPaths

    root = args.dir or Path(tempfile.mkdtemp(prefix="bench-merge-"))
    paths = SweepPaths(root)
    if len(paths.result_files()) != args.trials:
        t = time.perf_counter()
        make_sweep(root, args.trials)
        print(f"wrote {args.trials} result files in {time.perf_counter() - t:.1f}s to {root}")
    files = paths.result_files()
    paths.merged.unlink(missing_ok=True)  # a cold merge first: nothing cached
    t = time.perf_counter()
    naive = pd.concat([pd.read_parquet(f) for f in files])
    t_naive = time.perf_counter() - t
    t = time.perf_counter()
    cold = merge(paths)
    t_cold = time.perf_counter() - t
    assert cold.results.num_rows == len(naive) == args.trials and cold.files_read == args.trials
    print(f"naive pandas loop: {t_naive:.2f}s for {len(files)} files")
    print(f"sweeper merge, cold (reads every file): {t_cold:.2f}s (x{t_naive / t_cold:.1f} faster), "
          f"{cold.curves.num_rows:,} curve rows")
    for changed in (0, 100, 1000):
        for f in files[:changed]:  # as if these trials had finished since the last merge
            os.utime(f)
        t = time.perf_counter()
        warm = merge(paths)
        t_warm = time.perf_counter() - t
        assert warm.results.equals(cold.results) and warm.files_read == changed
        print(f"sweeper merge, {changed} new files since the last merge: {t_warm:.2f}s "
              f"(x{t_naive / t_warm:.1f} faster than the naive loop)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
