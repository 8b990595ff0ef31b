"""Compute to quality of adaptive search: epochs trained against the best val_loss reached.

    python scripts/bench_adaptive.py [--seeds 5] [--trials 20] [--quick] [--out FILE.json]
    python scripts/bench_adaptive.py --methods random tpe+asha campaign --test-fraction 0.15 \
        --skip-hartmann --out test-artifacts/bench_adaptive_campaign.json    # method (f)

Every method trains the same task, the built-in LSTM on `scenario=bench` (30 epochs a trial,
no early stopping, so epochs are the fidelity), over the space of conf/search/tpe.yaml (the
same as random.yaml), N trials, on 2 local workers, once per seed:

  random      python -m sweeper +search=random scenario=bench search.n_trials=N search.seed=S
              cluster=local cluster.max_parallel=2 hydra.sweep.dir=DIR
  tpe+asha    the same with +search=tpe search.pruner.type=successive_halving
              +search.pruner.min_resource=2 +search.pruner.reduction_factor=3
  tpe         +search=tpe (no pruning)
  random+asha +search=random with the same pruner
  campaign    (f) the staged campaign, conf/campaign/bench.yaml (hybrid.yaml's shape scaled to
              scenario=bench, the same space): python -m sweeper +campaign=bench scenario=bench
              campaign.seed=S cluster=local cluster.max_parallel=2 hydra.sweep.dir=DIR; it holds
              out data.test_fraction=0.15 as a test split, so pass --test-fraction 0.15 to give
              the other methods the same validation split (and a test_loss: their best config
              trained once on train+validation with data.use_test=true, as the campaign's final)
  peer        hydra-optuna-sweeper (TPE, same seed, n_startup_trials and multivariate as
              tpe.yaml, n_trials=N, n_jobs=2) with hydra-joblib-launcher (2 jobs), installed into
              its own venv under the temp dir; a generated Hydra app composes conf/base.yaml's
              keys + scenario=bench and calls sweeper.tasks.lstm.train(cfg), returning val_loss

Each sweeper sweep is merged (`python -m sweeper merge DIR`); epochs trained is the sum of the
rows' `epochs_run` (pruned rows count the epochs they ran), the best val_loss is the best
completed (full 30-epoch) trial's; the campaign's is the best completed trial of its search and
narrow stages (any epoch budget; its 30-epoch best and CV mean are kept too), its epochs are
every stage's, the trace runs over its stages in order. Prints a table (median [IQR] over seeds), writes the raw
numbers as JSON and one figure (best val_loss against cumulative epochs, median over seeds)
beside it. The Hartmann-6 simulation (scripts/mf_hartmann.py) runs first unless
--skip-hartmann. Target: tpe+asha reaches random's median best with >= 60% fewer epochs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import mf_hartmann  # noqa: E402  (a sibling script, not a package)

SWEEPER_METHODS = ("random", "tpe+asha", "tpe", "random+asha")
METHODS = (*SWEEPER_METHODS, "peer", "campaign")
PEER_PINS = ["hydra-core==1.3.8", "hydra-optuna-sweeper==1.3.0", "torch==2.13.0"]
JOBLIB_PIN = "hydra-joblib-launcher==1.2.0"
# keys of the composed config that are not the task's: they differ between the tools
NOT_TASK = ("search", "cluster", "report", "tracking", "cluster_overrides", "hydra")


@dataclass
class Sweep:
    """One method, one seed: what it trained and what it reached."""

    method: str
    seed: int
    wall_s: float
    epochs: int = 0
    best: float = float("inf")
    completed: int = 0
    pruned: int = 0
    failed: int = 0
    # (cumulative epochs, best completed val_loss so far), in the order trials finished
    trace: list[tuple[int, float]] = field(default_factory=list)
    note: str = ""
    # --test-fraction / campaign: the test loss of the chosen config, trained on train+val
    test_loss: float | None = None
    # campaign: best of its full-length trials, best CV mean, epochs per stage
    best_full: float | None = None
    cv_mean: float | None = None
    stages: list[dict[str, Any]] = field(default_factory=list)


def sweeper_overrides(method: str, args: argparse.Namespace, seed: int, sweep_dir: Path) -> list[str]:
    search = "tpe" if method.startswith("tpe") else "random"
    out = [f"+search={search}", "scenario=bench", f"search.n_trials={args.trials}",
           f"search.seed={seed}", "cluster=local", "cluster.max_parallel=2",
           f"hydra.sweep.dir={sweep_dir}", *args.extra, *split_overrides(args)]
    if method.endswith("+asha"):
        out += ["search.pruner.type=successive_halving",
                f"+search.pruner.min_resource={args.min_resource}",
                f"+search.pruner.reduction_factor={args.reduction_factor}"]
    return out


def split_overrides(args: argparse.Namespace) -> list[str]:
    return [] if args.test_fraction is None else [f"data.test_fraction={args.test_fraction}"]


def trace_of(rows: list[dict[str, Any]], epochs_full: int) -> tuple[list[tuple[int, float]], float, int]:
    """Rows in (stage, finishing) order -> (cumulative epochs, best full-length val_loss so far).
    Rows with scored=False (a campaign's CV and final trials) count their epochs only."""
    trace, total, best = [], 0, float("inf")
    for r in sorted(rows, key=lambda r: (r.get("stage", 0), r["finished"])):
        total += int(r["epochs"])
        if (r["status"] == "completed" and r["epochs"] >= epochs_full and r.get("val_loss") is not None
                and r.get("scored", True)):
            best = min(best, float(r["val_loss"]))
        trace.append((total, best))
    return trace, best, total


def launch(cmd: list[str], sweep_dir: Path, reuse: bool, done: Path) -> float:
    """Run a sweeper command into sweep_dir and return its wall time; with --reuse, a dir that
    already holds `done` and a `wall_s` file (an earlier run) is read instead of rerun."""
    if reuse and done.exists() and (sweep_dir / "wall_s").exists():
        return float((sweep_dir / "wall_s").read_text())
    shutil.rmtree(sweep_dir, ignore_errors=True)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode not in (0, 1):  # 1: some trials failed, still a result
        raise SystemExit(f"{' '.join(cmd)}\nexited {r.returncode}:\n{r.stderr[-3000:]}")
    (sweep_dir / "wall_s").write_text(f"{wall:.2f}\n")
    return wall


def read_rows(sweep_dir: Path, stage: int = 0, scored: bool = True) -> list[dict[str, Any]]:
    subprocess.run([sys.executable, "-m", "sweeper", "merge", str(sweep_dir)], cwd=ROOT,
                   check=True, capture_output=True)
    import pyarrow.parquet as pq

    return [{**t, "stage": stage, "scored": scored,
             "epochs": t.get("epochs_run") if t.get("epochs_run") is not None
             else len(t.get("curve") or []),
             "finished": t["finished_at"].timestamp() if t.get("finished_at") else 0.0}
            for t in pq.read_table(sweep_dir / "results.parquet").to_pylist()]


def count(sweep: Sweep, rows: list[dict[str, Any]]) -> None:
    for status in ("completed", "pruned", "failed"):
        setattr(sweep, status, sum(t["status"] == status for t in rows))


def run_sweeper(method: str, args: argparse.Namespace, seed: int, work: Path) -> Sweep:
    sweep_dir = work / f"{method.replace('+', '-')}-s{seed}"
    cmd = [sys.executable, "-m", "sweeper", *sweeper_overrides(method, args, seed, sweep_dir)]
    wall = launch(cmd, sweep_dir, args.reuse, sweep_dir / "trials.parquet")
    rows = read_rows(sweep_dir)
    sweep = Sweep(method, seed, wall)
    sweep.trace, sweep.best, sweep.epochs = trace_of(rows, args.epochs)
    count(sweep, rows)
    if rows:
        sweep.note = rows[0]["config_yaml"]  # the task config, for the peer's check
    if args.test_fraction is not None:
        sweep.test_loss = best_test_loss(rows, args, sweep_dir / "best-test")
    return sweep


def best_test_loss(rows: list[dict[str, Any]], args: argparse.Namespace, run_dir: Path) -> float | None:
    """The best full-length config of a sweep trained once on train+validation for the same
    epochs (data.use_test=true, as a campaign's final stage) and scored on the test split."""
    done = [r for r in rows if r["status"] == "completed" and r["epochs"] >= args.epochs
            and r.get("val_loss") is not None]
    if not done:
        return None
    best = min(done, key=lambda r: r["val_loss"])
    if args.reuse and (run_dir / "test_loss").exists():
        return float((run_dir / "test_loss").read_text())
    keys = list(peer_params())  # conf/search/tpe.yaml's space = the searched keys
    cmd = [sys.executable, "-m", "sweeper", "scenario=bench", *split_overrides(args),
           "data.use_test=true", f"training.epochs={args.epochs}", f"seed={best['seed']}",
           *[f"{k}={best[k]}" for k in keys], *args.extra, f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # as a sweep's trial
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    found = re.findall(r"test_loss=([-+0-9.eE]+|nan|inf)", r.stdout + r.stderr)
    if r.returncode != 0 or not found:
        print(f"[bench] no test_loss from {' '.join(cmd)}:\n{(r.stdout + r.stderr)[-1500:]}")
        return None
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "test_loss").write_text(found[-1] + "\n")
    return float(found[-1])


def run_campaign(args: argparse.Namespace, seed: int, work: Path) -> Sweep:
    """(f): the staged campaign; epochs over all its stages, best val_loss over its search and
    narrow stages, test_loss from its final stage (CAMPAIGN_DIR/summary.yaml)."""
    from omegaconf import OmegaConf

    sweep_dir = work / f"campaign-s{seed}"
    cmd = [sys.executable, "-m", "sweeper", f"+campaign={args.campaign}", "scenario=bench",
           f"campaign.seed={seed}", "cluster=local", "cluster.max_parallel=2",
           f"hydra.sweep.dir={sweep_dir}", *args.extra]
    wall = launch(cmd, sweep_dir, args.reuse, sweep_dir / "summary.yaml")
    summary = OmegaConf.to_container(OmegaConf.load(sweep_dir / "summary.yaml"))
    rows: list[dict[str, Any]] = []
    for st in summary["stages"]:  # type: ignore[index]
        stage_dir = sweep_dir / f"stage-{st['stage']}-{st['name']}"
        if (stage_dir / "trials.parquet").exists():
            rows += read_rows(stage_dir, int(st["stage"]), st["kind"] in ("search", "narrow"))
    sweep = Sweep("campaign", seed, wall)
    sweep.trace, sweep.best, sweep.epochs = trace_of(rows, 0)
    _, full, _ = trace_of(rows, args.epochs)
    sweep.best_full = full if np.isfinite(full) else None
    count(sweep, rows)
    sweep.stages = [{k: st[k] for k in ("name", "kind", "trials", "epochs")}
                    for st in summary["stages"]]  # type: ignore[index]
    final = summary.get("final") or {}  # type: ignore[union-attr]
    sweep.test_loss = final.get("test_loss")
    cv = sweep_dir / "cv.csv"
    if cv.exists():
        import pandas as pd

        sweep.cv_mean = float(pd.read_csv(cv).iloc[0]["val_loss_mean"])
    if sweep.epochs != summary["total_epochs"]:  # type: ignore[index]
        print(f"[bench] campaign seed {seed}: {sweep.epochs} epochs in rows, "
              f"{summary['total_epochs']} in summary.yaml")  # type: ignore[index]
    return sweep


# ---------------------------------------------------------------- the peer: hydra-optuna-sweeper

PEER_APP = '''
import json, os, time
import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg):
    from sweeper.tasks.lstm import train

    started = time.time()
    out = train(cfg)
    row = {"job": HydraConfig.get().job.num, "started": started, "finished": time.time(),
           **out, "config": OmegaConf.to_container(cfg, resolve=True)}
    with open(os.path.join(HydraConfig.get().runtime.output_dir, "result.json"), "w") as f:
        json.dump(row, f)
    return out["val_loss"]


if __name__ == "__main__":
    main()
'''


def peer_venv(work: Path) -> tuple[Path, bool]:
    """hydra-optuna-sweeper in its own venv, as a Hydra user installs it; True when
    hydra-joblib-launcher is there too (else Hydra's basic launcher runs the jobs one by one)."""
    venv = Path(tempfile.gettempdir()) / "sweeper-bench-hos-venv"
    py = venv / "bin" / "python"
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    if not py.exists():
        print(f"[peer] installing {', '.join(PEER_PINS)}, {JOBLIB_PIN} into {venv}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=clean)
        pip = [str(venv / "bin" / "pip"), "install", "-q", "-c", str(ROOT / "constraints.txt")]
        if subprocess.run([*pip, *PEER_PINS, JOBLIB_PIN], env=clean,
                          capture_output=True).returncode != 0:
            subprocess.run([*pip, *PEER_PINS], env=clean, check=True, capture_output=True)
    joblib = subprocess.run([str(py), "-c", "import hydra_plugins.hydra_joblib_launcher"],
                            env=clean, capture_output=True).returncode == 0
    return py, joblib


def peer_params() -> dict[str, str]:
    """conf/search/tpe.yaml's space in hydra-optuna-sweeper's override grammar."""
    from omegaconf import OmegaConf

    space = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "search" / "tpe.yaml").search.space)
    out = {}
    for key, spec in space.items():  # type: ignore[union-attr]
        if isinstance(spec, list):
            out[key] = f"choice({','.join(map(str, spec))})"
        elif spec["type"] == "loguniform":
            out[key] = f"tag(log,interval({float(spec['low'])},{float(spec['high'])}))"
        elif spec["type"] == "uniform":
            out[key] = f"interval({float(spec['low'])},{float(spec['high'])})"
        elif spec["type"] == "int" and not spec.get("log"):  # the plugin's range includes high
            out[key] = f"range({spec['low']},{spec['high']},{spec.get('step', 1)})"
        else:
            raise SystemExit(f"no peer translation for {key}: {spec}")
    return out


