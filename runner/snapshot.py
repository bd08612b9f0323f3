"""Snapshots: the exact text that was checked is the text every worker runs.

The problem and the candidate are read once; `snapshot` writes that text into
`$KERNELWRIGHT_HOME/snapshots/<sha256>/<file name>`, read-only, and every worker (build,
reference, candidate, profile) imports that copy, which the sandbox shows read-only to them. A
change to the user's file during an evaluation (by the user, or by a candidate that can reach
it) changes nothing of what runs, and the stored hash is the hash of what ran.

A problem may import modules that lie beside it (`from helper import SCALE`): those that its
own imports name are copied into the same snapshot, and the digest covers them too.
"""

from __future__ import annotations

import ast
import hashlib
import os
import tempfile
from pathlib import Path

from kernelwright import paths


def snapshot(original: Path | str, text: str | None = None) -> Path:
    """The read-only copy of `text` (or of the file's current bytes), with the modules beside
    it that it imports, made once per content. A file already inside the snapshots folder is
    its own snapshot."""
    original = Path(original).resolve()
    root = paths.snapshots_dir().resolve()
    if original.is_relative_to(root):
        return original
    data = original.read_bytes() if text is None else text.encode("utf-8")
    files = {original.name: data, **_siblings(original, data)}
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name] + b"\0")
    folder = root / digest.hexdigest()[:24]
    target = folder / original.name
    if not all((folder / n).is_file() for n in files):
        folder.mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            _write(folder / name, content)
    return target


def _siblings(original: Path, data: bytes) -> dict[str, bytes]:
    """The `.py` modules beside `original` that its top-level imports name."""
    try:
        tree = ast.parse(data)
    except (SyntaxError, ValueError):
        return {}
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    found = {}
    for name in sorted(names):
        module = original.parent / f"{name}.py"
        if module.is_file() and module != original:
            found[module.name] = module.read_bytes()
    return found


def _write(target: Path, data: bytes) -> None:
    # written beside, then renamed into place: a concurrent evaluation sees all or nothing
    handle, partial = tempfile.mkstemp(dir=target.parent, suffix=".partial")
    with os.fdopen(handle, "wb") as out:
        out.write(data)
    os.chmod(partial, 0o444)
    os.replace(partial, target)
