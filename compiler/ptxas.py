"""Per-kernel resource usage from `ptxas -v` output: registers, static shared memory, stack, spills.

`parse_ptxas` is a pure function of the text. It guarantees one record per entry function
(`__global__` kernel) that ptxas compiled, in the order ptxas reported them, each with every field
present (0 where ptxas printed nothing for it); device functions that were not inlined are not
kernels and are left out. Lines it does not recognise are ignored, so a new ptxas that adds lines
(CUDA 13 added `Compile time = ...`) or drops some (it no longer prints `cmem[0]`) still parses.
`demangle` turns the mangled names into C++ signatures when `c++filt` is available.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

_ENTRY = re.compile(r"Compiling entry function '([^']+)'")
_PROPERTIES = re.compile(r"Function properties for (\S+)")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers")
# CUDA 12/13: "4224 bytes smem"; CUDA 11 and older: "1024+0 bytes smem" (static + reserved).
_SMEM = re.compile(r"(\d+)(?:\+(\d+))? bytes smem")


def parse_ptxas(text: str) -> list[dict[str, Any]]:
    """Records {kernel, registers, shared_mem_bytes, stack_bytes, spill_store_bytes,
    spill_load_bytes} for each entry function in `ptxas -v` output (names still mangled)."""
    kernels: dict[str, dict[str, Any]] = {}
    frames: dict[str, tuple[int, int, int]] = {}
    current_entry: str | None = None  # the entry whose "Used N registers" line comes next
    properties_of: str | None = None  # the function whose stack/spill line comes next
    for line in text.splitlines():
        if match := _ENTRY.search(line):
            current_entry = match.group(1)
            kernels.setdefault(current_entry, _empty(current_entry))
        elif match := _PROPERTIES.search(line):
            properties_of = match.group(1)
        elif (match := _FRAME.search(line)) and properties_of is not None:
            # Properties blocks also describe non-inlined device functions, and may come before
            # or after their entry's own lines: keep them by name, join at the end.
            frames[properties_of] = (int(match[1]), int(match[2]), int(match[3]))
            properties_of = None
        elif (match := _USED.search(line)) and current_entry is not None:
            record = kernels[current_entry]
            record["registers"] = int(match.group(1))
            if smem := _SMEM.search(line):
                record["shared_mem_bytes"] = int(smem.group(1))
            current_entry = None
    for name, record in kernels.items():
        if name in frames:
            stack, stores, loads = frames[name]
            record.update(stack_bytes=stack, spill_store_bytes=stores, spill_load_bytes=loads)
    return list(kernels.values())


def _empty(name: str) -> dict[str, Any]:
    return {
        "kernel": name,
        "registers": 0,
        "shared_mem_bytes": 0,
        "stack_bytes": 0,
        "spill_store_bytes": 0,
        "spill_load_bytes": 0,
    }


def demangle(kernels: list[dict[str, Any]], timeout_s: float = 10.0) -> list[dict[str, Any]]:
    """The same records with C++ names where `c++filt` can demangle them; mangled otherwise."""
    cxxfilt = shutil.which("c++filt")
    names = [str(k["kernel"]) for k in kernels]
    if cxxfilt is None or not names:
        return kernels
    try:
        proc = subprocess.run(
            [cxxfilt],
            input="\n".join(names) + "\n",
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except (OSError, subprocess.TimeoutExpired):
        return kernels
    plain = proc.stdout.splitlines()
    if proc.returncode != 0 or len(plain) != len(names):
        return kernels  # a partial answer cannot be matched to the names safely
    return [{**k, "kernel": p.strip() or k["kernel"]} for k, p in zip(kernels, plain, strict=True)]