def write_peer_app(app: Path, joblib: bool) -> None:
    from omegaconf import OmegaConf

    base = OmegaConf.load(ROOT / "conf" / "base.yaml")
    keys = {k: base[k] for k in base if k not in ("defaults", *NOT_TASK)}
    tpe = OmegaConf.load(ROOT / "conf" / "search" / "tpe.yaml").search.sampler
    defaults = ["_self_", {"scenario": "bench"}, {"override hydra/sweeper": "optuna"},
                {"override hydra/sweeper/sampler": "tpe"}]
    hydra: dict[str, Any] = {
        "mode": "MULTIRUN",
        "searchpath": [f"file://{ROOT / 'conf'}"],
        "sweeper": {"direction": "minimize", "n_jobs": 2, "max_failure_rate": 1.0,
                    "sampler": {"n_startup_trials": int(tpe.n_startup_trials),
                                "multivariate": bool(tpe.multivariate)},
                    "params": peer_params()},
    }
    if joblib:
        defaults.append({"override hydra/launcher": "joblib"})
        hydra["launcher"] = {"n_jobs": 2}
    conf = OmegaConf.create({"defaults": defaults, "hydra": hydra, **keys})
    (app / "conf").mkdir(parents=True, exist_ok=True)
    (app / "conf" / "config.yaml").write_text(OmegaConf.to_yaml(conf))
    (app / "app.py").write_text(PEER_APP)


