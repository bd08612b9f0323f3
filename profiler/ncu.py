"""The Nsight Compute command line: finding `ncu`, building its commands, reading its CSV.

Profiling is two ncu calls. The first runs the target under ncu and writes a report file
(`--export`); it is the only one that touches the GPU. The second (`--import ... --csv --page
raw`) turns the report into one CSV row per kernel launch. Keeping them apart leaves the target's
own output out of the table, and the report file stays for anyone who wants to open it in
Nsight Compute's UI.

`parse_csv` reads both CSV shapes ncu prints: `--page raw` (one row per launch, a column per
metric, a units row under the header) and `--page details` (one row per metric, with "Metric
Name", "Metric Unit", "Metric Value"). Values are brought to base units (nanoseconds, bytes,
hertz), thousands separators removed, and `n/a` kept as None.
"""

from __future__ import annotations

import csv
import glob
import io
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

NCU_ENV = "KERNELWRIGHT_NCU"  # an explicit path to ncu wins over PATH


def find_ncu() -> str | None:
    """The ncu executable: $KERNELWRIGHT_NCU, then PATH, then the usual install folders."""
    explicit = os.environ.get(NCU_ENV)
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    found = shutil.which("ncu")
    if found:
        return found
    patterns = (
        "/usr/local/cuda/bin/ncu",
        "/usr/local/cuda-*/bin/ncu",
        "/opt/nvidia/nsight-compute/*/ncu",
        "/usr/local/cuda*/nsight-compute-*/ncu",
    )
    for pattern in patterns:
        for path in sorted(glob.glob(pattern), reverse=True):  # newest version first
            if os.access(path, os.X_OK):
                return path
    return None


def kernel_regex(name: str) -> str:
    """A regex for a kernel name as the static checks give it (`native_checks.kernel_names`):
    its holes (`*`, where Python fills the name in) stand for any identifier part."""
    return r"\w*".join(re.escape(part) for part in name.split("*"))


def kernel_filter(kernels: list[str]) -> str:
    """An ncu `-k` regex matching demangled names of these functions: plain, templated
    (`void k<float>(...)`) or in a namespace (`ns::k(...)`)."""
    names = "|".join(kernel_regex(k) for k in sorted(set(kernels)))
    return f"regex:(^|[\\s:])({names})(<|\\(|$)"


def profile_command(
    ncu: str,
    metrics: list[str],
    kernels: list[str],
    report: Path,
    target: list[str],
    launch_count: int,
) -> list[str]:
    """Profile the candidate's own kernels inside the target's cudaProfilerStart/Stop range."""
    return [
        ncu,
        "--export",
        str(report),
        "--force-overwrite",
        "--target-processes",
        "all",
        "--profile-from-start",
        "off",
        "--kernel-name-base",
        "demangled",
        "--kernel-name",
        kernel_filter(kernels),
        "--launch-count",
        str(launch_count),
        "--metrics",
        ",".join(metrics),
        *target,
    ]


def import_command(ncu: str, report: Path) -> list[str]:
    return [ncu, "--import", str(report), "--csv", "--page", "raw", "--print-units", "base"]


@dataclass
class KernelLaunch:
    """One profiled launch: its demangled name, launch shape and metric values (base units)."""

    name: str
    values: dict[str, float | None] = field(default_factory=dict)
    block: str = ""
    grid: str = ""


# Unit prefixes ncu uses in "auto" units, to scale a value back to its base unit.
_SCALE = {
    "nsecond": 1.0,
    "usecond": 1e3,
    "msecond": 1e6,
    "second": 1e9,
    # ncu 2025.3 spells time units short in the details page (recorded on an H100)
    "ns": 1.0,
    "us": 1e3,
    "ms": 1e6,
    "s": 1e9,
    "byte": 1.0,
    "Kbyte": 1e3,
    "Mbyte": 1e6,
    "Gbyte": 1e9,
    "Tbyte": 1e12,
    "KB": 1e3,
    "MB": 1e6,
    "GB": 1e9,
    "hz": 1.0,
    "Khz": 1e3,
    "Mhz": 1e6,
    "Ghz": 1e9,
    "cycle": 1.0,
    "Kcycle": 1e3,
    "Mcycle": 1e6,
}
_PER_SECOND = re.compile(r"^(?P<unit>.+)/s(econd)?$")
_NUMBER = re.compile(r"^[+-]?(\d{1,3}(,\d{3})+|\d+)(\.\d*)?([eE][+-]?\d+)?$")

IDENTITY_COLUMNS = {
    "ID",
    "Process ID",
    "Process Name",
    "Host Name",
    "Kernel Name",
    "Kernel Time",
    "Context",
    "Stream",
    "Block Size",
    "Grid Size",
    "Device",
    "CC",
    "Section Name",
    "Metric Name",
    "Metric Unit",
    "Metric Value",
}


