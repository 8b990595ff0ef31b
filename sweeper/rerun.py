"""``sweeper rerun DIR ID``: run one trial again from its frozen config, and compare.

The rerun takes the runner's own path (:func:`sweeper.runner.run_one`: the frozen config,
the trial's seed through ``seed_everything``, the task loaded by reference) in this process,
into a scratch sweep dir, so the sweep's own results, markers and checkpoints are never
touched. Its metrics are then compared with the trial's row: the reproducibility check.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweeper.errors import ConfigError, SweepDirError
from sweeper.paths import SweepPaths
from sweeper.record import SweepRecord
from sweeper.state import TrialState

__all__ = ["MetricDiff", "compare", "is_timing", "original_row", "rerun", "rerun_trial",
           "scratch_dir", "sweep_threads"]


@dataclass(frozen=True)
class MetricDiff:
    """One metric of the trial, as first run and as run again."""

    name: str
    original: float | None
    rerun: float | None
    compared: bool = True  # timings are shown, never compared: they differ on every run

    @property
    def abs_diff(self) -> float | None:
        if self.original is None or self.rerun is None:
            return None
        return abs(self.rerun - self.original)

    def agrees(self, rtol: float) -> bool:
        """Equal within ``rtol`` of the larger magnitude (NaN agrees with NaN only).

        >>> MetricDiff("val_loss", 0.5, 0.5 + 1e-9).agrees(1e-6)
        True
        >>> MetricDiff("val_loss", 0.5, 0.51).agrees(1e-6)
        False
        """
        a, b = self.original, self.rerun
        if a is None or b is None:
            return a is b
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return abs(a - b) <= rtol * max(abs(a), abs(b))


def is_timing(name: str) -> bool:
    """Wall-clock metrics (``*_s``, ``*time*``) change on every run, so they are not compared.

    >>> is_timing("train_time_s"), is_timing("val_loss")
    (True, False)
    """
    return name.endswith(("_s", "_sec", "_seconds")) or "time" in name


def _metric_names(row: Mapping[str, Any], params: Sequence[str]) -> list[str]:
    from sweeper.trials import RESERVED_COLUMNS

    return [k for k, v in row.items() if k not in RESERVED_COLUMNS and k not in params
            and isinstance(v, (int, float)) and not isinstance(v, bool)]


def compare(original: Mapping[str, Any], again: Mapping[str, Any],
            params: Sequence[str]) -> list[MetricDiff]:
    """Every metric of either row, original first; timings marked as not compared."""
    names = list(dict.fromkeys(_metric_names(original, params) + _metric_names(again, params)))
    return [MetricDiff(n, _float(original.get(n)), _float(again.get(n)), not is_timing(n))
            for n in names]


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _valid_ids(paths: SweepPaths, trial_id: int) -> None:
    from sweeper.trials import read_trials, trial_ids

    if read_trials(paths, [trial_id]).num_rows:  # a damaged table is a SweepDirError here
        return
    ids = trial_ids(paths)
    where = f"valid ids are {min(ids)}..{max(ids)}" if ids else "it has no trials"
    raise ConfigError(f"trial id {trial_id} is not in the sweep {paths.root}: {where}; "
                      "pass one of them")


def original_row(paths: SweepPaths, trial_id: int) -> dict[str, Any]:
    """The trial's completed result row; any other case is a ConfigError with the fix."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sweeper.console import shell_path

    _valid_ids(paths, trial_id)
    path = paths.result(trial_id)
    if not path.is_file():
        raise ConfigError(f"trial {trial_id} has no result yet ({path} does not exist); run it "
                          f"first: sweeper resume {shell_path(paths.root)}")
    try:
        row: dict[str, Any] = pq.read_table(path).to_pylist()[0]
    except (OSError, pa.ArrowException, IndexError) as ex:
        raise SweepDirError(f"{path} is unreadable ({str(ex).splitlines()[0] if str(ex) else ex!r}); "
                            f"run the trial again: sweeper resume {shell_path(paths.root)}") from None
    if row.get("status") != TrialState.COMPLETED.value:
        raise ConfigError(f"trial {trial_id} ended {row.get('status')}, not completed, so it has "
                          "no metrics to reproduce; pick a completed trial (sweeper merge DIR lists them)")
    return row


def scratch_dir(paths: SweepPaths, trial_id: int, out: Path | None) -> SweepPaths:
    """A fresh dir for the rerun: ``out``, or ``DIR/rerun/trial-NNNNNN-<time>-<random>/``."""
    base = out if out is not None else paths.root / "rerun"
    try:
        base.mkdir(parents=True, exist_ok=True)
        if out is None:
            stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            base = Path(tempfile.mkdtemp(prefix=f"trial-{trial_id:06d}-{stamp}-", dir=base))
    except OSError as ex:
        raise ConfigError(f"cannot write the rerun dir {base} ({ex.strerror or ex}); pass "
                          "--out DIR to rerun into a dir you can write") from None
    scratch = SweepPaths(base)
    if scratch.result(trial_id).exists():
        raise ConfigError(f"{base} already holds a rerun of trial {trial_id}; pass a fresh "
                          "--out dir (a settled row is never run again)")
    return scratch