def run_peer(args: argparse.Namespace, seed: int, work: Path, py: Path, joblib: bool) -> Sweep:
    app, sweep_dir = work / "peer-app", work / f"peer-s{seed}"
    if not (app / "app.py").exists():
        write_peer_app(app, joblib)
    shutil.rmtree(sweep_dir, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    # one torch thread a trial, as sweeper's local executor gives each trial
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cmd = [str(py), "app.py", f"hydra.sweeper.n_trials={args.trials}",
           f"hydra.sweeper.sampler.seed={seed}", f"hydra.sweep.dir={sweep_dir}", *args.extra]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=app, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"peer: {' '.join(cmd)}\nexited {r.returncode}:\n{r.stderr[-3000:]}")
    results = [json.loads(p.read_text()) for p in sweep_dir.glob("*/result.json")]
    rows = [{"status": "completed", "val_loss": x["val_loss"], "epochs": x["epochs_run"],
             "finished": x["finished"]} for x in results]
    sweep = Sweep("peer", seed, wall, failed=args.trials - len(results), completed=len(results))
    sweep.trace, sweep.best, sweep.epochs = trace_of(rows, args.epochs)
    if results:
        sweep.note = json.dumps(results[0]["config"])
    return sweep


def task_config_diff(ours_yaml: str, peer_json: str) -> list[str]:
    """Keys where the two tools' trial configs differ, searched keys left out."""
    from omegaconf import OmegaConf

    ours = OmegaConf.create(ours_yaml)
    peer = OmegaConf.create(json.loads(peer_json))
    searched = set(peer_params())
    diffs = []

    def walk(a: Any, b: Any, prefix: str) -> None:
        for key in sorted(set(a) | set(b)):
            name = f"{prefix}{key}"
            if name in searched or (not prefix and key in NOT_TASK):
                continue
            va, vb = a.get(key), b.get(key)
            if OmegaConf.is_dict(va) and OmegaConf.is_dict(vb):
                walk(va, vb, name + ".")
            elif va != vb:
                diffs.append(f"{name}: sweeper {va!r}, peer {vb!r}")

    walk(ours, peer, "")
    return diffs


