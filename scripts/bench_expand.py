"""Benchmark: expand a grid of 10^6 points into the trial table (and write it).

    python scripts/bench_expand.py [--points-per-key 100]

Prints wall time and peak RSS of this process. Target: <= 2 s and <= 1 GB for 10^6.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points-per-key", type=int, default=100, help="3 keys: n^3 trials")
    args = ap.parse_args()
    n = args.points_per_key
    t_import = time.perf_counter()
    import pyarrow as pa

    pa.array([0])  # pyarrow imports pandas on its first conversion: keep that out of the timing
    from sweeper.overrides import build_request
    from sweeper.paths import SweepPaths
    from sweeper.strategies import GridStrategy
    from sweeper.trials import build_table, write_trials

    t0 = time.perf_counter()
    space = {
        "optimizer.lr": {"type": "loguniform", "low": 1e-5, "high": 1e-1, "num": n},
        "training.batch_size": list(range(8, 8 + 8 * n, 8)),
        "model.dropout": {"type": "uniform", "low": 0.0, "high": 0.5, "num": n},
    }
    request = build_request(space, ["+search=coarse", "scenario=tiny"], lambda k: k in ("search", "scenario"))
    design = GridStrategy(max_size=n**3).propose(request.space.params)
    t1 = time.perf_counter()
    table, _ = build_table(request, design, np.zeros(design.n_trials, np.int64), ["v"], [0])
    t2 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        write_trials(table, SweepPaths(Path(tmp)), "bench")
        size_mb = (Path(tmp) / "trials.parquet").stat().st_size / 1e6
    t3 = time.perf_counter()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"trials={table.num_rows:,} expand={t1 - t0:.3f}s build_table={t2 - t1:.3f}s "
          f"write={t3 - t2:.3f}s total={t3 - t0:.3f}s (imports {t0 - t_import:.2f}s) "
          f"peak_rss={rss_mb:.0f}MB trials.parquet={size_mb:.1f}MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
