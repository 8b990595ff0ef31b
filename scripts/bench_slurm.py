"""Benchmark sweeper on the real SLURM cluster (slurm/local_cluster.sh), against
hydra-submitit-launcher on the same grid, in the same run.

    python scripts/bench_slurm.py [--skip-hsl]

(1) Wall time from command start until every array is accepted by sbatch, for 1,000 and 10,000
    no-op trials (the command returns then). hydra-submitit-launcher (installed into its own
    venv under /tmp, as users install it) is timed on 1,000 until its array shows in squeue.
    Every submitted array is cancelled right after.
(2) Files and bytes written per trial, for 40 no-op trials run to completion with
    trials_per_task 1 and 20.
(3) The no-op trial overhead inside an array task: (task time from the batch script's first
    line to the last trial's end, minus the trials' own time) / trials, for k = 1 and 20.
Targets: (1) <= 2 s at 1,000 and <= 5 s at 10,000; (2) the result file plus one log per task.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOOP = ["cluster=slurm", "task.fn=sweeper.tasks.sleep:sleep", "cluster.mem_gb=0.25",
        "cluster.timeout_min=10"]


def sweeper(*args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "sweeper", *args], cwd=ROOT, capture_output=True,
                       text=True)
    if r.returncode != 0:
        raise SystemExit(f"sweeper {' '.join(args)} failed:\n{r.stderr}")
    return time.perf_counter() - t, r


def submit_ours(tmp: Path, n: int) -> float:
    grid = ["+a=range(0,10)", "+b=range(0,10)", f"+c=range(0,{n // 100})"]
    sweep_dir = tmp / f"ours-{n}"
    seconds, r = sweeper(*NOOP, *grid, "cluster.array_parallelism=2", f"hydra.sweep.dir={sweep_dir}")
    arrays = re.search(r"as (\d+) array", r.stderr)
    sweeper("cancel", str(sweep_dir))
    print(f"sweeper, {n:,} trials: {seconds:.2f}s until all {arrays.group(1) if arrays else '?'} "
          "array(s) were accepted (command start to return)")
    return seconds


HSL_APP = '''
import hydra

@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg):
    return 0.0

if __name__ == "__main__":
    main()
'''


def submit_hsl(tmp: Path, n: int) -> float | None:
    venv = Path(tempfile.gettempdir()) / "sweeper-bench-hsl-venv"
    if not (venv / "bin" / "python").exists():
        clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=clean)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "hydra-core==1.3.8",
                        "hydra-submitit-launcher==1.2.0", "submitit==1.5.4"], check=True,
                       env=clean, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    app = tmp / "hsl_app"
    (app / "conf").mkdir(parents=True)
    (app / "my_app.py").write_text(HSL_APP)
    (app / "conf" / "config.yaml").write_text("a: 0\nb: 0\nc: 0\n")
    argv = [str(venv / "bin" / "python"), "my_app.py", "-m", "hydra/launcher=submitit_slurm",
            "hydra.launcher.mem_gb=1", "hydra.launcher.array_parallelism=2",
            "hydra.launcher.timeout_min=10", f"hydra.sweep.dir={tmp / 'hsl-out'}",
            "a=range(0,10)", "b=range(0,10)", f"c=range(0,{n // 100})"]
    t = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=app, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    job = None
    while proc.poll() is None and time.perf_counter() - t < 1800:
        out = subprocess.run(["squeue", "-h", "-n", "my_app", "-o", "%F"], capture_output=True,
                             text=True).stdout.split()
        if out:
            job = out[0]
            break
        time.sleep(0.2)
    seconds = time.perf_counter() - t
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    if job:
        subprocess.run(["scancel", job])
        print(f"hydra-submitit-launcher, {n:,} trials: {seconds:.2f}s until its array was accepted")
        return seconds
    print(f"hydra-submitit-launcher, {n:,} trials: no array after {seconds:.0f}s (exit {proc.returncode})")
    return None


def footprint(tmp: Path, k: int, n: int = 40) -> None:
    # Two at a time, as the baseline measured hydra-submitit-launcher: the machine has 2 cores.
    sweep_dir = tmp / f"foot-k{k}"
    sweeper(*NOOP, f"+x=range(0,{n})", f"cluster.trials_per_task={k}", "cluster.array_parallelism=2",
            "cluster.setup=[\"echo JOBSTART $(date +%s.%N)\"]", "--wait", f"hydra.sweep.dir={sweep_dir}")
    for f in (sweep_dir / "results.parquet", sweep_dir / "curves.parquet"):
        f.unlink()  # written by the end-of-run merge, not by the trials
    files = [p for p in sweep_dir.rglob("*") if p.is_file()]
    results = [p for p in files if p.parent.name == "results" and p.name.startswith("trial-")]
    per_sweep = [p for p in files if p.parent in (sweep_dir, sweep_dir / "launches")
                 or (p.parent.name == "results" and p not in results)]
    logs = [p for p in files if p.parent.name == "logs"]
    nbytes = sum(p.stat().st_size for p in results + logs)
    print(f"k={k:2d}: {len(results)} result files + {len(logs)} task logs for {n} trials = "
          f"{(len(results) + len(logs)) / n:.2f} files and {nbytes / n / 1024:.1f} KB per trial "
          f"(+ {len(per_sweep)} files per sweep: sweep.yaml, trials.parquet, launch record, scripts, "
          "locks)")
    import pyarrow.parquet as pq

    overheads = []
    for log in logs:
        text = log.read_text()
        start = float(re.search(r"JOBSTART (\d+\.\d+)", text).group(1))
        ids = [int(x) for x in re.search(r"trials \[([\d, ]+)\]", text).group(1).split(",")]
        rows = [pq.read_table(sweep_dir / "results" / f"trial-{i:06d}.parquet").to_pylist()[0] for i in ids]
        end = max(r["finished_at"].timestamp() for r in rows)
        busy = sum(r["duration_s"] for r in rows)
        overheads.append((end - start - busy) / len(ids))
    overheads.sort()
    print(f"k={k:2d}: no-op overhead per trial inside an array task: median "
          f"{overheads[len(overheads) // 2]:.3f}s (from the batch script's first line to the "
          "last result, minus the trials' own time)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-hsl", action="store_true", help="do not time hydra-submitit-launcher")
    args = ap.parse_args()
    os.environ["PYTHONPATH"] = str(ROOT)
    with tempfile.TemporaryDirectory() as tmp:
        submit_ours(Path(tmp), 1_000)
        submit_ours(Path(tmp), 10_000)
        if not args.skip_hsl:
            submit_hsl(Path(tmp), 1_000)
        footprint(Path(tmp), 1)
        footprint(Path(tmp), 20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
