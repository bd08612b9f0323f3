"""What a timing ran on: software versions, the CPU, the GPU and its state from NVML.

NVML (nvidia-ml-py) readings are best effort: where the library or driver is missing, the record
says so instead of failing. A reading is flagged `throttled` when the clock-event reasons show a
hardware slowdown, thermal limit or power brake, or the SM clock is below 75 % of its maximum
(nvbench's rule); a software power cap alone is normal under load and is reported, not flagged.
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

import torch

# NVML clock-event reason bits that mean the GPU was slowed by something other than load.
GPU_IDLE = 0x1
HW_SLOWDOWN = 0x8
SW_THERMAL = 0x20
HW_THERMAL = 0x40
HW_POWER_BRAKE = 0x80
THROTTLE_BITS = HW_SLOWDOWN | HW_THERMAL | HW_POWER_BRAKE
REASON_NAMES = {
    GPU_IDLE: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    HW_SLOWDOWN: "hw_slowdown",
    0x10: "sync_boost",
    SW_THERMAL: "sw_thermal_slowdown",
    HW_THERMAL: "hw_thermal_slowdown",
    HW_POWER_BRAKE: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}


def software() -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu(device: torch.device) -> dict[str, Any]:
    props = torch.cuda.get_device_properties(device)
    return {
        "gpu": props.name,
        "compute_capability": f"{props.major}.{props.minor}",
        "sm_count": props.multi_processor_count,
        "memory_bytes": props.total_memory,
        "l2_bytes": getattr(props, "L2_cache_size", None),
    }


def _nvml_handle(device: torch.device) -> Any:
    import pynvml

    pynvml.nvmlInit()
    props = torch.cuda.get_device_properties(device)
    bus = getattr(props, "pci_bus_id", None)
    if bus is not None:
        bus_id = f"{props.pci_domain_id:08X}:{bus:02X}:{props.pci_device_id:02X}.0"
        try:
            return pynvml.nvmlDeviceGetHandleByPciBusId_v2(bus_id)
        except Exception:
            pass
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    return pynvml.nvmlDeviceGetHandleByIndex(int(visible) if visible.isdigit() else 0)


def nvml_reading(device: torch.device) -> dict[str, Any]:
    """Driver, clocks, power, temperature and clock-event reasons of `device`, now."""
    try:
        import pynvml

        handle = _nvml_handle(device)
        sm = pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM)
        sm_max = pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_SM)
        getter = getattr(pynvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
        getter = getter or pynvml.nvmlDeviceGetCurrentClocksThrottleReasons  # older name
        reasons = int(getter(handle))
        reading = {
            "driver": _text(pynvml.nvmlSystemGetDriverVersion()),
            "nvml_name": _text(pynvml.nvmlDeviceGetName(handle)),
            "sm_clock_mhz": sm,
            "sm_clock_max_mhz": sm_max,
            "mem_clock_mhz": pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_MEM),
            "power_w": pynvml.nvmlDeviceGetPowerUsage(handle) / 1000.0,
            "power_limit_w": pynvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0,
            "temperature_c": pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU),
            "clock_event_reasons": reasons,
            "clock_event_names": [n for bit, n in REASON_NAMES.items() if reasons & bit],
        }
        reading["throttled"] = is_throttled(reasons, sm, sm_max)
        return reading
    except Exception as exc:  # no library, no driver, no permission: say so, do not fail
        return {"nvml": f"unavailable: {type(exc).__name__}: {exc}"}


def is_throttled(reasons: int, sm_mhz: int, sm_max_mhz: int) -> bool:
    if reasons & THROTTLE_BITS:
        return True
    idle = bool(reasons & GPU_IDLE)  # an idle GPU parks its clock low; that is not throttling
    return not idle and sm_max_mhz > 0 and sm_mhz < 0.75 * sm_max_mhz


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def record(
    device: torch.device, before: dict[str, Any] | None, after: dict[str, Any] | None
) -> dict[str, Any]:
    """The environment of one timing: software, hardware and NVML before/after."""
    env: dict[str, Any] = {"device": str(device), **software()}
    if device.type == "cuda":
        env.update(gpu(device))
        env["nvml_before"] = before
        env["nvml_after"] = after
        readings = [r for r in (before, after) if r and "throttled" in r]
        env["driver"] = readings[0]["driver"] if readings else None
        env["throttled"] = any(r["throttled"] for r in readings)
    return env
