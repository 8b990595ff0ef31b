"""The SLURM backend's parts that need no cluster: the status rules (``classify``), how arrays
are split and chained, launch records, the rendered sbatch script (a golden file), and the
messages when SLURM's commands are missing or submitit's private API changed.

Regenerate the golden file after an intended change with
``SWEEPER_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_status_rules.py -k golden``.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from sweeper.attempts import AttemptMarker, process_start
from sweeper.executors.slurm.executor import SlurmExecutor, chains
from sweeper.executors.slurm.queue import Queued
from sweeper.executors.slurm.records import (
    ArrayRecord,
    Launch,
    assignments,
    compress_ids,
    expand_ids,
)
from sweeper.paths import SweepPaths
from sweeper.schema import ClusterConf
from sweeper.state import TrialState as S
from sweeper.status import Facts, RowFacts, classify

NOW = 1_000_000.0
OLD_SUB, NEW_SUB = NOW - 1000, NOW - 100  # the first launch, and a resume's
OLD, NEW = "100_0", "200_0"  # the trial's element in each
GRACE = 30.0


def row(state: S, attempt: int = 1, element: str | None = OLD, at: float = OLD_SUB + 50) -> RowFacts:
    return RowFacts(state, attempt, element, at)


def slurm_marker(attempt: int, element: str | None, started: float) -> AttemptMarker:
    return AttemptMarker(0, attempt, "node-1", 4242, "123", element, started)


def local_marker(alive: bool) -> AttemptMarker:
    pid = os.getpid()
    start = process_start(pid) if alive else "no such start"
    return AttemptMarker(0, 1, socket.gethostname(), pid, start, None, NOW - 5)


def running(since: float) -> Queued:
    return Queued("RUNNING", since)


PENDING_Q = Queued("PENDING")
FAILED_1 = row(S.FAILED)  # the first attempt failed, in the first launch
TIMED_OUT = row(S.TIMEOUT, element=NEW, at=NEW_SUB + 60)  # stopped at the limit, no checkpoint


def rerun(**kw) -> Facts:
    """A failed trial run again by `resume --retry-failed` in element NEW."""
    base = dict(row=FAILED_1, marker=slurm_marker(1, OLD, OLD_SUB + 10), element=NEW,
                submitted_at=NEW_SUB)
    return Facts(**{**base, **kw})


def requeued(**kw) -> Facts:
    """Element NEW ran attempt 1, which timed out without a checkpoint; the task requeues."""
    base = dict(row=TIMED_OUT, marker=slurm_marker(1, NEW, NEW_SUB + 5), element=NEW,
                submitted_at=NEW_SUB)
    return Facts(**{**base, **kw})


def gone(**kw) -> Facts:
    """Element NEW left the queue without a row."""
    base = dict(marker=slurm_marker(1, NEW, NEW_SUB + 5), element=NEW, submitted_at=OLD_SUB)
    return Facts(**{**base, **kw})


CASES: dict[str, tuple[Facts, S]] = {
    # A rerun of a failed trial: the old row must never stand for it.
    "rerun, its element waits": (rerun(queued=PENDING_Q), S.PENDING),
    "rerun, its task starts, no marker yet": (rerun(queued=running(NOW - 3)), S.PENDING),
    "rerun, its new attempt runs": (
        rerun(queued=running(NOW - 10), marker=slurm_marker(2, NEW, NOW - 8)), S.RUNNING),
    "rerun, failed again": (
        rerun(row=row(S.FAILED, 2, NEW, NOW - 5), marker=slurm_marker(2, NEW, NOW - 8)), S.FAILED),
    "rerun, an old row just before the launch is still old": (
        rerun(row=row(S.FAILED, at=NEW_SUB - 1), acct_state="FAILED", left_at=NOW - 60), S.LOST),
    # The built-in requeue of a trial that timed out without a checkpoint (same element).
    "timed out, its task still runs (about to requeue)": (
        requeued(queued=running(NEW_SUB + 2)), S.PENDING),
    "timed out, its task completing the requeue": (
        requeued(queued=Queued("COMPLETING", NEW_SUB + 2)), S.PENDING),
    "timed out, queued again": (requeued(queued=PENDING_Q), S.PENDING),
    "timed out, running again, no marker yet": (requeued(queued=running(NOW - 3)), S.PENDING),
    "timed out, running again": (
        requeued(queued=running(NOW - 3), marker=slurm_marker(2, NEW, NOW - 2)), S.RUNNING),
    "timed out, out of retries, out of the queue": (requeued(), S.TIMEOUT),
    "checkpointed, queued again": (requeued(row=row(S.REQUEUED, 1, NEW, NEW_SUB + 60),
                                            queued=PENDING_Q), S.REQUEUED),
    "checkpointed, out of retries": (requeued(row=row(S.REQUEUED, 1, NEW, NEW_SUB + 60)), S.TIMEOUT),
    # trials_per_task > 1: one element, several trials, one after another.
    "first of the task, finished in this run": (
        Facts(row(S.FAILED, 1, NEW, NOW - 4), slurm_marker(1, NEW, NOW - 9), NEW, NEW_SUB,
              queued=running(NOW - 10)), S.FAILED),
    "first of the task, completed": (
        Facts(row(S.COMPLETED, 1, NEW, NOW - 4), None, NEW, NEW_SUB, queued=running(NOW - 10)),
        S.COMPLETED),
    "second of the task, waiting its turn": (
        Facts(None, None, NEW, NEW_SUB, queued=running(NOW - 10)), S.PENDING),
    "second of the task, an old row of its own": (
        rerun(queued=running(NOW - 10)), S.PENDING),
    # Out of the queue without a row: the grace counts from when it left.
    "left 10 s ago, launched long ago": (gone(left_at=NOW - 10), S.PENDING),
    "left 40 s ago": (gone(left_at=NOW - 40), S.LOST),
    "leaving unseen, its attempt started 10 s ago": (
        gone(marker=slurm_marker(1, NEW, NOW - 10)), S.PENDING),
    "leaving unseen, its attempt started long ago": (gone(), S.LOST),
    "sacct: cancelled": (gone(acct_state="CANCELLED by 0", left_at=NOW - 1), S.CANCELLED),
    "sacct: timeout": (gone(acct_state="TIMEOUT", left_at=NOW - 1), S.TIMEOUT),
    "sacct knows the array, not the element, nothing started": (
        gone(marker=None, array_in_acct=True), S.CANCELLED),
    "sacct knows the array, not the element, an old element's marker": (
        gone(marker=slurm_marker(1, OLD, OLD_SUB + 10), array_in_acct=True), S.CANCELLED),
    "sacct knows the array, not the element, which started": (
        gone(array_in_acct=True, left_at=NOW - 60), S.LOST),
    "squeue failed": (rerun(queue_ok=False), S.UNKNOWN),
    # Settled rows stand whatever the queue says.
    "pruned, while its element runs again": (
        rerun(row=row(S.PRUNED), queued=running(NOW - 10), marker=slurm_marker(2, NEW, NOW - 8)),
        S.PRUNED),
    "pruned, squeue failed": (rerun(row=row(S.PRUNED), queue_ok=False), S.PRUNED),
    # Local trials: no element; the attempt's process says whether it runs.
    "local, its process lives": (Facts(marker=local_marker(alive=True)), S.RUNNING),
    "local, its process and the driver died": (
        Facts(marker=local_marker(alive=False), driver_alive=False), S.LOST),
    "local, its process ended, the driver writes its row": (
        Facts(marker=local_marker(alive=False), driver_alive=True), S.RUNNING),
    "local, another host's attempt, driver unknown": (
        Facts(marker=slurm_marker(1, None, NOW - 10), driver_alive=None), S.RUNNING),
    "local, a failed row": (Facts(row(S.FAILED, 1, None)), S.FAILED),
    "never submitted": (Facts(), S.NOT_SUBMITTED),
    "local, not started yet while its driver runs": (Facts(driver_alive=True), S.PENDING),
    "local, not started, its driver is gone": (Facts(driver_alive=False), S.NOT_SUBMITTED),
}


@pytest.mark.parametrize("case", list(CASES))
def test_classify(case: str) -> None:
    facts, expected = CASES[case]
    assert classify(facts, NOW, GRACE) is expected


def _simulate(arrays: list[tuple[int, int, int, int]]) -> list[int]:
    """Tasks running at each step when every task takes one step; a chain's next array
    starts only once its previous one has ended (afterany)."""
    by_chain: dict[int, list[list[int]]] = {}
    for _, n, chain, throttle in arrays:
        by_chain.setdefault(chain, []).append([n, min(n, throttle)])
    steps = []
    while any(by_chain.values()):
        now = 0
        for queue in by_chain.values():
            if queue:
                left, throttle = queue[0]
                now += min(left, throttle)
                queue[0][0] -= min(left, throttle)
                if queue[0][0] == 0:
                    queue.pop(0)
        steps.append(now)
    return steps


@pytest.mark.parametrize("parallelism", [1, 2, 3, 4, 7, 16])
@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 11, 1001])
def test_chains_keep_one_throttle_over_split_arrays(chunk: int, parallelism: int) -> None:
    for n_tasks in range(1, 40):
        arrays = chains(n_tasks, chunk, parallelism)
        assert [a[0] for a in arrays] == list(range(0, n_tasks, chunk))  # contiguous, in order
        assert all(1 <= n <= chunk for _, n, _, _ in arrays) and sum(a[1] for a in arrays) == n_tasks
        throttles = {chain: t for _, _, chain, t in arrays}
        assert len(throttles) == len({(c, t) for _, _, c, t in arrays})  # one throttle a chain
        assert all(t >= 1 for t in throttles.values()) and sum(throttles.values()) <= parallelism
        steps = _simulate(arrays)
        assert max(steps) == min(parallelism, n_tasks), (n_tasks, arrays, steps)


def test_chains_examples() -> None:
    assert chains(6, 2, 4) == [(0, 2, 0, 2), (2, 2, 1, 1), (4, 2, 2, 1)]
    assert chains(10, 2, 4) == [(0, 2, 0, 1), (2, 2, 1, 1), (4, 2, 2, 1), (6, 2, 3, 1),
                                (8, 2, 0, 1)]
    assert chains(5, 4, 4) == [(0, 4, 0, 3), (4, 1, 1, 1)]  # the small array's slot moves
    assert chains(36, 1001, 4) == [(0, 36, 0, 4)]


def test_compress_ids() -> None:
    assert compress_ids([0, 1, 2, 5, 6]) == [[0, 3], [5, 7]]
    assert compress_ids([]) == [] and compress_ids([7]) == [[7, 8]]
    for ids in ([0, 1, 2, 5, 6], [3, 1, 2], [9], list(range(1000)), [4, 4]):
        assert expand_ids(compress_ids(ids)) == ids


def _launch(number: int, ids: list[int], per_task: int, arrays: list[ArrayRecord],
            created_at: float = 0.0) -> Launch:
    return Launch(number, compress_ids(ids), per_task, 2, 3, 120, created_at, arrays)


def test_launch_tasks_and_trials_of_task() -> None:
    launch = _launch(1, [0, 1, 2, 3, 4, 5, 6, 10, 11], 3,
                     [ArrayRecord("100", 0, 2), ArrayRecord("101", 2, 1)])
    assert launch.n_tasks == 3
    assert [launch.trials_of_task(t) for t in range(4)] == [[0, 1, 2], [3, 4, 5], [6, 10, 11], []]
    assert list(launch.tasks()) == [("100", 0, [0, 1, 2]), ("100", 1, [3, 4, 5]),
                                    ("101", 0, [6, 10, 11])]  # each array starts at index 0
    short = _launch(2, [0, 1, 2, 3], 3, [ArrayRecord("102", 0, 2)])
    assert list(short.tasks()) == [("102", 0, [0, 1, 2]), ("102", 1, [3])]
    external = _launch(3, [5, 6, 7], 1, [ArrayRecord("200", 0, 3, first_index=5)])
    assert list(external.tasks()) == [("200", 5, [5]), ("200", 6, [6]), ("200", 7, [7])]


def test_the_latest_launch_of_a_trial_is_its_assignment(tmp_path: Path) -> None:
    paths = SweepPaths(tmp_path)
    paths.launches_dir.mkdir(parents=True)
    _launch(1, [0, 1, 2], 1, [ArrayRecord("100", 0, 3)], created_at=10.0).write(paths)
    _launch(2, [1], 1, [ArrayRecord("200", 0, 1)], created_at=20.0).write(paths)
    assigned, job_ids = assignments(paths)
    assert {t: (a.element, a.submitted_at) for t, a in assigned.items()} == {
        0: ("100_0", 10.0), 1: ("200_0", 20.0), 2: ("100_2", 10.0)}
    assert job_ids == ["100", "200"]


GOLDEN = Path(__file__).parent / "golden" / "launch.sbatch"


def test_rendered_sbatch_script_matches_the_golden_file(tmp_path: Path) -> None:
    """A change to the rendered script (ours or submitit's) shows here, without a cluster."""
    cluster = ClusterConf(
        partition="gpu", account="ml-lab", qos="normal", timeout_min=90.5, mem_gb=7.5,
        cpus_per_task=4, gpus_per_task=1, constraint="a100", exclude="node[01-02]",
        additional_parameters={"mail-user": "me@example.org", "mail-type": "FAIL"},
        setup=["module load cuda/12.1", "source .venv/bin/activate"], signal_delay_s=90)
    root = tmp_path / "we ird 'sweep'"
    text = SlurmExecutor(cluster).script(SweepPaths(root), 1, "/usr/bin/python3")
    text = text.replace(str(root), "SWEEP_DIR")  # nothing of it should be there; if it is, stable
    if os.environ.get("SWEEPER_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), (
        f"the rendered sbatch script changed; if that is intended, regenerate {GOLDEN} with "
        "SWEEPER_UPDATE_GOLDEN=1 and review the diff")


def test_only_a_value_error_of_submitit_blames_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib.metadata import version

    import submitit.slurm.slurm as submitit_slurm

    from sweeper.errors import ConfigError, SweeperError

    def changed(**kwargs: object) -> str:
        raise TypeError("_make_sbatch_string() got an unexpected keyword argument 'use_srun'")

    def rejects(**kwargs: object) -> str:
        raise ValueError("Unavailable parameter(s): ['bogus']")

    executor = SlurmExecutor(ClusterConf())
    monkeypatch.setattr(submitit_slurm, "_make_sbatch_string", changed)
    with pytest.raises(SweeperError) as info:
        executor.script(SweepPaths(Path("s")), 1, "python3")
    assert not isinstance(info.value, ConfigError)
    assert f"submitit {version('submitit')}" in str(info.value)
    assert "private API changed" in str(info.value) and "check cluster settings" not in str(info.value)
    monkeypatch.setattr(submitit_slurm, "_make_sbatch_string", rejects)
    with pytest.raises(ConfigError, match=r"Unavailable parameter.*check cluster settings"):
        executor.script(SweepPaths(Path("s")), 1, "python3")


BEHAVE = ["task.fn=sweeper_test_tasks:behave", "search.space={}", "+x=range(0,2)"]


@pytest.mark.parametrize("tools", [[], ["scontrol"]])
def test_no_sbatch_on_path_is_bad_input_with_the_fix(cli, tmp_path: Path, tools: list[str]) -> None:
    """cluster=slurm where SLURM's commands are missing: one line, exit 2, the way out."""
    fakebin = tmp_path / "bin"
    fakebin.mkdir()
    for tool in tools:  # the config is readable; sbatch still is missing
        (fakebin / tool).write_text("#!/bin/sh\necho 'MaxArraySize = 1001'\n")
        (fakebin / tool).chmod(0o755)
    r = cli("plan", "cluster=slurm", *BEHAVE, f"hydra.sweep.dir={tmp_path / 's'}",
            env={"PATH": str(fakebin)})
    assert r.returncode == 2, r.stderr
    missing = "sbatch" if tools else "scontrol"
    assert r.stderr.startswith(f"sweeper: error: {missing} is not on PATH")
    assert "use cluster=local, or run on a login node where sbatch exists" in r.stderr
    assert r.stderr.count("\n") == 1


def _fake(bin_dir: Path, name: str, body: str) -> None:
    (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
    (bin_dir / name).chmod(0o755)


def test_the_watcher_asks_sacct_once_per_element(cli, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """D18: on a finished sweep, polls ask sacct once for the elements that left the queue
    without a row, never for those with one, and not at all while squeue fails. squeue and
    sacct are stand-ins first on PATH that print what the real ones would."""
    import datetime as dt

    from sweeper.results import TrialOutcome, write_result
    from sweeper.status import SweepWatcher
    from sweeper.trials import read_trials

    sweep_dir = tmp_path / "s"
    assert cli("plan", "cluster=local", *BEHAVE[:2], "+x=range(0,4)",
               f"hydra.sweep.dir={sweep_dir}").returncode == 0
    paths = SweepPaths(sweep_dir)
    _launch(1, [0, 1, 2, 3], 1, [ArrayRecord("300", 0, 4)]).write(paths)
    now = dt.datetime.now(dt.timezone.utc)
    write_result(paths, read_trials(paths, [0]), TrialOutcome(S.COMPLETED, now, now))
    bin_dir, calls = tmp_path / "bin", tmp_path / "sacct-calls"
    bin_dir.mkdir()
    _fake(bin_dir, "squeue", "exit 0")  # nothing queued
    _fake(bin_dir, "sacct", f'echo "$@" >> "{calls}"\necho "JobID|State|ExitCode|End"\n'
          'echo "300_1|FAILED|1:0|2026-12-04T10:00:00"\n'
          'echo "300_2|CANCELLED by 0|0:15|2026-12-04T10:00:00"')  # 300_3: never started
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    watcher = SweepWatcher(paths, grace_s=5)
    for _ in range(5):
        state = watcher.poll()
    assert state.states == {0: S.COMPLETED, 1: S.LOST, 2: S.CANCELLED, 3: S.CANCELLED}
    assert watcher.sacct_calls == 1 == len(calls.read_text().splitlines())
    assert "300" in calls.read_text()
    _fake(bin_dir, "squeue", "echo 'slurm_load_jobs error: Socket timed out' >&2; exit 1")
    blind = SweepWatcher(paths, grace_s=5)
    assert blind.poll().states == {0: S.COMPLETED, 1: S.UNKNOWN, 2: S.UNKNOWN, 3: S.UNKNOWN}
    assert blind.sacct_calls == 0
    _fake(bin_dir, "squeue", "exit 0")
    _fake(bin_dir, "sacct", 'echo "JobID|State|ExitCode|End"')  # accounting lags: not known yet
    lagging = SweepWatcher(paths, grace_s=5)
    lagging.acct_retry_s = 60.0  # (1 s by default, doubling up to acct_interval_s)
    for _ in range(5):
        assert lagging.poll().states[1] is S.LOST
    assert lagging.sacct_calls == 1  # asked again only once acct_retry_s has passed
    lagging.acct_retry_s = 0.0
    lagging.poll()
    assert lagging.sacct_calls == 2


def test_array_tasks_of_the_plain_path_check_the_settings_once(cli, tmp_path: Path) -> None:
    """Each task of `sbatch --array ... submit_hyperparameter_search.sh` plans the sweep; once
    sweep.yaml holds it with the same settings, no task asks the controller again (here: no
    SLURM command on PATH at all, and planning still works)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake(bin_dir, "scontrol", "echo 'MaxArraySize = 1001'")
    _fake(bin_dir, "sbatch", "exit 0")  # --test-only: accepted
    plan = ["plan", "cluster=slurm", *BEHAVE, f"hydra.sweep.dir={tmp_path / 's'}"]
    first = cli(*plan, env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})
    assert first.returncode == 0 and "sbatch accepts the settings" in first.stderr, first.stderr
    nothing = str(tmp_path / "empty")
    task = cli(*plan, env={"PATH": nothing, "SLURM_ARRAY_TASK_ID": "1"})
    assert task.returncode == 0 and "sbatch accepts" not in task.stderr, task.stderr
    changed = cli(*plan, "cluster.mem_gb=2", env={"PATH": nothing, "SLURM_ARRAY_TASK_ID": "1"})
    assert changed.returncode == 2 and "scontrol is not on PATH" in changed.stderr
    login = cli(*plan, env={"PATH": nothing})  # not an array task: always checked
    assert login.returncode == 2 and "scontrol is not on PATH" in login.stderr
