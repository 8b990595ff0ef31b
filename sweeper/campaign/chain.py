"""Chaining a campaign's stages on SLURM: the planning job that goes on after a stage's
arrays (see :mod:`sweeper.campaign.next`, what that job runs)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["submit_next"]


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
