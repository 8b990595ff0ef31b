"""GPU check (needs a machine with an NVIDIA GPU; CI has none): local slots get their GPU
through CUDA_VISIBLE_DEVICES, the built-in task trains on it, and several trials share one
GPU with ``cluster.trials_per_gpu``.

    python scripts/check_gpu.py OUT_DIR

Runs the tiny coarse grid (36 trials) twice, with 1 and with 2 trials per GPU, then an
adaptive sweep (TPE + ASHA pruning, 24 trials) with 2 trials per GPU; samples ``nvidia-smi``
for the processes on each GPU while each runs, and prints one JSON summary: the device each
trial reports, the most trial processes seen on one GPU at once, the most trials whose
[started_at, finished_at] overlap, the states, and the wall time of each run.
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


def run(out: Path, per_gpu: int, search: tuple[str, ...] = ("+search=coarse",)) -> dict:
    sweep_dir = out / f"per-gpu-{per_gpu}-{search[0].split('=')[1]}"
    seen: list[int] = []
    stop = threading.Event()
    sampler = threading.Thread(target=_gpu_processes, args=(stop, seen), daemon=True)
    sampler.start()
    start = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "sweeper", *search, "scenario=tiny",
                        "cluster=local", f"cluster.trials_per_gpu={per_gpu}",
                        f"hydra.sweep.dir={sweep_dir}"], capture_output=True, text=True,
                       check=False)
    wall_s = time.perf_counter() - start
    stop.set()
    sampler.join()
    rows = pq.read_table(sweep_dir / "results.parquet").to_pylist() if r.returncode == 0 else []
    return {
        "search": " ".join(search), "trials_per_gpu": per_gpu, "exit_code": r.returncode,
        "wall_s": round(wall_s, 1), "rows": len(rows),
        "states": {s: sum(row["status"] == s for row in rows) for s in ("completed", "pruned")},
        "stderr_tail": r.stderr[-600:] if r.returncode else "",
        "statuses": sorted({row["status"] for row in rows}),
        "devices": sorted({row["device"] for row in rows}),
        "max_gpu_processes_seen": max(seen, default=0),
        "max_overlapping_trials": _max_overlap(rows),
        "mean_train_time_s": round(sum(row.get("train_time_s") or 0 for row in rows)
                                   / max(1, len(rows)), 3),
    }


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "gpu-check")
    out.mkdir(parents=True, exist_ok=True)
    summary = [run(out, 1), run(out, 2),
               run(out, 2, ("+search=tpe", "search.n_trials=24", "training.epochs=12",
                            "search.pruner.type=successive_halving",
                            "+search.pruner.min_resource=2", "training.patience=50"))]
    print(json.dumps(summary, indent=1))
    (out / "gpu-check.json").write_text(json.dumps(summary, indent=1))
    return 0 if all(s["exit_code"] == 0 for s in summary) else 1


if __name__ == "__main__":
    sys.exit(main())
