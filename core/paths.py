"""Where kernelwright keeps its state.

Everything the tool writes (build directories, scratch space for evaluations, later the history
database) lives under one folder: `$KERNELWRIGHT_HOME`, or `~/.kernelwright` when it is unset.
Nothing is ever written into the repository or next to the user's files.
"""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """The state folder, created on first use."""
    raw = os.environ.get("KERNELWRIGHT_HOME")
    path = Path(raw).expanduser() if raw else Path.home() / ".kernelwright"
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


def builds_dir() -> Path:
    """Content-addressed build directories, one per candidate source and toolchain."""
    path = home() / "builds"
    path.mkdir(parents=True, exist_ok=True)
    return path


def scratch_dir() -> Path:
    """Per-evaluation scratch folders (candidate working directories, exchanged outputs)."""
    path = home() / "scratch"
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_dir(run_id: str) -> Path:
    """An optimize run's candidate files, named by candidate id (the history keeps them too)."""
    path = home() / "runs" / run_id
    path.mkdir(parents=True, exist_ok=True)
    return path
