"""Benchmark: `sweeper report` on a 1,000-trial sweep. Target: about 10 s.

    python scripts/bench_report.py [--trials 1000]

Plans a real random search (conf/search/random.yaml, 6 keys), writes one result row per trial
with sweeper's own writer (a metric that depends on the keys, a 50-epoch curve, 5% failures),
then times the whole `sweeper report DIR` command in a fresh process (merge included).
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--keep", type=Path, help="write the sweep here and keep it")
    args = ap.parse_args()
    from sweeper.paths import SweepPaths
    from sweeper.results import TrialOutcome, write_result
    from sweeper.state import TrialState
    from sweeper.trials import read_trials

    with tempfile.TemporaryDirectory() as tmp:
        sweep_dir = args.keep or Path(tmp) / "sweep"
        subprocess.run([sys.executable, "-m", "sweeper", "plan", "+search=random",
                        f"search.n_trials={args.trials}", "cluster=local",
                        f"hydra.sweep.dir={sweep_dir}"], cwd=ROOT, check=True, capture_output=True)
        paths = SweepPaths(sweep_dir)
        table = read_trials(paths)
        rng = np.random.default_rng(0)
        now = dt.datetime.now(dt.timezone.utc)
        for i, row in enumerate(table.to_pylist()):
            loss = (math.log10(row["optimizer.lr"]) + 2.5) ** 2 + row["model.dropout"] + rng.random() * 0.1
            failed = i % 20 == 3
            curve = [] if failed else [{"epoch": e, "val_loss": loss * (1 + 5 / (e + 1)),
                                        "train_loss": loss} for e in range(50)]
            outcome = TrialOutcome(TrialState.FAILED if failed else TrialState.COMPLETED, now,
                                   now + dt.timedelta(seconds=30), curve=curve,
                                   metrics={} if failed else {"val_loss": loss, "train_time_s": 30.0},
                                   error="RuntimeError: CUDA out of memory" if failed else None,
                                   config_yaml="task:\n  fn: x\n")
            write_result(paths, table.slice(i, 1), outcome)
        t = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "sweeper", "report", str(sweep_dir)], cwd=ROOT,
                           capture_output=True, text=True)
        seconds = time.perf_counter() - t
        if r.returncode != 0:
            raise SystemExit(r.stderr)
        files = sorted(p.name for p in paths.report_dir.iterdir())
        print(f"sweeper report, {args.trials} trials: {seconds:.1f}s for the whole command "
              f"(cold merge included), {len(files)} files: {', '.join(files)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
