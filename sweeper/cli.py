"""The ``sweeper`` command (also ``python -m sweeper``).

``run`` and ``plan`` hand their arguments to Hydra, which composes ``conf/base.yaml``
with the config groups and the overrides; every other command reads only a sweep dir.
Bad input prints one line and exits 2; failed trials exit 1; Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sweeper.errors import ConfigError, SweeperError, closest

__all__ = ["COMMANDS", "main"]

COMMANDS = ("run", "plan", "merge", "status", "resume", "cancel", "report", "next", "rerun")

USAGE = """\
sweeper [run] [HYDRA_OVERRIDES...]   run one training, a sweep (+search=NAME, key=a,b) or a
                                     staged campaign (+campaign=NAME)
sweeper plan  [HYDRA_OVERRIDES...]   dry run: write trials.parquet and show it, run nothing
sweeper merge  DIR [--out OUTDIR]    one table of results: DIR/results.parquet, DIR/curves.parquet
sweeper status DIR [--watch]         trials per state (result files, squeue, sacct)
sweeper resume DIR [--retry-failed] [--n-trials N]
                                     run what has no completed result and is not queued
sweeper cancel DIR                   stop the sweep's running trials (local and SLURM)
sweeper report DIR [--out OUTDIR]    plots, top trials, the best config, what to search next
sweeper next   DIR                   a search YAML narrowed around the best trial
sweeper rerun  DIR ID [--rtol R]     run trial ID again from its frozen config, compare metrics
On a campaign dir, status, resume, cancel, merge and report work stage by stage.

Examples:
  python -m sweeper +search=coarse                # the coarse grid, local or SLURM (cluster=auto)
  python -m sweeper +search=random cluster=local scenario=tiny
  python -m sweeper +search=tpe search.pruner.type=successive_halving   # Bayesian + ASHA
  python -m sweeper +campaign=quick scenario=tiny  # coarse -> TPE -> narrowed -> CV -> final
  python -m sweeper 'optimizer.lr=tag(log,interval(1e-4,1e-2))' +search=random
  sweeper merge multirun/2026-11-23/10-00-00
  sweeper rerun multirun/2026-11-23/10-00-00 7    # does trial 7 reproduce?

Run `sweeper COMMAND --help` for a command's options; `sweeper run --hydra-help` for Hydra's.
Exit codes: 0 ok, 1 some trials failed (rerun: the metrics differ), 2 bad input, 130 interrupted."""

RUN_HELP = """\
usage: sweeper {cmd} [HYDRA_OVERRIDES...] [HYDRA_FLAGS...]

{what}

Overrides use Hydra's syntax: key=value, group=option, +search=NAME to pick a search
space from conf/search/ (grid, random, qmc; tpe, gp, cmaes adaptive), +campaign=NAME for a
staged campaign from conf/campaign/, and sweeps such as lr=0.1,0.01 or lr=choice(...), range(...),
interval(...), tag(log,interval(...)). hydra.sweep.dir=PATH picks the sweep dir; running
the same command with the same dir again skips completed trials.

