"""Benchmark the local executor: 36 trials of 1 s on 2 slots, and a no-op trial's overhead.

    python scripts/bench_local.py

(1) 36 trials that each sleep 1 s, max_parallel=2: wall time of the whole command
    (Hydra start-up, planning, the fork server, the auto-merge) and of the executor alone,
    against the ideal of 18 s. Target: <= 20 s.
(2) Per-trial overhead of a no-op task, process start to result file: 40 trials with
    max_parallel=1; the mean time per trial, and the trial rows' own durations. Target: <= 0.5 s.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]


def sweep(args: list[str], sweep_dir: Path) -> tuple[float, str]:
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "sweeper", "cluster=local",
                        "task.fn=sweeper.tasks.sleep:sleep", f"hydra.sweep.dir={sweep_dir}", *args],
                       cwd=ROOT, capture_output=True, text=True, check=True)
    return time.perf_counter() - t, r.stderr


def executor_seconds(sweep_dir: Path) -> float:
    rows = pq.read_table(sweep_dir / "results.parquet", columns=["started_at", "finished_at"])
    start = rows.column("started_at").to_pylist()
    end = rows.column("finished_at").to_pylist()
    return (max(end) - min(start)).total_seconds()


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        wall, _ = sweep(["+sleep_s=1.0", "+x=range(0,36)", "cluster.max_parallel=2"], Path(tmp) / "a")
        span = executor_seconds(Path(tmp) / "a")
        print(f"36 x 1 s on 2 slots: command {wall:.1f}s, first trial start -> last trial end "
              f"{span:.1f}s (ideal 18.0s)")
        n = 40
        wall, _ = sweep(["+x=range(0,40)", "cluster.max_parallel=1"], Path(tmp) / "b")
        span = executor_seconds(Path(tmp) / "b")
        durations = pq.read_table(Path(tmp) / "b" / "results.parquet").column("duration_s").to_pylist()
        print(f"no-op trials, one at a time: {span / (n - 1):.3f}s per trial from one trial's start "
              f"to the next's (process start to result file, plus the gap); the task body itself "
              f"{sum(durations) / n * 1000:.1f}ms; whole command {wall:.1f}s for {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
