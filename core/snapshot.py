"""Snapshots: the exact text that was checked is the text every worker runs.

`evaluate` reads the problem and the candidate once; `snapshot` writes that text into
`$KERNELWRIGHT_HOME/snapshots/<sha256 of the bytes>/<file name>`, read-only, and every worker
(build, reference, candidate, profile) imports that copy, which the sandbox shows read-only to
them. A change to the user's file during an evaluation (by the user, or by a candidate that can
reach it) changes nothing of what runs, and the stored hash is the hash of what ran.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from kernelwright import paths


def snapshot(original: Path, text: str) -> Path:
    """The read-only copy of `text` (read from `original`), made once per content."""
    data = text.encode("utf-8")
    folder = paths.snapshots_dir() / hashlib.sha256(data).hexdigest()[:24]
    target = folder / Path(original).name
    if target.is_file() and target.read_bytes() == data:
        return target
    folder.mkdir(parents=True, exist_ok=True)
    # written beside, then renamed into place: a concurrent evaluation sees all or nothing
    handle, partial = tempfile.mkstemp(dir=folder, suffix=".partial")
    with os.fdopen(handle, "wb") as out:
        out.write(data)
    os.chmod(partial, 0o444)
    os.replace(partial, target)
    return target
