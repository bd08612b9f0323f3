"""From ncu launches to one summary per kernel: roofline figures, a class, the judge's block.

Per kernel, launches are combined: counts and durations add up, percentages and rates are
averaged weighted by duration, launch facts are the last launch's. Then:

- bytes moved = DRAM reads + writes; FLOPs = the FP instruction counts (an FMA is two) plus the
  tensor-core operation counts, per precision;
- achieved bandwidth and throughput = bytes or FLOPs over ncu's duration, and their share of
  the GPU sheet's dense peaks (the precision doing the most FLOPs is compared with its peak);
- the class, from ncu's speed-of-light ratios: neither the SM nor the memory system reaches
  60 % of its peak → `latency` (too little parallelism or too many stalls to load either),
  otherwise whichever is higher → `memory` or `compute`. Without those ratios the shares of the
  sheet's peaks stand in for them.

ncu locks the clocks at base for its counters, so its durations run long for compute-bound
kernels; the speed figures of record are the harness's timings, and the block says so.
"""

from __future__ import annotations

from typing import Any

from kernelwright.profiler import ncu_metrics as m
from kernelwright.profiler.ncu import KernelLaunch

BUSY_PCT = 60.0  # a unit at or above this share of its peak is what limits the kernel

# The sheet's peak for each FLOP precision kernelwright counts (TFLOP/s keys of gpu_sheets.toml).
PEAK_KEYS = {
    "fp32": "fp32_tflops",
    "tensor_fp16_bf16": "fp16_bf16_tflops",
    "tensor_tf32": "tf32_tflops",
    "tensor_fp8": "fp8_tflops",
}
LIMITS = {
    "launch__occupancy_limit_blocks": "blocks per SM",
    "launch__occupancy_limit_registers": "registers",
    "launch__occupancy_limit_shared_mem": "shared memory",
    "launch__occupancy_limit_warps": "warps per SM",
}


def own_name(launch_name: str, kernels: list[str]) -> str:
    """The candidate's kernel a demangled launch name belongs to (its own text if none)."""
    head = launch_name.split("(", 1)[0].split("<", 1)[0]
    base = head.rsplit(" ", 1)[-1].rsplit("::", 1)[-1]
    return base if base in kernels or not kernels else launch_name


def combine(launches: list[KernelLaunch]) -> dict[str, float | None]:
    """One kernel's launches as one set of values (see the module docstring)."""
    weights = [(launch.values.get(m.DURATION) or 0.0) for launch in launches]
    names = {name for launch in launches for name in launch.values}
    combined: dict[str, float | None] = {}
    for name in sorted(names):
        pairs = [(launch.values.get(name), w) for launch, w in zip(launches, weights, strict=True)]
        present = [(v, w) for v, w in pairs if v is not None]
        if not present:
            combined[name] = None
        elif name.startswith("launch__") or name == m.THEORETICAL_OCCUPANCY:
            combined[name] = present[-1][0]
        elif name.endswith(".sum"):
            combined[name] = sum(v for v, _ in present)
        else:
            total = sum(w for _, w in present)
            if total > 0:
                combined[name] = sum(v * w for v, w in present) / total
            else:
                combined[name] = sum(v for v, _ in present) / len(present)
    return combined


def summarize(
    launches: list[KernelLaunch], kernels: list[str], sheet: dict[str, Any]
) -> list[dict[str, Any]]:
    """One summary per kernel, slowest first."""
    groups: dict[str, list[KernelLaunch]] = {}
    for launch in launches:
        groups.setdefault(own_name(launch.name, kernels), []).append(launch)
    summaries = [_summary(name, group, sheet) for name, group in groups.items()]
    return sorted(summaries, key=lambda s: -(s["duration_ms"] or 0.0))