--sweep-dir PATH is hydra.sweep.dir=PATH for any path (quoted for Hydra's grammar).
--wait (slurm) is hydra.sweeper.wait=true: block until the arrays end, with a progress bar.
Hydra flags pass through (--cfg job, --info, -cp/-cn, --hydra-help).
Config dir: $SWEEPER_CONFIG_DIR, else ./conf when it has base.yaml, else the project's conf/."""


def config_dir() -> Path:
    """Where ``base.yaml`` lives: $SWEEPER_CONFIG_DIR, ./conf, or this project's conf/."""
    candidates = [os.environ.get("SWEEPER_CONFIG_DIR"), "conf",
                  str(Path(__file__).resolve().parents[1] / "conf")]
    for c in candidates:
        if c and (Path(c) / "base.yaml").is_file():
            return Path(c).resolve()
    raise ConfigError(
        "no config dir with base.yaml found (looked at $SWEEPER_CONFIG_DIR, ./conf and the "
        "project's conf/); set SWEEPER_CONFIG_DIR=/path/to/conf"
    )


def _sweep_dir_flag(args: list[str]) -> list[str]:
    """``--sweep-dir PATH`` -> ``hydra.sweep.dir=<PATH quoted for Hydra>``, for any path."""
    from sweeper.space import quote

    out: list[str] = []
    it = iter(args)
    for a in it:
        if a == "--sweep-dir":
            value = next(it, None)
            if value is None:
                raise ConfigError("--sweep-dir needs a path, e.g. --sweep-dir multirun/coarse")
            out.append(f"hydra.sweep.dir={quote(str(Path(value).absolute()))}")
        elif a.startswith("--sweep-dir="):
            out.append(f"hydra.sweep.dir={quote(str(Path(a.split('=', 1)[1]).absolute()))}")
        else:
            out.append(a)
    return out


def _hydra_argv(args: list[str], plan: bool) -> list[str]:
    """sys.argv for Hydra: the flags, then the overrides together (as its parser wants them),
    with --multirun for a plan or a sweep override, and the dry run for a plan."""
    from hydra._internal.utils import get_args_parser

    from sweeper.overrides import parse_overrides

    parsed = get_args_parser().parse_args(args)
    sweeping = any(o.is_sweep_override() and not o.is_hydra_override()
                   for o in parse_overrides(parsed.overrides))
    flags = list(args)
    for o in parsed.overrides:
        flags.remove(o)
    overrides = list(parsed.overrides)
    if plan:
        flags.append("--multirun")
        overrides.append("hydra.sweeper.dry_run=true")
    elif sweeping and not parsed.multirun:
        flags.append("--multirun")
    return ["sweeper", *flags, *overrides]


def _hydra(args: Sequence[str], plan: bool) -> int:
    import hydra

    from sweeper import hydra_sweeper, single
    from sweeper.hydra_compat import one_line_errors

    sys.argv = _hydra_argv(_sweep_dir_flag(list(args)), plan)
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let errors reach us, to print one clean line
    hydra_sweeper.last_result = None
    single.last_exit = None
    with one_line_errors():
        hydra.main(config_path=str(config_dir()), config_name="base",
                   version_base="1.3")(single.entry)()
    if hydra_sweeper.last_result is not None:
        return hydra_sweeper.last_result.exit_code
    return single.last_exit or 0


def _dir_command(name: str, help_text: str, add: Callable[[argparse.ArgumentParser], None],
                 sub: Any) -> None:
    p = sub.add_parser(name, prog=f"sweeper {name}", help=help_text, description=help_text)
    p.add_argument("dir", type=Path, help="the sweep dir (hydra.sweep.dir)")
    add(p)


def _parser() -> argparse.ArgumentParser:
    from sweeper import commands

    parser = argparse.ArgumentParser(prog="sweeper", usage=USAGE, add_help=True)
    sub = parser.add_subparsers(dest="command")
    _dir_command("merge", "Join the trials' result files into DIR/results.parquet and "
                 "DIR/curves.parquet, and print the best trials.", commands.add_merge, sub)
    _dir_command("status", "Count the sweep's trials per state.", commands.add_status, sub)
    _dir_command("resume", "Run the trials that have no completed result: never run, "
                 "cancelled, timed out or lost (failed ones with --retry-failed).",
                 commands.add_resume, sub)
    _dir_command("cancel", "Stop the sweep's running trials; `resume` continues it later.",
                 commands.add_cancel, sub)
    _dir_command("report", "Write DIR/report/: plots, top trials, the best config (runnable) and "
                 "what to search next, in one self-contained index.html.", commands.add_report, sub)
    _dir_command("next", "Write a conf/search-style YAML for a finer search around the best "
                 "trial (past the edge where the best sits at one).", commands.add_next, sub)
    _dir_command("rerun", "Run one trial again from its frozen config, in this process, into a "
                 "scratch dir, and compare its metrics with the trial's row: exit 0 when "
                 "reproduced, 1 when they differ.", commands.add_rerun, sub)
    return parser


def _check_command(word: str) -> None:
    """A misspelt command (``statsu``) is named as one, not sent to Hydra as a malformed
    override: a bare word (no ``=``, no ``+``/``~``/``-`` prefix) is never an override."""
    hint = closest(word, COMMANDS)
    if hint and re.fullmatch(r"[A-Za-z][A-Za-z_-]*", word):
        raise ConfigError(f"unknown command {word!r}{hint} commands: {', '.join(COMMANDS)}")


def _run_or_plan(command: str, rest: list[str]) -> int:
    if rest[:1] in (["-h"], ["--help"]):
        what = ("Plan the sweep into its sweep dir and show the first trials; nothing runs."
                if command == "plan" else
                "Run one training, or a sweep when a search space or sweep override is given.")
        print(RUN_HELP.format(cmd=command, what=what))
        return 0
    rest = ["--help" if a == "--hydra-help" else "hydra.sweeper.wait=true" if a == "--wait"
            else a for a in rest]
    return _hydra(rest, plan=command == "plan")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv else "run"
    try:
        if command in ("-h", "--help"):
            print("usage:\n" + USAGE)
            return 0
        if command not in COMMANDS:
            _check_command(command)
            argv, command = ["run", *argv], "run"
        if command in ("run", "plan"):
            return _run_or_plan(command, argv[1:])
        args = _parser().parse_args(argv)
        if command in ("status", "resume", "cancel", "merge", "report") \
                and (Path(args.dir) / "campaign.yaml").is_file():
            from sweeper.commands.campaign import campaign_command

            return campaign_command(args)  # a campaign dir: stage by stage
        return int(args.func(args))
    except SweeperError as ex:
        print(f"sweeper: error: {ex}", file=sys.stderr)
        return ex.exit_code
    except KeyboardInterrupt:
        print("sweeper: interrupted", file=sys.stderr)
        return 130