def sweep_threads(record: SweepRecord) -> int:
    """The CPU threads each of the sweep's trials had (on this machine, for a local sweep)."""
    if record.executor == "slurm":
        return int(record.cluster.cpus_per_task)
    from sweeper.executors.local import LocalExecutor

    cluster = record.cluster
    return LocalExecutor(cluster.max_parallel, cluster.cpus_per_trial,
                         cluster.trials_per_gpu).cpus_per_trial


@contextlib.contextmanager
def _as_the_sweep_ran(record: SweepRecord, threads: int) -> Iterator[None]:
    """The sweep's cwd (tasks read files relative to it; the SLURM job side does the same)
    and its thread count (CPU float sums depend on it), restored afterwards."""
    before_cwd, before_env = os.getcwd(), os.environ.get("SWEEPER_CPUS_PER_TRIAL")
    cwd = record.cwd if record.cwd and Path(record.cwd).is_dir() else before_cwd
    os.environ["SWEEPER_CPUS_PER_TRIAL"] = str(threads)
    sys.path.insert(0, cwd)
    os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(before_cwd)
        with contextlib.suppress(ValueError):
            sys.path.remove(cwd)
        if before_env is None:
            os.environ.pop("SWEEPER_CPUS_PER_TRIAL", None)
        else:
            os.environ["SWEEPER_CPUS_PER_TRIAL"] = before_env


def rerun_trial(paths: SweepPaths, record: SweepRecord, trial_id: int, scratch: SweepPaths,
                threads: int) -> dict[str, Any]:
    """Run the trial again into ``scratch`` through the runner; its new result row."""
    import pyarrow.parquet as pq

    from sweeper.runner import StopGuard, run_one
    from sweeper.trials import read_trials

    with _as_the_sweep_ran(record, threads):
        state = run_one(scratch, record, read_trials(paths, [trial_id]), StopGuard())
    if state is TrialState.CANCELLED:
        raise KeyboardInterrupt  # Ctrl-C reached the task: the CLI exits 130
    if not scratch.result(trial_id).is_file():
        raise SweepDirError(f"the rerun of trial {trial_id} wrote no row in {scratch.root}; "
                            "see the message above")
    row: dict[str, Any] = pq.read_table(scratch.result(trial_id)).to_pylist()[0]
    return row


def _show(diffs: Sequence[MetricDiff], rtol: float) -> None:
    from rich.table import Table

    from sweeper.console import fmt, out

    table = Table(title=f"metrics, original vs rerun (rtol={rtol:g})")
    for name in ("metric", "original", "rerun", "abs diff", ""):
        table.add_column(name)
    for d in diffs:
        verdict = "not compared (timing)" if not d.compared else \
            "ok" if d.agrees(rtol) else "DIFFERS"
        table.add_row(d.name, fmt(d.original), fmt(d.rerun), fmt(d.abs_diff), verdict)
    out.print(table)


def _check_options(rtol: float, threads: int | None) -> None:
    if not rtol >= 0:
        raise ConfigError(f"--rtol must be >= 0, got {rtol}; e.g. --rtol 1e-6")
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {threads}; e.g. --threads 1")


def rerun(root: Path, trial_id: int, out: Path | None = None, rtol: float = 1e-6,
          threads: int | None = None) -> int:
    """Rerun trial ``trial_id`` of the sweep in ``root`` and compare: 0 when every compared
    metric agrees within ``rtol`` (and the rerun completed), else 1."""
    from sweeper.console import err
    from sweeper.console import out as stdout

    _check_options(rtol, threads)
    paths = SweepPaths(root)
    record = SweepRecord.load(paths)
    original = original_row(paths, trial_id)
    scratch = scratch_dir(paths, trial_id, out)
    threads = threads or sweep_threads(record)
    err.print(f"[sweeper] rerunning trial {trial_id} (seed {original['seed']}, {threads} CPU "
              f"thread(s)) into {scratch.root}; the sweep's own results are not touched")
    again = rerun_trial(paths, record, trial_id, scratch, threads)
    completed = again.get("status") == TrialState.COMPLETED.value
    if not completed:
        err.print(f"[sweeper] the rerun ended {again.get('status')}: {again.get('error')}")
    diffs = compare(original, again, record.param_keys)
    _show(diffs, rtol)
    differing = [d.name for d in diffs if d.compared and not d.agrees(rtol)]
    if completed and not differing:
        stdout.print(f"reproduced: {sum(d.compared for d in diffs)} metric(s) within rtol={rtol:g}")
        return 0
    stdout.print(f"differs: {', '.join(differing) or 'the status'} (rtol={rtol:g}); the rerun "
                 f"is in {scratch.root}")
    return 1