# ---------------------------------------------------------------- summary, table, figure

def quartiles(values: list[float]) -> list[float]:
    return [float(v) for v in np.percentile(values, [25, 50, 75])] if values else []


def epochs_to_reach(trace: list[tuple[int, float]], target: float) -> int | None:
    return next((e for e, b in trace if b <= target), None)


def summarise(sweeps: list[Sweep]) -> dict[str, dict[str, Any]]:
    random_best = [s.best for s in sweeps if s.method == "random"]
    target = quartiles(random_best)[1] if random_best else None
    out: dict[str, dict[str, Any]] = {}
    for method in METHODS:
        ss = [s for s in sweeps if s.method == method]
        if not ss:
            continue
        reach = [epochs_to_reach(s.trace, target) for s in ss] if target is not None else []
        hit = [float(e) for e in reach if e is not None]
        out[method] = {
            "seeds": len(ss), "epochs": quartiles([s.epochs for s in ss]),
            "best": quartiles([s.best for s in ss]), "wall_s": quartiles([s.wall_s for s in ss]),
            "completed": sum(s.completed for s in ss), "pruned": sum(s.pruned for s in ss),
            "failed": sum(s.failed for s in ss), "target": target, "reached": len(hit),
            "epochs_to_target": quartiles(hit),
            "test_loss": quartiles([s.test_loss for s in ss if s.test_loss is not None]),
            "best_full": quartiles([s.best_full for s in ss if s.best_full is not None]),
            "cv_mean": quartiles([s.cv_mean for s in ss if s.cv_mean is not None]),
        }
    return out


