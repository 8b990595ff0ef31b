"""Where a result came from: code version, library versions, host and device."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from functools import lru_cache
from importlib import metadata
from pathlib import Path

__all__ = ["device_name", "git_state", "host", "torch_version"]


def git_state(cwd: Path) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the git work tree at ``cwd``, or (None, None) outside one."""
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(cwd), *args], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit, dirty


def host() -> str:
    return socket.gethostname()


def python_version() -> str:
    return platform.python_version()


def torch_version() -> str | None:
    """torch's version without importing it (importing costs over a second)."""
    if "torch" in sys.modules:
        return str(sys.modules["torch"].__version__)
    return _installed_version("torch")


@lru_cache(maxsize=8)
def _installed_version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def device_name() -> str:
    """``cuda:N (name)`` when the task used a GPU, else ``cpu``; never imports torch."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return "cpu"
    index = torch.cuda.current_device()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    suffix = f", CUDA_VISIBLE_DEVICES={visible}" if visible is not None else ""
    return f"cuda:{index} ({torch.cuda.get_device_name(index)}{suffix})"
