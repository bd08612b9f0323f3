"""Small pieces every evaluation worker mode uses: the device, syncing, saving, error text."""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any


def device_for(target: str) -> Any:
    import torch

    if target == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("target cuda, but this worker sees no CUDA device")
        return torch.device("cuda", torch.cuda.current_device())
    # One thread on the CPU target: both sides are timed the same way, an OpenMP pool that
    # spins against other processes on a small machine made timings swing by 100x, and the
    # parent's CPU-time check (timing_driver) counts on one thread per worker.
    torch.set_num_threads(1)
    return torch.device("cpu")


def sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def save(value: Any, path: Path) -> None:
    import torch
    from kernelwright.verifier.cases import to_cpu

    torch.save(to_cpu(value), path)


class stage:
    """Labels an exception escaping the block with what the worker was doing."""

    def __init__(self, label: str) -> None:
        self.label = label

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is not None and not hasattr(exc, "kw_stage"):
            try:
                exc.kw_stage = self.label  # type: ignore[union-attr]
            except AttributeError:
                pass


def short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:500]


def traceback_tail() -> str:
    return traceback.format_exc()[-20_000:]