def _q(q: list[float], fmt: str) -> str:
    return f"{q[1]:{fmt}} [{q[0]:{fmt}}, {q[2]:{fmt}}]" if q else "-"


def print_table(summary: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["| method | seeds | epochs trained | best val_loss | epochs to reach random's median "
             "best | test_loss of the chosen config | wall s (2 workers) | trials completed / "
             "pruned / failed |",
             "|---|---|---|---|---|---|---|---|"]
    for method, s in summary.items():
        lines.append(f"| {method} | {s['seeds']} | {_q(s['epochs'], '.0f')} | {_q(s['best'], '.4f')} "
                     f"| {_q(s['epochs_to_target'], '.0f')} ({s['reached']}/{s['seeds']} seeds) | "
                     f"{_q(s.get('test_loss', []), '.4f')} | "
                     f"{_q(s['wall_s'], '.0f')} | {s['completed']} / {s['pruned']} / {s['failed']} |")
    lines += verdict(summary)
    print("\n" + "\n".join(lines), flush=True)
    return lines


def verdict(summary: dict[str, dict[str, Any]]) -> list[str]:
    a, b = summary.get("random"), summary.get("tpe+asha")
    out = []
    if a and b:
        saved = 1.0 - b["epochs"][1] / a["epochs"][1]
        ok = b["best"][1] <= a["best"][1] and saved >= 0.6
        out.append(f"\nTarget (tpe+asha reaches random's median best {a['best'][1]:.4f} with >= 60% "
                   f"fewer epochs): {'met' if ok else 'NOT met'}: median best {b['best'][1]:.4f} with "
                   f"{saved:.0%} fewer epochs ({b['epochs'][1]:.0f} vs {a['epochs'][1]:.0f}).")
    f = summary.get("campaign")
    if a and f:
        saved = 1.0 - f["epochs"][1] / a["epochs"][1]
        ok = f["best"][1] <= a["best"][1] and saved >= 0.6
        out.append(f"Target (campaign: >= 60% fewer epochs than random at an equal or better median "
                   f"best {a['best'][1]:.4f}): {'met' if ok else 'NOT met'}: median best "
                   f"{f['best'][1]:.4f} with {saved:.0%} fewer epochs ({f['epochs'][1]:.0f} vs "
                   f"{a['epochs'][1]:.0f}); its 30-epoch trials' best {_q(f.get('best_full', []), '.4f')}, "
                   f"best CV mean {_q(f.get('cv_mean', []), '.4f')}.")
    e = summary.get("peer")
    if b and e:
        out.append(f"Wall time on 2 workers, same run: tpe+asha median {b['wall_s'][1]:.0f}s, "
                   f"peer (hydra-optuna-sweeper) {e['wall_s'][1]:.0f}s.")
    return out


def _median_curve(traces: list[list[tuple[int, float]]], grid: np.ndarray) -> np.ndarray:
    curves = []
    for t in traces:
        e = np.array([x for x, _ in t])
        b = np.array([y for _, y in t])
        idx = np.searchsorted(e, grid, side="right") - 1
        curves.append(np.where(idx >= 0, b[np.clip(idx, 0, None)], np.inf))
    c = np.array(curves, dtype=float)
    c[~np.isfinite(c)] = np.nan  # before a seed's first completed trial: no best yet
    return c


def figure(sweeps: list[Sweep], hartmann: dict[str, Any] | None, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 1 + (len(hartmann["rank_correlation_first_rung"]) if hartmann else 0)
    rows = 1 if panels == 1 else 2
    cols = -(-panels // rows)
    fig, grid = plt.subplots(rows, cols, figsize=(6.5 * cols, 4.6 * rows), squeeze=False)
    axes = list(grid.flat)
    for ax in axes[panels:]:
        ax.set_visible(False)
    _panel(axes[0], {m: [s.trace for s in sweeps if s.method == m] for m in METHODS},
           title, "epochs trained (cumulative)", "best val_loss (completed trials)", log=True)
    if hartmann:
        for ax, corr in zip(axes[1:panels], hartmann["rank_correlation_first_rung"], strict=True):
            runs = [r for r in hartmann["runs"] if r["correlation"] == corr]
            traces = {m: [[tuple(p) for p in r["trace"]] for r in runs if r["method"] == m]
                      for m in mf_hartmann.METHODS}
            _panel(ax, traces, f"MF-Hartmann-6, {corr} correlation "
                   f"({len(runs) // len(mf_hartmann.METHODS)} seeds)",
                   "steps (cumulative)", "best f at full fidelity", log=False)
            ax.axhline(mf_hartmann.F_OPT, color="grey", lw=0.8, ls=":")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _panel(ax: Any, traces: dict[str, list[list[tuple[int, float]]]], title: str, xlabel: str,
           ylabel: str, log: bool) -> None:
    top = max((t[-1][0] for ts in traces.values() for t in ts if t), default=1)
    grid = np.linspace(1, top, 400)
    for method, ts in traces.items():
        ts = [t for t in ts if t]
        if not ts:
            continue
        c = _median_curve(ts, grid)
        end = np.median([t[-1][0] for t in ts])
        keep = grid <= end
        with warnings.catch_warnings():  # all-NaN columns: no seed has a best yet
            warnings.simplefilter("ignore", RuntimeWarning)
            lo, med, hi = np.nanpercentile(c, [25, 50, 75], axis=0)
        color = f"C{METHODS.index(method)}"
        ax.plot(grid[keep], med[keep], color=color, label=f"{method} ({len(ts)} seeds)")
        ax.fill_between(grid[keep], lo[keep], hi[keep], color=color, alpha=0.15)
    if log:
        ax.set_yscale("log")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)


# ---------------------------------------------------------------- main

def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[2:]))
    ap.add_argument("--seeds", type=int, default=5, help="seeds per method (default 5)")
    ap.add_argument("--trials", type=int, default=20, help="N, trials per sweep (default 20)")
    ap.add_argument("--methods", nargs="+", default=[m for m in METHODS if m != "campaign"],
                    choices=METHODS, help="default: all but campaign (add it by name)")
    ap.add_argument("--min-resource", type=int, default=2, help="SuccessiveHalvingPruner (2)")
    ap.add_argument("--reduction-factor", type=int, default=3, help="SuccessiveHalvingPruner (3)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run, a few minutes: 1 seed, 6 trials of 6 epochs, small Hartmann")
    ap.add_argument("--skip-hartmann", action="store_true", help="no MF-Hartmann simulation")
    ap.add_argument("--hartmann-seeds", type=int, default=20)
    ap.add_argument("--hartmann-trials", type=int, default=100)
    ap.add_argument("--workdir", type=Path, help="sweep dirs go here (default: a new temp dir, kept)")
    ap.add_argument("--test-fraction", type=float, default=None,
                    help="data.test_fraction for the sweeper methods (0.15: the campaign's split), "
                    "and a test_loss for their best config")
    ap.add_argument("--campaign", default="bench", help="conf/campaign/NAME.yaml for 'campaign'")
    ap.add_argument("--reuse", action="store_true", help="read a --workdir sweep dir that "
                    "holds a finished run (and its wall_s file) instead of running it again")
    ap.add_argument("--replot", type=Path, metavar="JSON",
                    help="no runs: print the table and draw the figure of an earlier --out")
    ap.add_argument("--out", type=Path, help="raw numbers as JSON (default "
                    "test-artifacts/bench_adaptive[-quick].json; the figure is beside it, .png)")
    args = ap.parse_args(argv)
    args.epochs, args.extra = 30, []
    if args.quick:
        args.seeds, args.trials, args.epochs = 1, 6, 6
        args.hartmann_seeds, args.hartmann_trials = 3, 30
        args.extra = [f"training.epochs={args.epochs}"]
    suffix = "-quick" if args.quick else ""
    args.out = args.out or ROOT / "test-artifacts" / f"bench_adaptive{suffix}.json"
    if not args.replot:
        args.workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sweeper-bench-adaptive-"))
    return args


