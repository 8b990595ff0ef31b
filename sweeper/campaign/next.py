"""A campaign's planning job on SLURM: ``python -m sweeper.campaign.next CAMPAIGN_DIR``.

Submitted with ``--dependency=afterany:<the stage's arrays>``, it runs once they have all
ended: it reads the stage's results, marks it done (or stops the campaign with the reason,
which ``sweeper status`` shows), plans the next stage, submits its arrays, and submits the
next planning job after them. A planning job never waits for trials itself.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["main", "submit_next"]


def submit_next(root: Path, cluster: object, python: str, after: tuple[str, ...]) -> str:
    """Submit the planning job that continues the campaign once ``after`` have ended; returns
    its job id. The script names no path (sbatch runs in the campaign dir), and every value
    goes to sbatch as an argument, never through a shell."""
    import shlex
    import subprocess

    from submitit.helpers import clean_env

    from sweeper.errors import SweeperError
    from sweeper.executors.slurm.script import _render
    from sweeper.paths import atomic_path

    c = cluster
    extra = {"output": "logs/campaign-%j.log", **dict(getattr(c, "additional_parameters", {}))}
    script = _render(command=f'exec {shlex.quote(python)} -u -m sweeper.campaign.next '
                             '"$SLURM_SUBMIT_DIR"',
                     folder=root / "logs", job_name="sweeper-campaign",
                     partition=getattr(c, "partition", None), time=10, cpus_per_task=1,
                     qos=getattr(c, "qos", None), account=getattr(c, "account", None),
                     mem_gb=1.0, setup=list(getattr(c, "setup", [])), stderr_to_stdout=True,
                     use_srun=False, additional_parameters=extra)
    (root / "logs").mkdir(parents=True, exist_ok=True)
    path = root / "campaign-next.sbatch"
    with atomic_path(path) as tmp:
        tmp.write_text(script)
    with clean_env():
        r = subprocess.run(["sbatch", "--parsable", f"--dependency=afterany:{':'.join(after)}",
                            str(path)], cwd=root, capture_output=True, text=True, timeout=120,
                           check=False)
    if r.returncode != 0:
        raise SweeperError(f"could not submit the campaign's next planning job: "
                           f"{r.stderr.strip() or r.stdout.strip()}; continue it later with "
                           f"`sweeper resume {root}`")
    return r.stdout.strip().split(";")[0]


def main(argv: list[str] | None = None) -> int:
    from sweeper.campaign.run import BASE_DIR, run_stages
    from sweeper.errors import SweeperError
    from sweeper.executors import make_executor
    from sweeper.paths import SweepPaths
    from sweeper.record import SweepRecord

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if args and args[0] in ("-h", "--help") else 2
    root = Path(args[0]).resolve()
    try:
        base = SweepRecord.load(SweepPaths(root / BASE_DIR))
        os.chdir(base.cwd or os.getcwd())  # the task's own imports resolve from there
        sys.path.insert(0, os.getcwd())
        return run_stages(root, make_executor(base.cluster, "slurm")).exit_code
    except SweeperError as ex:
        print(f"sweeper: error: {ex}", file=sys.stderr)
        return ex.exit_code


if __name__ == "__main__":
    sys.exit(main())
