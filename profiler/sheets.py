"""The hardware sheet the judge reasons with: dense peak figures for the GPU, or the CPU's facts.

GPU rows are data (`gpu_sheets.toml`), matched against the NVML device name. An unknown GPU gets
its name only, and the judge is told the peaks are unknown rather than given a wrong ceiling.
"""

from __future__ import annotations

import os
import platform
import re
import tomllib
from functools import cache
from importlib import resources
from typing import Any


@cache
def _gpus() -> dict[str, dict[str, Any]]:
    text = resources.files("kernelwright.profiler").joinpath("gpu_sheets.toml").read_text()
    return tomllib.loads(text)["gpus"]


def gpu_sheet(device_name: str | None) -> dict[str, Any]:
    """The sheet for an NVML device name (e.g. "NVIDIA H100 80GB HBM3")."""
    if not device_name:
        return {"label": "unknown GPU", "known": False}
    keys = [k for k in _gpus() if _names(k, device_name)]
    if not keys:
        return {"label": device_name, "known": False}
    return {**_gpus()[max(keys, key=len)], "known": True}


def _names(key: str, device_name: str) -> bool:
    """`key` appears in the name as whole words: "L4" names "NVIDIA L4", not "NVIDIA L40S"."""
    pattern = rf"(?<![A-Za-z0-9]){re.escape(key)}(?![A-Za-z0-9])"
    return re.search(pattern, device_name, flags=re.IGNORECASE) is not None


def cpu_sheet() -> dict[str, Any]:
    """The CPU's facts. Timing on the cpu target runs both sides on one thread."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"label": model, "known": True, "cores": os.cpu_count() or 1, "timed_threads": 1}


def sheet_for(target: str, device_name: str | None = None) -> dict[str, Any]:
    return cpu_sheet() if target == "cpu" else gpu_sheet(device_name)
