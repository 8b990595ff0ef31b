"""Growing a sweep's budget: ``sweeper resume DIR --n-trials N``.

Random and Sobol draws are prefix-stable (one seeded stream), so growing a random or qmc sweep
appends the stream's next points as new rows, with ids that continue; the first trials never
change and no point repeats in a finite space. An adaptive sweep (tpe, gp, cmaes) grows by
raising its budget: the same study goes on, asking for the new trials. A grid is fixed by its
space, so it cannot grow.
"""

from __future__ import annotations

import os
import subprocess
import sys

from sweeper.errors import ConfigError
from sweeper.paths import SweepPaths
from sweeper.record import SweepRecord

__all__ = ["grow"]


def grow(paths: SweepPaths, record: SweepRecord, n_trials: int) -> SweepRecord:
    """Append rows until the trial table holds ``n_trials``; returns the updated record.

    It plans the sweep again, as its own command did, with the larger budget: the config is
    composed afresh and must give the same sweep (the fingerprint leaves the budget out), so
    a config that changed since is refused rather than mixed in.
    """
    from sweeper.trials import trial_ids

    method = record.search.method
    if record.search.adaptive:
        return _raise_budget(paths, record, n_trials)
    if method not in ("random", "qmc"):
        raise ConfigError(
            f"--n-trials grows random, qmc and adaptive sweeps, and this one is {method}: a grid "
            "is fixed by its space; plan a wider space into a new dir with "
            "hydra.sweep.dir=<new path>")
    held = len(trial_ids(paths))
    if n_trials <= held:
        raise ConfigError(f"--n-trials {n_trials} does not grow the sweep: it holds {held} "
                          f"trials already; ask for more, e.g. --n-trials {held * 2}")
    _replan(paths, record, n_trials)
    print(f"[sweeper] grew {paths.root} from {held} to {len(trial_ids(paths))} trials",
          file=sys.stderr)
    return SweepRecord.load(paths)


def _raise_budget(paths: SweepPaths, record: SweepRecord, n_trials: int) -> SweepRecord:
    """An adaptive sweep's study goes on to ``n_trials``: only the budget in sweep.yaml grows."""
    import dataclasses

    from sweeper.locks import dir_lock

    with dir_lock(paths.lock, "the sweep dir", timeout_s=60):
        record = SweepRecord.load(paths)
        held = int(record.search.n_trials or 0)
        if n_trials <= held:
            raise ConfigError(f"--n-trials {n_trials} does not grow the sweep: its budget is "
                              f"{held} trials already; ask for more, e.g. --n-trials {held * 2}")
        record = record.replace(search=dataclasses.replace(record.search, n_trials=n_trials))
        record.save(paths)
    print(f"[sweeper] the study of {paths.root} goes on from {held} to {n_trials} trials",
          file=sys.stderr)
    return record


def _replan(paths: SweepPaths, record: SweepRecord, n_trials: int) -> None:
    """``sweeper plan`` with the sweep's own command, from its own directory, in a child
    process (an argument list: no value passes through a shell)."""
    from sweeper.space import quote

    argv = [sys.executable, "-m", "sweeper", "plan", *record.command,
            f"search.n_trials={n_trials}", f"hydra.sweep.dir={quote(str(paths.root))}"]
    if record.config_name:
        argv += ["--config-name", record.config_name]
    env = dict(os.environ, SWEEPER_TASK_FALLBACK=record.variants[0].task_fn)
    if record.config_dir:
        env["SWEEPER_CONFIG_DIR"] = record.config_dir
    code = subprocess.run(argv, cwd=record.cwd, env=env, stdout=sys.stderr, check=False).returncode
    if code != 0:
        raise ConfigError(f"could not grow {paths.root}: planning it again failed (above)")
