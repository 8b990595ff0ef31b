"""GPU check (needs a machine with an NVIDIA GPU; CI has none): local slots get their GPU
through CUDA_VISIBLE_DEVICES, the built-in task trains on it, and several trials share one
GPU with ``cluster.trials_per_gpu``.

    python scripts/check_gpu.py OUT_DIR

Runs the tiny coarse grid (36 trials) twice, with 1 and with 2 trials per GPU, samples
``nvidia-smi`` for the processes on each GPU while it runs, and prints one JSON summary:
the device each trial reports, the most trial processes seen on one GPU at once, the most
trials whose [started_at, finished_at] overlap, and the wall time of each run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq


def _gpu_processes(stop: threading.Event, seen: list[int]) -> None:
    while not stop.is_set():
        out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid", "--format=csv,noheader"],
                             capture_output=True, text=True, check=False).stdout
        seen.append(len([line for line in out.splitlines() if line.strip()]))
        time.sleep(0.25)


def _max_overlap(rows: list[dict]) -> int:
    events = sorted([(r["started_at"], 1) for r in rows] + [(r["finished_at"], -1) for r in rows])
    best = now = 0
    for _, step in events:
        now += step
        best = max(best, now)
    return best


def run(out: Path, per_gpu: int) -> dict:
    sweep_dir = out / f"per-gpu-{per_gpu}"
    seen: list[int] = []
    stop = threading.Event()
    sampler = threading.Thread(target=_gpu_processes, args=(stop, seen), daemon=True)
    sampler.start()
    start = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "sweeper", "+search=coarse", "scenario=tiny",
                        "cluster=local", f"cluster.trials_per_gpu={per_gpu}",
                        f"hydra.sweep.dir={sweep_dir}"], capture_output=True, text=True,
                       check=False)
    wall_s = time.perf_counter() - start
    stop.set()
    sampler.join()
    rows = pq.read_table(sweep_dir / "results.parquet").to_pylist() if r.returncode == 0 else []
    return {
        "trials_per_gpu": per_gpu, "exit_code": r.returncode, "wall_s": round(wall_s, 1),
        "stderr_tail": r.stderr[-600:] if r.returncode else "",
        "statuses": sorted({row["status"] for row in rows}),
        "devices": sorted({row["device"] for row in rows}),
        "max_gpu_processes_seen": max(seen, default=0),
        "max_overlapping_trials": _max_overlap(rows),
        "mean_train_time_s": round(sum(row["train_time_s"] for row in rows) / max(1, len(rows)), 3),
    }


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "gpu-check")
    out.mkdir(parents=True, exist_ok=True)
    summary = [run(out, 1), run(out, 2)]
    print(json.dumps(summary, indent=1))
    (out / "gpu-check.json").write_text(json.dumps(summary, indent=1))
    return 0 if all(s["exit_code"] == 0 for s in summary) else 1


if __name__ == "__main__":
    sys.exit(main())