def _summary(name: str, launches: list[KernelLaunch], sheet: dict[str, Any]) -> dict[str, Any]:
    v = combine(launches)
    duration_ns = v.get(m.DURATION)
    seconds = duration_ns / 1e9 if duration_ns else None
    read, write = v.get(m.DRAM_READ), v.get(m.DRAM_WRITE)
    dram_bytes = (read or 0.0) + (write or 0.0) if read is not None or write is not None else None
    flops: dict[str, float] = {}
    for precision, metric, per_count in m.FLOP_COUNTERS:
        count = v.get(metric)
        if count:
            flops[precision] = flops.get(precision, 0.0) + count * per_count
    total_flops = sum(flops.values())
    summary: dict[str, Any] = {
        "kernel": name,
        "launches": len(launches),
        "duration_ms": duration_ns / 1e6 if duration_ns is not None else None,
        "sm_pct": v.get(m.SM_PCT),
        "memory_pct": v.get(m.MEMORY_PCT),
        "dram_pct": v.get(m.DRAM_PCT),
        "occupancy_pct": v.get(m.OCCUPANCY),
        "theoretical_occupancy_pct": v.get(m.THEORETICAL_OCCUPANCY),
        "tensor_pct": v.get(m.TENSOR_PCT),
        "dram_bytes": dram_bytes,
        "flops": flops,
        "arithmetic_intensity": total_flops / dram_bytes if dram_bytes else None,
        "block": launches[-1].block,
        "grid": launches[-1].grid,
        "metrics": v,
    }
    summary.update(_rates(seconds, dram_bytes, flops, sheet))
    summary["bound"] = classify(summary)
    return summary


def _rates(
    seconds: float | None, dram_bytes: float | None, flops: dict[str, float], sheet: dict[str, Any]
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "achieved_tbps": None,
        "bandwidth_pct_of_peak": None,
        "precision": None,
        "achieved_tflops": None,
        "compute_pct_of_peak": None,
        "ridge_flop_per_byte": None,
    }
    peak_tbps = sheet.get("dram_tbps") if sheet.get("known") else None
    if seconds and dram_bytes is not None:
        out["achieved_tbps"] = dram_bytes / seconds / 1e12
        if peak_tbps:
            out["bandwidth_pct_of_peak"] = 100.0 * out["achieved_tbps"] / peak_tbps
    if seconds and flops:
        precision = max(flops, key=lambda p: flops[p])
        out["precision"] = precision
        out["achieved_tflops"] = flops[precision] / seconds / 1e12
        peak = sheet.get(PEAK_KEYS.get(precision, "")) if sheet.get("known") else None
        if peak:
            out["compute_pct_of_peak"] = 100.0 * out["achieved_tflops"] / peak
            if peak_tbps:
                out["ridge_flop_per_byte"] = peak / peak_tbps  # TFLOP/s over TB/s
    return out


def classify(summary: dict[str, Any]) -> str | None:
    """`memory`, `compute` or `latency` (see the module docstring); None without figures."""
    sm, memory = summary.get("sm_pct"), summary.get("memory_pct")
    if sm is None or memory is None:
        sm = summary.get("compute_pct_of_peak")
        memory = summary.get("bandwidth_pct_of_peak")
    if sm is None and memory is None:
        return None
    sm, memory = sm or 0.0, memory or 0.0
    if max(sm, memory) < BUSY_PCT:
        return "latency"
    return "memory" if memory >= sm else "compute"


def occupancy_limiter(values: dict[str, float | None]) -> str | None:
    """What caps the blocks per SM below full occupancy: the launch limits with the lowest
    block count (ties named together); None when occupancy is not capped or is unknown."""
    theoretical = values.get(m.THEORETICAL_OCCUPANCY)
    if theoretical is not None and theoretical >= 99.5:
        return None
    known = {label: values[name] for name, label in LIMITS.items() if values.get(name) is not None}
    if not known:
        return None
    lowest = min(known.values())
    return ", ".join(label for label, v in known.items() if v == lowest)


