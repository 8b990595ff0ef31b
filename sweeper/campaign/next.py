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

__all__ = ["main"]


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