def run_hartmann(args: argparse.Namespace) -> dict[str, Any]:
    corrs = ["good", "bad", "terrible"]
    print(f"[hartmann] {args.hartmann_seeds} seeds x {len(mf_hartmann.METHODS)} methods x "
          f"{corrs}, {args.hartmann_trials} trials", flush=True)
    runs, summary = mf_hartmann.run_all(args.hartmann_seeds, args.hartmann_trials, 30,
                                        args.min_resource, args.reduction_factor,
                                        4 * args.hartmann_trials, corrs, jobs=2)
    rhos = {c: mf_hartmann.fidelity_correlation(c, 30, args.min_resource + 1) for c in corrs}
    mf_hartmann.print_table(summary, args.hartmann_trials, 30, rhos)
    return {"rank_correlation_first_rung": rhos, "summary": summary,
            "runs": [asdict(r) for r in runs]}


def replot(path: Path) -> int:
    record = json.loads(path.read_text())
    sweeps = [Sweep(**{**s, "trace": [tuple(p) for p in s["trace"]]}) for s in record["sweeps"]]
    print_table(summarise(sweeps))
    a = record["args"]
    figure(sweeps, record["hartmann"], path.with_suffix(".png"),
           f"LSTM scenario=bench, {a['trials']} trials x {a['epochs']} epochs")
    print(f"figure {path.with_suffix('.png')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.replot:
        return replot(args.replot)
    t0 = time.perf_counter()
    print(f"[bench] sweep dirs: {args.workdir}", flush=True)
    hartmann = None if args.skip_hartmann else run_hartmann(args)
    py, joblib = peer_venv(args.workdir) if "peer" in args.methods else (None, False)
    if py is not None and not joblib:
        print("[peer] hydra-joblib-launcher did not install: Hydra's basic launcher runs the "
              "peer's jobs one at a time", flush=True)
    sweeps: list[Sweep] = []
    for seed in range(args.seeds):
        for method in args.methods:  # interleaved, so a busy machine slows every method alike
            s = (run_peer(args, seed, args.workdir, py, joblib) if method == "peer"
                 else run_campaign(args, seed, args.workdir) if method == "campaign"
                 else run_sweeper(method, args, seed, args.workdir))
            sweeps.append(s)
            print(f"[bench] seed {seed} {method:12s} {s.epochs:5d} epochs  best {s.best:.4f}  "
                  f"{s.completed} completed {s.pruned} pruned {s.failed} failed  {s.wall_s:.0f}s  "
                  f"test {s.test_loss if s.test_loss is not None else '-'}  "
                  f"(total {time.perf_counter() - t0:.0f}s)", flush=True)
    ours = next((s.note for s in sweeps if s.method != "peer" and s.note), None)
    theirs = next((s.note for s in sweeps if s.method == "peer" and s.note), None)
    diffs = task_config_diff(ours, theirs) if ours and theirs else None
    if diffs is not None:
        print("[bench] peer and sweeper trial configs: " + (
            "identical task keys (searched keys aside)" if not diffs else "DIFFER: " + "; ".join(diffs)))
    summary = summarise(sweeps)
    table = print_table(summary)
    if args.quick:
        print("[bench] --quick is a smoke run (1 seed, 6 trials of 6 epochs): not a measurement")
    fig = args.out.with_suffix(".png")
    figure(sweeps, hartmann, fig, f"LSTM scenario=bench, {args.trials} trials x {args.epochs} epochs")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {"args": {k: str(v) for k, v in vars(args).items()}, "joblib_launcher": joblib,
              "config_diff": diffs, "summary": summary, "table": table,
              "sweeps": [{**asdict(s), "note": ""} for s in sweeps], "hartmann": hartmann,
              "seconds": time.perf_counter() - t0}
    args.out.write_text(json.dumps(record, indent=1))
    print(f"[bench] {time.perf_counter() - t0:.0f}s; raw numbers {args.out}; figure {fig}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