def judge_block(summary: dict[str, Any]) -> dict[str, str]:
    """One kernel's figures as short labelled lines for the judge's prompt."""
    v = summary["metrics"]
    lines: dict[str, str] = {}
    if summary["duration_ms"] is not None:
        launches = summary["launches"]
        lines["time"] = (
            f"{_ms(summary['duration_ms'])} over {launches} launch{'es' if launches > 1 else ''}"
        )
    if summary["bound"]:
        lines["bound"] = (
            f"{summary['bound']} (SM {_pct(summary['sm_pct'])}, memory "
            f"{_pct(summary['memory_pct'])}, DRAM {_pct(summary['dram_pct'])} of peak)"
        )
    if summary["achieved_tbps"] is not None:
        share = summary["bandwidth_pct_of_peak"]
        lines["dram"] = (
            f"{summary['achieved_tbps']:.3g} TB/s"
            + (f" ({share:.0f}% of the sheet's peak)" if share is not None else "")
            + f", {_bytes(summary['dram_bytes'])} moved"
        )
    if summary["achieved_tflops"] is not None:
        share = summary["compute_pct_of_peak"]
        ai = summary["arithmetic_intensity"]
        ridge = summary["ridge_flop_per_byte"]
        lines["compute"] = (
            f"{summary['achieved_tflops']:.3g} TFLOP/s {summary['precision']}"
            + (f" ({share:.0f}% of peak)" if share is not None else "")
            + (f", {ai:.3g} FLOP/byte" if ai is not None else "")
            + (f" (ridge {ridge:.3g})" if ridge is not None else "")
        )
    if summary["tensor_pct"] is not None:
        lines["tensor cores"] = f"{_pct(summary['tensor_pct'])} of cycles active"
    occupancy = f"{_pct(summary['occupancy_pct'])} achieved"
    if summary["theoretical_occupancy_pct"] is not None:
        occupancy += f", {_pct(summary['theoretical_occupancy_pct'])} theoretical"
    limiter = occupancy_limiter(v)
    lines["occupancy"] = occupancy + (f" (limited by {limiter})" if limiter else "")
    launch = [f"grid {summary['grid']}" if summary["grid"] else ""]
    launch.append(f"block {summary['block']}" if summary["block"] else "")
    if v.get("launch__registers_per_thread") is not None:
        launch.append(f"{v['launch__registers_per_thread']:.0f} registers/thread")
    smem = (v.get("launch__shared_mem_per_block_static") or 0.0) + (
        v.get("launch__shared_mem_per_block_dynamic") or 0.0
    )
    launch.append(f"{_bytes(smem)} shared/block")
    if v.get("launch__waves_per_multiprocessor") is not None:
        launch.append(f"{v['launch__waves_per_multiprocessor']:.3g} waves")
    lines["launch"] = ", ".join(part for part in launch if part)
    lines["caches"] = (
        f"L1 hit {_pct(v.get('l1tex__t_sector_hit_rate.pct'))}, "
        f"L2 hit {_pct(v.get('lts__t_sector_hit_rate.pct'))}"
    )
    coalescing = _ratio(
        v.get("l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum"),
        v.get("l1tex__t_requests_pipe_lsu_mem_global_op_ld.sum"),
    )
    if coalescing is not None:
        lines["global loads"] = (
            f"{coalescing:.3g} sectors/request (coalesced loads give 4 for 4-byte words, "
            "8 for 8-byte, 16 for 16-byte vectors)"
        )
    conflicts = [
        v.get("l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum"),
        v.get("l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_st.sum"),
    ]
    if any(c for c in conflicts):
        lines["shared bank conflicts"] = f"{sum(c or 0.0 for c in conflicts):.0f}"
    stalls = sorted(
        ((short, v.get(name)) for short, name in m.STALLS.items() if v.get(name)),
        key=lambda pair: -(pair[1] or 0.0),
    )[:3]
    if stalls:
        lines["top stalls"] = ", ".join(f"{short} {value:.0f}%" for short, value in stalls)
    return lines


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}%"


def _ms(value: float) -> str:
    return f"{value * 1000:.1f} us" if value < 1 else f"{value:.3f} ms"


def _bytes(value: float | None) -> str:
    if value is None:
        return "n/a"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if value >= size:
            return f"{value / size:.3g} {unit}"
    return f"{value:.0f} B"
