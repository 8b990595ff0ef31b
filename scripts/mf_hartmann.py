"""Multi-fidelity Hartmann-6, and where successive halving helps or misleads: Optuna in process.

    python scripts/mf_hartmann.py [--seeds 20] [--trials 100] [--fidelities 30] [--out FILE]

The function, written from its published formula (Kandasamy et al. 2017, "Multi-fidelity
Bayesian Optimisation with Continuous Approximations", ICML, arXiv:1703.06240, appendix: the
Hartmann weights alpha shifted by a bias that vanishes at the highest fidelity; the log-scaled
fidelity, the noise term and the good/moderate/bad/terrible settings are those of the
MFHartmann6 benchmarks of mf-prior-bench, github.com/automl/mf-prior-bench):

    f(x, z) = - sum_i alpha'_i(z) exp(- sum_j A_ij (x_j - P_ij)^2) + sigma (1 - s(z)) |eps(x, z)|
    alpha'(z) = alpha - b (1 - s(z)),   s(z) = log(z) / log(R),   z = 1..R,   x in [0, 1]^6

with alpha = (1.0, 1.2, 3.0, 3.2) and A, P the usual Hartmann-6 matrices (Surjanovic & Bingham,
Virtual Library of Simulation Experiments, sfu.ca/~ssurjano/hart6.html), eps ~ N(0, 1) fixed per
(x, z, seed). At z = R it is Hartmann-6: minimum -3.32237 at x* = (0.20169, 0.150011, 0.476874,
0.275332, 0.311652, 0.6573). The same bias b on every alpha_i reweights the four basins: at
b = 2 (bad) the low fidelities turn the two shallow basins into bumps and rank points by the
other two, and the noise hides the rest; at b = 3 (terrible) the basin of x* (alpha_3 = 3)
weighs nothing at z = 1, and a neighbour (alpha_4 = 3.2) looks best.

The simulation: for each method and seed one Optuna study, ask/tell; a trial reports
f(x, z) for z = 1..R as ``trial.report(value, step=z - 1)`` (the epoch index, as the sweeper's
task reports it) and stops when ``trial.should_prune()``. Steps stand for epochs. Methods:
random at full budget, TPE (Optuna's TPESampler, n_startup_trials=10, multivariate, as
conf/search/tpe.yaml) with and without SuccessiveHalvingPruner, random with it. Each run asks
``--trials`` trials, then the pruned ones go on asking until they have spent random's whole
budget (trials x R steps) or ``--max-trials``: that gives the quality at the same number of
trials, at the same compute, and the steps it took to reach random's median best.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np

ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
A = np.array([
    [10.0, 3.0, 17.0, 3.5, 1.7, 8.0],
    [0.05, 10.0, 17.0, 0.1, 8.0, 14.0],
    [3.0, 3.5, 1.7, 10.0, 17.0, 8.0],
    [17.0, 8.0, 0.05, 10.0, 0.1, 14.0],
])
P = 1e-4 * np.array([
    [1312, 1696, 5569, 124, 8283, 5886],
    [2329, 4135, 8307, 3736, 1004, 9991],
    [2348, 1451, 3522, 2883, 3047, 6650],
    [4047, 8828, 8732, 5743, 1091, 381],
])
X_OPT = np.array([0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573])
F_OPT = -3.32237
# (bias b, noise sigma) at the lowest fidelity, as mf-prior-bench's MFHartmann presets
CORRELATIONS: dict[str, tuple[float, float]] = {
    "good": (0.5, 0.1), "moderate": (1.0, 0.2), "bad": (2.0, 0.4), "terrible": (3.0, 0.8),
}
METHODS = ("random", "tpe", "tpe+asha", "random+asha")


def _noise(x: np.ndarray, z: int, seed: int) -> np.ndarray:
    """|N(0, 1)| per row of x, the same for the same (x, z, seed) in every process."""
    out = np.empty(len(x))
    for i, row in enumerate(x):
        key = hashlib.blake2b(np.ascontiguousarray(row, dtype=np.float64).tobytes()
                              + z.to_bytes(4, "little"), digest_size=8).digest()
        out[i] = abs(np.random.default_rng([seed, int.from_bytes(key, "little")]).normal())
    return out


def mf_hartmann6(x: np.ndarray, z: int, n_fidelities: int, correlation: str = "good",
                 seed: int = 0) -> np.ndarray | float:
    """f(x, z) for one point (shape (6,): a float) or many (shape (n, 6): an array).

    >>> round(mf_hartmann6(X_OPT, 30, 30), 5)
    -3.32237
    """
    if not 1 <= z <= n_fidelities:
        raise ValueError(f"fidelity z must be in 1..{n_fidelities}, got {z}")
    bias, sigma = CORRELATIONS[correlation]
    pts = np.atleast_2d(np.asarray(x, dtype=np.float64))
    s = np.log(z) / np.log(n_fidelities) if n_fidelities > 1 else 1.0
    alpha = ALPHA - bias * (1.0 - s)
    inner = np.sum(A[None] * (pts[:, None, :] - P[None]) ** 2, axis=-1)  # (n, 4)
    value = -(np.exp(-inner) @ alpha)
    if s < 1.0:
        value = value + sigma * (1.0 - s) * _noise(pts, z, seed)
    return float(value[0]) if np.ndim(x) == 1 else value


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho (no ties expected: continuous values)."""
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


