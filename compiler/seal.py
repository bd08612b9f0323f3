"""Seals on cached builds: a cached extension is loaded only as it was built.

Why: the build cache (`builds/`) must stay writable for the workers that build into it, so one
candidate's code could overwrite another extension's `.so` there, and a later, honest candidate
whose build is a cache hit would run the planted code. So:

- after a build worker reports success, the parent (no candidate code runs there) records the
  sha256 of each `.so` in the build folders it reports under `seals/` beside `builds/`, where
  workers cannot write (the sandbox makes it read-only): a folder built now gets a new seal, a
  cache hit keeps the one it has (the build channel carries the job's nonce, like the
  candidate's);
- a build worker treats a cached folder that no longer matches its seal as not built: it is
  wiped and built again;
- a worker about to load a sealed extension copies the `.so` into its own scratch folder,
  hashes the copy and loads the copy, so nothing can swap it between the check and the load; a
  mismatch deletes the tampered folder (the next build starts afresh) and fails the load.

Extensions never reported by a build worker (built by older versions) load unchecked until
their first build report seals them.
"""

from __future__ import annotations

import hashlib
import json
import os
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


def _seal_file(builds_root: Path, folder: str) -> Path:
    return builds_root.parent / SEALS / f"{folder}.json"


def record(builds_root: Path, builds: list[dict[str, Any]]) -> None:
    """Seal the build folders a build worker reported (parent side, after a successful build):
    one it built now gets a new seal, a cache hit keeps its seal (or gets its first)."""
    for build in builds:
        key, fresh = str(build["key"]), not build["cached"]
        for folder in builds_root.glob(f"*-{key}"):
            seal = _seal_file(builds_root, folder.name)
            libraries = sorted(folder.glob("*.so"))
            if (seal.exists() and not fresh) or not libraries:
                continue
            seal.parent.mkdir(parents=True, exist_ok=True)
            hashes = {lib.name: sha256_file(lib) for lib in libraries}
            partial = seal.with_suffix(".partial")
            partial.write_text(json.dumps(hashes))
            os.replace(partial, seal)


def intact(folder: Path) -> bool:
    """Whether a cached build folder still holds what its seal says (True without a seal)."""
    seal = _seal_file(folder.parent, folder.name)
    try:
        expected = json.loads(seal.read_text())
    except (OSError, ValueError):
        return True
    try:
        return all(sha256_file(folder / name) == digest for name, digest in expected.items())
    except OSError:
        return False


def checked_copy(library: Path, scratch: Path) -> Path | None:
    """The sealed `library`, copied into a new folder under `scratch` and checked there; None
    when it has no seal. Raises TamperedBuild (after deleting its build folder) on a mismatch."""
    folder = library.parent
    seal = _seal_file(folder.parent, folder.name)
    try:
        expected = json.loads(seal.read_text()).get(library.name)
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
