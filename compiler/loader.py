"""Import a candidate inside a worker, with each extension built in a content-addressed directory.

Runs only in worker processes (it imports torch and executes candidate code). Guarantees:

- every `load_inline`/`load` call of the candidate is routed to `<shelf>/<name>-<key>` (the shelf
  is the candidate's own, `paths.shelf`), where the key hashes what is compiled (the call's name,
  sources and flags; a `load` source by its file name and contents, not its folder) with the
  toolchain (target, torch, CUDA and Python versions, GPU architectures, the arch list); the
  candidate's workers reuse one build, and different extensions never share a directory or a lock;
- an exclusive `flock` on `<shelf>/<key>.lock` serialises builders of the same key; the kernel drops
  it when its holder dies, so a killed build never leaves a lock that blocks later builds;
- a directory without the completion marker is a leftover of a failed or killed build and is wiped
  before building; a failed build's directory is removed;
- torch's own `lock` file (a `FileBaton`: created on every load, cache hits included, and left
  behind by a builder killed meanwhile, after which torch waits on it forever) is deleted before
  each load: whoever holds the key's `flock` is the only live builder of that directory, so a
  `lock` found there belongs to a dead one;
- builds are verbose, so the full compiler output lands in the worker's stdout log; candidates
  cannot choose where they build;
- a C++ wrapper in the fast layout compiles against a precompiled header of the torch headers it
  includes (`compiler.pch`), made once per toolchain and flag set;
- on the cuda target, a kernel-only extension that is not cached is pre-checked with a quick
  `nvcc -cubin` (`compiler.precheck_run`) before its directory is created: when nvcc rejects it,
  `PrecheckFailed` is raised and no full build runs. The per-kernel ptxas stats are collected in
  `KERNELS` and kept beside a successful build, so a cache hit reports them too.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import inspect
import json
import os
import platform
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from kernelwright.compiler import pch, seal
from kernelwright.compiler.precheck_run import PrecheckFailed, PrecheckOutcome, precheck_call

HOOK_VERSION = "2"
COMPLETE_MARKER = ".kw-complete"
KERNELS_FILE = ".kw-kernels.json"
TORCH_BATON = "lock"  # torch.utils.file_baton.FileBaton's file in the build directory


@dataclass(frozen=True)
class ExtensionBuild:
    name: str
    key: str
    cached: bool


# What this process built or loaded, in order (the worker reports it).
BUILDS: list[ExtensionBuild] = []
# Per-kernel ptxas stats of every extension pre-checked or loaded from the cache, and the seconds
# each pre-check took (kept even when the full build fails afterwards).
KERNELS: list[dict[str, Any]] = []
PRECHECK_SECONDS: list[float] = []


def gpu_arches() -> str:
    """Compute capabilities of the visible GPUs ('' without CUDA), as torch would target them."""
    import torch

    if not torch.cuda.is_available():
        return ""
    caps = {torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())}
    return ",".join(f"{major}.{minor}" for major, minor in sorted(caps))


def toolchain_key(target: str) -> list[str]:
    import torch

    return [
        HOOK_VERSION,
        target,
        torch.__version__,
        str(torch.version.cuda),
        sys.version.split()[0],
        platform.machine(),
        os.environ.get("TORCH_CUDA_ARCH_LIST", ""),
        gpu_arches() if target == "cuda" else "",
    ]


def extension_key(
    fn: str, args: tuple[Any, ...], kwargs: dict[str, Any], toolchain: list[str]
) -> str:
    """Hash of one extension call: its arguments (sources, flags, name) and the toolchain.

    `load` takes source files: each counts by its file name and contents, not by its folder, so
    sources written afresh into a new temporary folder by every import hit the same build."""
    call = {k: v for k, v in kwargs.items() if k not in ("build_directory", "verbose")}
    args = tuple(args)
    if fn == "load":
        sources = call.pop("sources", args[1] if len(args) > 1 else [])
        args = args[:1] + args[2:]
        sources = [sources] if isinstance(sources, str | os.PathLike) else list(sources)
        call["_sources"] = [_source_identity(s) for s in sources]
    text = json.dumps([fn, list(args), call, toolchain], sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _source_identity(source: Any) -> Any:
    path = Path(source)
    if not path.is_file():
        return str(source)  # the build fails on it; the path says which
    return [path.name, path.read_text(errors="replace")]


def _built_library(
    directory: Path, original: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[str, str, bool] | None:
    """The cached library of a `load` call, as `_import_module_from_library` takes it.

    torch runs ninja for every call; for `load_inline` that finds nothing to do, since its
    sources are written into the build folder itself. `load` sources written into a new
    temporary folder by each import would make ninja build again, so a cached `load` skips
    ninja and imports the library. None where torch's own path must run."""
    if getattr(original, "__name__", "") != "load":
        return None
    try:
        call = inspect.signature(original).bind(*args, **kwargs)
    except TypeError:
        return None  # torch says what is wrong
    call.apply_defaults()
    if call.arguments.get("is_standalone"):
        return None
    name = str(call.arguments["name"])
    found = [
        lib.stem
        for lib in directory.glob("*.so")
        if re.fullmatch(re.escape(name) + r"(_v\d+)?", lib.stem)
    ]
    if len(found) != 1:
        return None
    return found[0], str(directory), bool(call.arguments.get("is_python_module", True))


def _safe(name: Any) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", str(name))[:64] or "ext"