@dataclass
class Run:
    method: str
    correlation: str
    seed: int
    steps_at_n: int = 0              # steps spent by the first n_trials trials
    best_at_n: float = float("inf")  # best full-fidelity value among them
    best_at_budget: float = float("inf")  # best within n_trials * R steps (random's budget)
    trials_at_budget: int = 0
    pruned_at_n: int = 0
    seconds: float = 0.0
    trace: list[tuple[int, float]] = field(default_factory=list)  # (cumulative steps, best so far)


def _study(method: str, seed: int, min_resource: int, reduction_factor: int):  # type: ignore[no-untyped-def]
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if method.startswith("tpe"):
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=10, multivariate=True)
    else:
        sampler = optuna.samplers.RandomSampler(seed=seed)
    pruner = (optuna.pruners.SuccessiveHalvingPruner(min_resource=min_resource,
                                                     reduction_factor=reduction_factor)
              if method.endswith("+asha") else optuna.pruners.NopPruner())
    return optuna.create_study(sampler=sampler, pruner=pruner, direction="minimize")


def simulate(method: str, correlation: str, seed: int, n_trials: int = 100, n_fidelities: int = 30,
             min_resource: int = 2, reduction_factor: int = 3, max_trials: int = 400) -> Run:
    """One study: ask/tell with a report per fidelity step, until n_trials trials and (pruned
    methods) random's budget of n_trials * n_fidelities steps or max_trials trials."""
    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    t0 = time.perf_counter()
    study = _study(method, seed, min_resource, reduction_factor)
    run = Run(method, correlation, seed)
    budget, steps, best, n = n_trials * n_fidelities, 0, float("inf"), 0
    while n < n_trials or (steps < budget and n < max_trials):
        trial = study.ask()
        x = np.array([trial.suggest_float(f"x{i}", 0.0, 1.0) for i in range(6)])
        for z in range(1, n_fidelities + 1):
            value = mf_hartmann6(x, z, n_fidelities, correlation, seed)
            trial.report(value, step=z - 1)
            steps += 1
            if trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                run.pruned_at_n += n < n_trials
                break
        else:
            study.tell(trial, value)
            if steps <= budget:
                best = min(best, value)
        n += 1
        run.trace.append((steps, best))
        if n == n_trials:
            run.steps_at_n, run.best_at_n = steps, best
        if steps <= budget:
            run.best_at_budget, run.trials_at_budget = best, n
    run.seconds = time.perf_counter() - t0
    return run


def _simulate(args: tuple) -> Run:  # type: ignore[type-arg]
    return simulate(*args)


def steps_to_reach(trace: list[tuple[int, float]], target: float) -> int | None:
    """Cumulative steps when the best so far first reached target; None if never."""
    return next((s for s, b in trace if b <= target), None)


def quartiles(values: list[float]) -> tuple[float, float, float]:
    q1, q2, q3 = np.percentile(values, [25, 50, 75])
    return float(q1), float(q2), float(q3)


def summarise(runs: list[Run], correlation: str) -> dict[str, dict[str, object]]:
    """Per method: median and IQR of steps and best at n trials, best at random's budget,
    and the steps each seed took to reach random's median best at n trials."""
    mine = [r for r in runs if r.correlation == correlation]
    target = quartiles([r.best_at_n for r in mine if r.method == "random"])[1]
    out: dict[str, dict[str, object]] = {}
    for method in METHODS:
        rs = [r for r in mine if r.method == method]
        if not rs:
            continue
        reach = [steps_to_reach(r.trace, target) for r in rs]
        hit = [s for s in reach if s is not None]
        out[method] = {
            "seeds": len(rs),
            "steps_at_n": quartiles([r.steps_at_n for r in rs]),
            "best_at_n": quartiles([r.best_at_n for r in rs]),
            "best_at_budget": quartiles([r.best_at_budget for r in rs]),
            "trials_at_budget": quartiles([r.trials_at_budget for r in rs]),
            "pruned_at_n": quartiles([r.pruned_at_n for r in rs]),
            "target": target,
            "reached_target": len(hit),
            "steps_to_target": quartiles([float(s) for s in hit]) if hit else None,
        }
    return out