def to_number(text: str, unit: str = "") -> float | None:
    """A CSV cell as a float in base units; None for `n/a`, empty or non-numeric cells."""
    text = text.strip()
    if not _NUMBER.match(text):
        return None
    value = float(text.replace(",", ""))
    unit = unit.strip()
    per_second = _PER_SECOND.match(unit)
    if per_second:
        unit = per_second.group("unit")
    return value * _SCALE.get(unit, 1.0)


def parse_csv(text: str) -> list[KernelLaunch]:
    """Every launch in ncu's CSV output, in order; lines before the header are skipped."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith('"ID"')), None)
    if start is None:
        return []
    rows = list(csv.reader(io.StringIO("\n".join(lines[start:]))))
    header, body = rows[0], [r for r in rows[1:] if r and not r[0].startswith("==")]
    if "Metric Name" in header:
        return _parse_details(header, body)
    return _parse_raw(header, body)


def _parse_raw(header: list[str], body: list[list[str]]) -> list[KernelLaunch]:
    col = {name: i for i, name in enumerate(header)}
    units = [""] * len(header)
    if body and not body[0][col["ID"]].strip():  # the units row
        units = body[0] + [""] * (len(header) - len(body[0]))
        body = body[1:]
    launches = []
    for row in body:
        row = row + [""] * (len(header) - len(row))
        launch = KernelLaunch(
            name=row[col["Kernel Name"]],
            block=row[col["Block Size"]] if "Block Size" in col else "",
            grid=row[col["Grid Size"]] if "Grid Size" in col else "",
        )
        for i, name in enumerate(header):
            if name not in IDENTITY_COLUMNS:
                launch.values[name] = to_number(row[i], units[i])
        launches.append(launch)
    return launches


def _parse_details(header: list[str], body: list[list[str]]) -> list[KernelLaunch]:
    col = {name: i for i, name in enumerate(header)}
    by_id: dict[str, KernelLaunch] = {}
    for row in body:
        if len(row) < len(header):
            continue
        launch_id = row[col["ID"]]
        launch = by_id.get(launch_id)
        if launch is None:
            launch = by_id[launch_id] = KernelLaunch(
                name=row[col["Kernel Name"]],
                block=row[col["Block Size"]] if "Block Size" in col else "",
                grid=row[col["Grid Size"]] if "Grid Size" in col else "",
            )
        value = to_number(row[col["Metric Value"]], row[col["Metric Unit"]])
        launch.values[row[col["Metric Name"]]] = value
    return list(by_id.values())


# What ncu prints when it cannot read the counters, and what to tell the user. The permission fix
# is NVIDIA's narrow driver option, never a blanket sudo rule.
PERMISSION_CODE = "ERR_NVGPUCTRPERM"
PERMISSION_HELP = (
    "GPU performance counters are restricted to administrators (ERR_NVGPUCTRPERM). Allow them for "
    "all users with the driver option `options nvidia NVreg_RestrictProfilingToAdminUsers=0` in a "
    "file under /etc/modprobe.d/, then reload the driver or reboot (on a container host, set it "
    "on the host); see https://developer.nvidia.com/ERR_NVGPUCTRPERM."
)
MISSING_HELP = (
    "Nsight Compute (ncu) was not found: install it (it ships with the CUDA toolkit, or from "
    "developer.nvidia.com/nsight-compute) or point KERNELWRIGHT_NCU at the ncu executable."
)


def diagnose(output: str) -> tuple[str, bool] | None:
    """(message, permanent) for an ncu failure found in its output, or None if none is.

    `permanent` failures (no permission, no supported GPU, a driver too old) will fail the same
    way for every candidate, so a loop stops asking after the first.
    """
    if PERMISSION_CODE in output:
        return PERMISSION_HELP, True
    lowered = output.lower()
    if "driver" in lowered and ("newer" in lowered or "too old" in lowered or "version" in lowered):
        line = _first_error(output) or "ncu reports the driver cannot be used"
        return f"Nsight Compute cannot use this driver: {line}", True
    if ("not supported" in lowered and "gpu" in lowered) or "unsupported gpu" in lowered:
        line = _first_error(output) or "this GPU is not supported"
        return (
            f"Nsight Compute does not support this GPU: {line}",
            True,
        )
    line = _first_error(output)
    if line:
        return f"ncu failed: {line}", False
    return None


def _first_error(output: str) -> str:
    for line in output.splitlines():
        if line.startswith("==ERROR=="):
            return line.removeprefix("==ERROR==").strip()
    return ""
