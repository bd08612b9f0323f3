"""Seals on cached builds: a cached extension is loaded only as it was built.

Why: a candidate's build folders (its shelf under `builds/`, see `paths.shelf`) stay writable to
the workers that run that candidate, so its code could rewrite its own `.so` after the build.
Other candidates cannot reach that shelf (the sandbox keeps it read-only to them); where the
sandbox is only a network namespace, they can, and the seals are what is left. So:

- after a build worker reports success, the parent (no candidate code runs there) records the
  sha256 of each `.so` in the build folders it reports under `seals/` beside `builds/`, where
  workers cannot write (the sandbox makes it read-only): a folder built now gets a new seal, a
  cache hit keeps the one it has (the build channel carries the job's nonce, like the
  candidate's); only folders on the candidate's own shelf are looked at;
- a build worker treats a cached folder without a seal, or that no longer matches its seal, as
  not built: it is wiped and built again (a folder planted by someone else has no seal);
- a worker about to load a sealed extension copies the `.so` into its own scratch folder,
  hashes the copy and loads the copy, so nothing can swap it between the check and the load; a
  mismatch deletes the tampered folder (the next build starts afresh) and fails the load.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

SEALS = "seals"


class TamperedBuild(RuntimeError):
    """A cached extension's file differs from the one its build produced."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _seal_file(folder: Path) -> Path:
    """`$KERNELWRIGHT_HOME/seals/<shelf>/<folder>.json` for `builds/<shelf>/<folder>`."""
    shelf = folder.parent
    return shelf.parent.parent / SEALS / shelf.name / f"{folder.name}.json"


def record(shelf: Path, builds: list[dict[str, Any]]) -> None:
    """Seal the build folders a build worker reported on its candidate's `shelf` (parent side,
    after a successful build): one it built now gets a new seal, a cache hit keeps its seal."""
    for build in builds:
        key, fresh = str(build["key"]), not build["cached"]
        if not re.fullmatch(r"[0-9a-f]+", key):  # the worker's word: nothing outside the shelf
            continue
        for folder in shelf.glob(f"*-{key}"):
            seal = _seal_file(folder)
            libraries = sorted(folder.glob("*.so"))
            if (seal.exists() and not fresh) or not libraries:
                continue
            seal.parent.mkdir(parents=True, exist_ok=True)
            hashes = {lib.name: sha256_file(lib) for lib in libraries}
            partial = seal.with_suffix(".partial")
            partial.write_text(json.dumps(hashes))
            os.replace(partial, seal)


def intact(folder: Path) -> bool:
    """Whether a cached build folder holds what its seal says (False without a seal)."""
    try:
        expected = json.loads(_seal_file(folder).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(expected, dict) or not expected:
        return False
    try:
        return all(sha256_file(folder / name) == digest for name, digest in expected.items())
    except OSError:
        return False


def checked_copy(library: Path, scratch: Path) -> Path | None:
    """The sealed `library`, copied into a new folder under `scratch` and checked there; None
    when it has no seal. Raises TamperedBuild (after deleting its build folder) on a mismatch."""
    folder = library.parent
    try:
        expected = json.loads(_seal_file(folder).read_text()).get(library.name)
    except (OSError, ValueError):
        return None
    if expected is None:
        return None
    private = Path(tempfile.mkdtemp(prefix="sealed-", dir=scratch))
    copy = private / library.name
    shutil.copyfile(library, copy)
    if sha256_file(copy) != expected:
        shutil.rmtree(folder, ignore_errors=True)
        raise TamperedBuild(
            f"the cached build {folder.name} changed after it was built (its {library.name} no "
            "longer matches its seal); it was deleted and will be built again"
        )
    return private


def install_load_hook(cpp_extension: Any, scratch: Path) -> None:
    """Load sealed extensions from checked private copies (torch's private loading step; where
    a torch version lacks it, extensions load unchecked)."""
    original = getattr(cpp_extension, "_import_module_from_library", None)
    if original is None or hasattr(original, "__wrapped__"):
        return

    def load(module_name: str, path: str, is_python_module: bool) -> Any:
        private = checked_copy(Path(path) / f"{module_name}.so", scratch)
        return original(module_name, str(private or path), is_python_module)

    load.__wrapped__ = original  # type: ignore[attr-defined]
    cpp_extension._import_module_from_library = load
