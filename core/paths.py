"""Where kernelwright keeps its state.

Everything the tool writes (build directories, scratch space for evaluations, later the history
database) lives under one folder: `$KERNELWRIGHT_HOME`, or `~/.kernelwright` when it is unset.
Nothing is ever written into the repository or next to the user's files.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from kernelwright.errors import BadInput


def home() -> Path:
    """The state folder, created on first use; BadInput when it cannot be a folder."""
    raw = os.environ.get("KERNELWRIGHT_HOME")
    path = Path(raw).expanduser() if raw else Path.home() / ".kernelwright"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file in the way (FileExistsError), no permission, ...
        why = "it is a file" if path.is_file() else (exc.strerror or str(exc))
        raise BadInput(
            f"cannot use {path} as kernelwright's state folder ({why}); "
            "set KERNELWRIGHT_HOME to a folder"
        ) from exc
    return path.resolve()


def builds_dir() -> Path:
    """The build cache: a shelf per candidate source (`shelf`), and the precompiled headers."""
    path = home() / "builds"
    path.mkdir(parents=True, exist_ok=True)
    return path


def shelf(candidate: Path) -> Path:
    """The build folders of one candidate source (under `builds/`, named by its content hash).

    Why one per candidate: a candidate's code runs in the workers that build and load its
    extensions, so whatever it leaves in its build folders is its own work. Each candidate's
    workers may write only to its own shelf (the sandbox keeps the rest of `builds/` read-only),
    so no candidate can plant code in a build another candidate will load. The same source, run
    again, finds its builds there."""
    digest = hashlib.sha256(Path(candidate).read_bytes()).hexdigest()[:20]
    path = builds_dir() / digest
    path.mkdir(parents=True, exist_ok=True)
    return path


def pch_dir() -> Path:
    """Precompiled torch headers, shared by every build and made only by the CLI (pch.py)."""
    path = builds_dir() / "pch"
    path.mkdir(parents=True, exist_ok=True)
    return path


def scratch_dir() -> Path:
    """Per-evaluation scratch folders (candidate working directories, exchanged outputs)."""
    path = home() / "scratch"
    path.mkdir(parents=True, exist_ok=True)
    return path


def snapshots_dir() -> Path:
    """The problem and candidate texts workers run, stored by content (`snapshot.py`): read-only
    to every worker, so what runs is what was checked."""
    path = home() / "snapshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_dir(run_id: str) -> Path:
    """An optimize run's candidate files, named by candidate id (the history keeps them too)."""
    path = home() / "runs" / run_id
    path.mkdir(parents=True, exist_ok=True)
    return path
