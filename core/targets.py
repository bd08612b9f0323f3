"""Targets (`cuda`, `cpu`): which is the default here, and whether its toolchain is present.

Nothing here initialises CUDA: GPUs are counted through NVML, which talks to the driver only.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from kernelwright.errors import BadInput, ToolchainMissing

TARGETS = ("cuda", "cpu")
CUDA_TORCH_HINT = (
    "install a CUDA build of torch, e.g. "
    "`pip install torch --index-url https://download.pytorch.org/whl/cu130`"
)


def visible_gpus() -> int:
    """GPUs the workers would see (CUDA_VISIBLE_DEVICES respected), counted through NVML."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return 0
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            count = int(pynvml.nvmlDeviceGetCount())
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return 0
    if visible is not None:
        count = min(count, len([v for v in visible.split(",") if v.strip()]))
    return count


def first_gpu_name() -> str | None:
    """The NVML name of the first visible GPU (e.g. "NVIDIA H100 80GB HBM3"), or None."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            index = int(visible) if visible.isdigit() else 0
            name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(index))
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return None
    return name.decode() if isinstance(name, bytes) else str(name)


def torch_has_cuda() -> bool:
    import torch

    return torch.version.cuda is not None


def default_target() -> str:
    return "cuda" if torch_has_cuda() and visible_gpus() > 0 else "cpu"


def _which(name: str) -> str | None:
    # The running interpreter's bin folder first: pip's `ninja` lands there.
    return shutil.which(
        name, path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    )


def check_toolchain(target: str) -> None:
    """Raise ToolchainMissing with the fix when `target` cannot build or run here."""
    if target not in TARGETS:
        raise BadInput(f"unknown target {target!r}; use one of: {', '.join(TARGETS)}")
    if _which("ninja") is None:
        raise ToolchainMissing("ninja is not installed; run `pip install ninja`")
    cxx = os.environ.get("CXX", "c++")
    if _which(cxx) is None and _which("g++") is None:
        raise ToolchainMissing(
            f"no C++ compiler ({cxx}) on PATH; install g++ (e.g. apt install g++)"
        )
    if target == "cpu":
        return
    if not torch_has_cuda():
        raise ToolchainMissing(f"target cuda, but this torch is a CPU build; {CUDA_TORCH_HINT}")
    from torch.utils.cpp_extension import CUDA_HOME

    if CUDA_HOME is None or not Path(CUDA_HOME, "bin", "nvcc").exists():
        raise ToolchainMissing(
            "target cuda, but nvcc was not found; install the CUDA toolkit or set CUDA_HOME"
        )
    if visible_gpus() == 0:
        raise ToolchainMissing("target cuda, but no CUDA GPU is visible; use --target cpu")
