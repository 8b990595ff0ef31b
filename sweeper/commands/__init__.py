"""The commands that work from a sweep dir alone, one module per kind:
``lifecycle`` (status, resume, cancel) and ``results`` (merge, report, next, rerun)."""

from __future__ import annotations

from sweeper.commands.lifecycle import add_cancel, add_resume, add_status
from sweeper.commands.results import add_merge, add_next, add_report, add_rerun, check_metric

__all__ = ["add_cancel", "add_merge", "add_next", "add_report", "add_rerun", "add_resume",
           "add_status", "check_metric"]