def fidelity_correlation(correlation: str, n_fidelities: int, z: int, n_points: int = 2000,
                         seed: int = 0) -> float:
    """Spearman's rho between f(., z) and f(., R) over uniform random points."""
    pts = np.random.default_rng(seed).random((n_points, 6))
    low = mf_hartmann6(pts, z, n_fidelities, correlation, seed)
    high = mf_hartmann6(pts, n_fidelities, n_fidelities, correlation, seed)
    return rank_correlation(np.asarray(low), np.asarray(high))


def _fmt(q: tuple[float, float, float] | None, digits: int = 3) -> str:
    if q is None:
        return "-"
    return f"{q[1]:.{digits}f} [{q[0]:.{digits}f}, {q[2]:.{digits}f}]"


def print_table(summary: dict[str, dict[str, dict[str, object]]], n_trials: int,
                n_fidelities: int, rhos: dict[str, float]) -> None:
    budget = n_trials * n_fidelities
    for corr, methods in summary.items():
        first = next(iter(methods.values()))
        print(f"\nMF-Hartmann-6, {corr} correlation (Spearman rho of the first rung with z=R: "
              f"{rhos[corr]:.2f}); median [IQR] over {first['seeds']} seeds; target = random's "
              f"median best at {n_trials} trials = {first['target']:.3f}")
        print(f"| method | steps for {n_trials} trials | best at {n_trials} trials | best within "
              f"{budget} steps (trials) | seeds reaching target | steps to target |")
        print("|---|---|---|---|---|---|")
        for method, s in methods.items():
            print(f"| {method} | {_fmt(s['steps_at_n'], 0)} | {_fmt(s['best_at_n'])} | "  # type: ignore[arg-type]
                  f"{_fmt(s['best_at_budget'])} ({s['trials_at_budget'][1]:.0f}) | "  # type: ignore[arg-type,index]
                  f"{s['reached_target']}/{s['seeds']} | {_fmt(s['steps_to_target'], 0)} |")  # type: ignore[arg-type]


def run_all(seeds: int, n_trials: int, n_fidelities: int, min_resource: int,
            reduction_factor: int, max_trials: int, correlations: list[str], jobs: int,
            progress: bool = True) -> tuple[list[Run], dict[str, dict[str, dict[str, object]]]]:
    tasks = [(m, c, s, n_trials, n_fidelities, min_resource, reduction_factor, max_trials)
             for c in correlations for m in METHODS for s in range(seeds)]
    runs: list[Run] = []
    t0 = time.perf_counter()
    with get_context("fork").Pool(jobs) as pool:
        for run in pool.imap_unordered(_simulate, tasks):
            runs.append(run)
            if progress and len(runs) % max(1, len(tasks) // 10) == 0:
                print(f"[mf-hartmann] {len(runs)}/{len(tasks)} runs, {time.perf_counter() - t0:.0f}s",
                      flush=True)
    runs.sort(key=lambda r: (r.correlation, METHODS.index(r.method), r.seed))
    return runs, {c: summarise(runs, c) for c in correlations}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[2:]))
    ap.add_argument("--seeds", type=int, default=20, help="seeds per method (default 20)")
    ap.add_argument("--trials", type=int, default=100, help="trials per run (default 100)")
    ap.add_argument("--fidelities", type=int, default=30, help="R, steps of a full trial (30)")
    ap.add_argument("--min-resource", type=int, default=2, help="SuccessiveHalvingPruner (2)")
    ap.add_argument("--reduction-factor", type=int, default=3, help="SuccessiveHalvingPruner (3)")
    ap.add_argument("--max-trials", type=int, default=400,
                    help="pruned methods stop asking here even under random's budget (400)")
    ap.add_argument("--correlation", nargs="+", default=["good", "bad"], choices=CORRELATIONS)
    ap.add_argument("--jobs", type=int, default=2, help="processes (default 2)")
    ap.add_argument("--out", type=Path, help="write the raw numbers here as JSON")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    runs, summary = run_all(args.seeds, args.trials, args.fidelities, args.min_resource,
                            args.reduction_factor, args.max_trials, args.correlation, args.jobs)
    first_rung = args.min_resource + 1  # the fidelity at the first rung (step min_resource)
    rhos = {c: fidelity_correlation(c, args.fidelities, first_rung) for c in args.correlation}
    print_table(summary, args.trials, args.fidelities, rhos)
    print(f"\n{len(runs)} runs in {time.perf_counter() - t0:.0f}s; pruner: "
          f"SuccessiveHalvingPruner(min_resource={args.min_resource}, "
          f"reduction_factor={args.reduction_factor}); steps stand for epochs")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"args": {k: v for k, v in vars(args).items() if k != "out"},
                                        "rank_correlation_first_rung": rhos, "summary": summary,
                                        "runs": [asdict(r) for r in runs]}, indent=1))
        print(f"raw numbers: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
