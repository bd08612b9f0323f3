"""Run the nvcc pre-check of one extension call inside the build worker.

Guarantees: `precheck_call` returns None (and runs nothing) when the call is not kernel-only, the
target has no nvcc, or the arguments do not bind; otherwise it compiles each `.cu` unit with
`nvcc -cubin -Xptxas -v` within a time limit and returns what happened, with ptxas's per-kernel
resource usage. A unit that runs past the limit makes the outcome inconclusive (`ok` and no
failure): the full build decides then. nvcc and its children (cicc, ptxas) stay in the worker's
process group, so the worker's own deadline and memory watchdog cover them too; on the pre-check's
own time limit the whole tree under nvcc is killed.
"""

from __future__ import annotations

import inspect
import os
import shlex
import shutil
import subprocess
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kernelwright.compiler import precheck, ptxas
from kernelwright.runner.isolation import kill_tree


@dataclass(frozen=True)
class PrecheckOutcome:
    ok: bool  # False: nvcc rejected a unit, so the full build would fail too
    seconds: float
    command: str  # the last command run, for the log
    output: str  # nvcc's output (ptxas info on success, the errors on failure)
    kernels: list[dict[str, Any]] = field(default_factory=list)
    timed_out: bool = False


class PrecheckFailed(RuntimeError):
    """nvcc rejected a kernel-only unit; the full build is not attempted."""

    def __init__(self, outcome: PrecheckOutcome) -> None:
        super().__init__(f"nvcc pre-check failed:\n{outcome.output.strip()[-2000:]}")
        self.outcome = outcome


def find_nvcc() -> str | None:
    """The nvcc torch's build would use (CUDA_HOME), else the one on PATH."""
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")):
        if home and (Path(home) / "bin" / "nvcc").is_file():
            return str(Path(home) / "bin" / "nvcc")
    try:
        from torch.utils import cpp_extension

        torch_home = cpp_extension.CUDA_HOME  # None on a torch built without CUDA
    except ImportError:
        torch_home = None
    if torch_home and (Path(torch_home) / "bin" / "nvcc").is_file():
        return str(Path(torch_home) / "bin" / "nvcc")
    return shutil.which("nvcc")


def precheck_call(
    fn: str, original: Any, args: tuple[Any, ...], kwargs: dict[str, Any], gpu_arches: str
) -> PrecheckOutcome | None:
    """Pre-check one intercepted `load_inline`/`load` call; None when it is skipped."""
    try:
        arguments = inspect.signature(original).bind(*args, **kwargs).arguments
    except (TypeError, ValueError):
        return None  # the real call will raise the same error with torch's message
    plan = precheck.plan_precheck(fn, arguments)
    nvcc = find_nvcc() if plan is not None else None
    if plan is None or nvcc is None:
        return None  # a missing toolchain is reported by the full build, as before
    arch = precheck.choose_arch(
        plan.user_arch, os.environ.get("TORCH_CUDA_ARCH_LIST", ""), gpu_arches
    )
    return run_plan(plan, nvcc, arch, _base_flags(), system_includes())


def run_plan(
    plan: precheck.PrecheckPlan,
    nvcc: str,
    arch: str,
    base_flags: list[str],
    system_includes: list[str],
    timeout_s: float = precheck.PRECHECK_TIMEOUT_S,
) -> PrecheckOutcome:
    """Compile every unit of `plan` to a cubin; stop at the first failure."""
    start = time.perf_counter()
    kernels: list[dict[str, Any]] = []
    outputs: list[str] = []
    command: list[str] = []
    code: int | None = 0
    with tempfile.TemporaryDirectory(prefix="kw-precheck-") as tmp:
        for index, unit in enumerate(plan.units):
            source = unit.path
            if source is None:  # load_inline: torch would write the same text to cuda.cu
                (Path(tmp) / unit.name).write_text(unit.text)
                source = Path(unit.name)  # relative (nvcc runs in tmp): messages say "cuda.cu(5)"
            cubin = Path(f"unit{index}.cubin")
            command = precheck.nvcc_command(
                nvcc, source, cubin, arch, plan, base_flags, system_includes, os.getenv("CC")
            )
            code, output = _run(command, Path(tmp), timeout_s - (time.perf_counter() - start))
            outputs.append(output)
            if code is None or code != 0:
                break
            kernels += ptxas.parse_ptxas(output)
    seconds = time.perf_counter() - start
    text = "\n".join(o.rstrip() for o in outputs if o.strip())
    shown = shlex.join(command)
    if code is None:
        text += f"\nnvcc pre-check: no answer within {timeout_s:g} s; the full build decides"
        return PrecheckOutcome(True, seconds, shown, text, [], timed_out=True)
    return PrecheckOutcome(code == 0, seconds, shown, text, ptxas.demangle(kernels))


def _run(command: list[str], cwd: Path, timeout_s: float) -> tuple[int | None, str]:
    """(exit code, stdout+stderr); the code is None when the time limit ended it."""
    if timeout_s <= 0:
        return None, ""
    try:
        proc = subprocess.Popen(
            command,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
        )
    except OSError as exc:
        return 1, f"nvcc pre-check could not start nvcc: {exc}"
    try:
        output, _ = proc.communicate(timeout=timeout_s)
        return proc.returncode, output
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid)  # cicc, ptxas
        output, _ = proc.communicate()
        return None, output


def _base_flags() -> list[str]:
    """torch's own nvcc flags (the half/bfloat16 operator switches, relaxed constexpr)."""
    try:
        from torch.utils.cpp_extension import COMMON_NVCC_FLAGS
    except ImportError:
        return ["--expt-relaxed-constexpr"]
    return list(COMMON_NVCC_FLAGS)


def system_includes() -> list[str]:
    """The include folders torch's build passes (torch, CUDA, Python), in its order."""
    folders: list[str] = []
    try:
        from torch.utils.cpp_extension import include_paths

        try:
            folders = list(include_paths("cuda"))
        except OSError:  # a torch without CUDA has no CUDA_HOME; nvcc finds its own headers
            folders = list(include_paths("cpu"))
    except ImportError:
        pass
    python_include = sysconfig.get_path("include", scheme="posix_prefix")
    if python_include:
        folders.append(python_include)
    return folders
