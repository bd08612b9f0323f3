"""Import a candidate inside a worker, with its extensions built in a content-addressed directory.

Runs only in worker processes (it imports torch and executes candidate code). Guarantees:

- the build directory is `builds/<key>`, where the key hashes the candidate source, the target,
  the torch, CUDA and Python versions, the GPU architectures and the arch list, so identical code
  on the same toolchain reuses the build and different code never shares a directory or a lock;
- an exclusive `flock` on `builds/<key>.lock` serialises builders of the same key; the kernel
  drops it when its holder dies, so a killed build never leaves a lock that blocks later builds;
- a directory without the completion marker is a leftover of a failed or killed build and is
  wiped before building (which also clears torch's own stale `lock` file inside it);
- `load_inline`/`load` always build verbosely into that directory, so the full compiler output
  lands in the worker's stdout log; candidates cannot choose where they build.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import os
import platform
import re
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

HOOK_VERSION = "1"
COMPLETE_MARKER = ".kw-complete"


def gpu_arches() -> str:
    """Compute capabilities of the visible GPUs ('' without CUDA), as torch would target them."""
    import torch

    if not torch.cuda.is_available():
        return ""
    caps = {torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())}
    return ",".join(f"{major}.{minor}" for major, minor in sorted(caps))


def build_key(source: str, target: str) -> str:
    import torch

    parts = [
        HOOK_VERSION,
        target,
        hashlib.sha256(source.encode()).hexdigest(),
        torch.__version__,
        str(torch.version.cuda),
        sys.version.split()[0],
        platform.machine(),
        os.environ.get("TORCH_CUDA_ARCH_LIST", ""),
        gpu_arches() if target == "cuda" else "",
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


@contextmanager
def locked_build_dir(builds_root: Path, key: str) -> Iterator[tuple[Path, bool]]:
    """Hold the key's lock; yield (directory, cached). A partial directory is wiped first."""
    builds_root.mkdir(parents=True, exist_ok=True)
    build_dir = builds_root / key
    with open(builds_root / f"{key}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        cached = (build_dir / COMPLETE_MARKER).exists()
        if not cached and build_dir.exists():
            shutil.rmtree(build_dir, ignore_errors=True)
        build_dir.mkdir(parents=True, exist_ok=True)
        yield build_dir, cached


def mark_complete(build_dir: Path) -> None:
    (build_dir / COMPLETE_MARKER).write_text("ok\n")


def discard(build_dir: Path) -> None:
    shutil.rmtree(build_dir, ignore_errors=True)


def _safe(name: Any) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", str(name)) or "ext"


def install_build_hooks(build_dir: Path) -> None:
    """Route every extension build of this process into `build_dir`, verbosely."""
    import torch.utils.cpp_extension as cpp_extension

    os.environ["TORCH_EXTENSIONS_DIR"] = str(build_dir)
    os.environ.setdefault("MAX_JOBS", str(os.cpu_count() or 1))

    def routed(original: Any) -> Any:
        def build(*args: Any, **kwargs: Any) -> Any:
            name = kwargs.get("name", args[0] if args else "ext")
            target = build_dir / _safe(name)
            target.mkdir(parents=True, exist_ok=True)
            kwargs["build_directory"] = str(target)
            kwargs["verbose"] = True
            return original(*args, **kwargs)

        build.__wrapped__ = original  # type: ignore[attr-defined]
        return build

    for fn in ("load_inline", "load"):
        original = getattr(cpp_extension, fn)
        if not hasattr(original, "__wrapped__"):
            setattr(cpp_extension, fn, routed(original))


def import_file(path: Path, module_name: str) -> ModuleType:
    """Execute a Python file as a fresh module registered under `module_name`."""
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module