def install_build_hooks(builds_root: Path, target: str) -> None:
    """Route every extension build of this process into its content-addressed directory.

    `builds_root`: the candidate's shelf in the build cache (`paths.shelf`); the precompiled
    headers every shelf shares are in the cache's `pch/`, beside it."""
    import torch.utils.cpp_extension as cpp_extension

    builds_root.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MAX_JOBS", str(os.cpu_count() or 1))
    # Anything that escapes the hooks still lands under the builds folder, never in ~/.cache.
    os.environ["TORCH_EXTENSIONS_DIR"] = str(builds_root / "unrouted")
    toolchain = toolchain_key(target)

    def routed(fn: str, original: Any) -> Any:
        def build(*args: Any, **kwargs: Any) -> Any:
            name = kwargs.get("name", args[0] if args else "ext")
            key = extension_key(fn, args, kwargs, toolchain)
            directory = builds_root / f"{_safe(name)}-{key}"
            with open(builds_root / f"{key}.lock", "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                # A cached folder changed since its build (see seal.py) is built again.
                cached = (directory / COMPLETE_MARKER).exists() and seal.intact(directory)
                outcome = None
                if cached:
                    KERNELS.extend(_read_kernels(directory))
                else:
                    shutil.rmtree(directory, ignore_errors=True)
                    if target == "cuda":  # before mkdir: a rejected extension leaves nothing
                        outcome = _precheck(fn, original, args, kwargs)
                directory.mkdir(parents=True, exist_ok=True)
                _clear_stale_baton(directory)
                kwargs["build_directory"] = str(directory)
                kwargs["verbose"] = True
                library = _built_library(directory, original, args, kwargs) if cached else None
                try:
                    if library is not None:
                        module = cpp_extension._import_module_from_library(*library)
                    else:
                        module = original(*args, **kwargs)
                except BaseException:
                    shutil.rmtree(directory, ignore_errors=True)
                    raise
                if outcome is not None and not outcome.timed_out:
                    (directory / KERNELS_FILE).write_text(json.dumps(outcome.kernels))
                (directory / COMPLETE_MARKER).write_text("ok\n")
            BUILDS.append(ExtensionBuild(str(name), key, cached))
            return module

        build.__wrapped__ = original  # type: ignore[attr-defined]
        return build

    for fn in ("load_inline", "load"):
        original = getattr(cpp_extension, fn)
        if not hasattr(original, "__wrapped__"):
            setattr(cpp_extension, fn, routed(fn, original))
    _install_pch_hook(cpp_extension, builds_root.parent, toolchain)
    seal.install_load_hook(cpp_extension, Path(tempfile.gettempdir()))  # TMPDIR: the scratch


def _install_pch_hook(cpp_extension: Any, cache_root: Path, toolchain: list[str]) -> None:
    """Just before torch runs ninja, point the C++ compile at a precompiled header (pch.py).
    `_run_ninja_build` is torch's private step; where a torch version lacks it, builds simply
    go without."""
    original = getattr(cpp_extension, "_run_ninja_build", None)
    if original is None or hasattr(original, "__wrapped__"):
        return

    def run_ninja(build_directory: str, *args: Any, **kwargs: Any) -> Any:
        directory = Path(build_directory)
        cached = (directory / COMPLETE_MARKER).exists()
        note = pch.prepare(directory, cache_root, toolchain, cached)
        if note:
            print(f"[kernelwright] {note}", flush=True)
        return original(build_directory, *args, **kwargs)

    run_ninja.__wrapped__ = original  # type: ignore[attr-defined]
    cpp_extension._run_ninja_build = run_ninja


def _clear_stale_baton(directory: Path) -> None:
    """Delete torch's `lock` in a directory whose key `flock` this process holds (see above)."""
    baton = directory / TORCH_BATON
    if baton.exists():
        baton.unlink(missing_ok=True)
        print(f"[kernelwright] removed a stale {baton} left by a killed builder", flush=True)


def _precheck(
    fn: str, original: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> PrecheckOutcome | None:
    """Run the nvcc pre-check of one call; raise PrecheckFailed when nvcc rejects it."""
    outcome = precheck_call(fn, original, args, kwargs, gpu_arches())
    if outcome is None:
        return None
    PRECHECK_SECONDS.append(outcome.seconds)
    KERNELS.extend(outcome.kernels)
    # Into the build log too: a candidate that catches and re-raises still shows nvcc's errors.
    print(f"[kernelwright] nvcc pre-check ({outcome.seconds:.2f} s): {outcome.command}", flush=True)
    print(outcome.output.rstrip(), flush=True)
    if not outcome.ok:
        raise PrecheckFailed(outcome)
    return outcome


def _read_kernels(directory: Path) -> list[dict[str, Any]]:
    try:
        kernels = json.loads((directory / KERNELS_FILE).read_text())
    except (OSError, ValueError):
        return []  # built before pre-checks existed, or not kernel-only
    return [k for k in kernels if isinstance(k, dict)] if isinstance(kernels, list) else []


def import_problem(path: Path) -> ModuleType:
    """The problem file as `kw_problem`, able to import modules beside it (as `python file.py`
    would; appended to the path, so they cannot shadow torch or the standard library)."""
    folder = str(Path(path).resolve().parent)
    if folder not in sys.path:
        sys.path.append(folder)
    return import_file(path, "kw_problem")


def import_file(path: Path, module_name: str) -> ModuleType:
    """Execute a Python file as a fresh module registered under `module_name`."""
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module
