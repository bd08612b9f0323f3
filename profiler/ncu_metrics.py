"""The Nsight Compute metrics kernelwright collects, and what each one means to the judge.

Every hardware metric below is a valid name on sm_80 (GA100), sm_86 (GA102), sm_89 (AD102) and
sm_90 (GH100): `tests/test_profiler.py` checks each against NVIDIA's own metric tables through
the Perf SDK host library that ships with the CUDA toolkit (`libnvperf_host.so`, the source
`ncu --query-metrics` reads), so no GPU is needed to catch a bad name. Two metrics CudaForge
asks for fail that check on sm_90 and come back `n/a` from ncu on an H100
(`sm__inst_executed_pipe_fp32...`, `smsp__warp_issue_stalled_memory_dependency...`); they are
not here.

`launch__*` and `sm__maximum_warps_per_active_cycle_pct` are ncu's own launch statistics, not
Perf SDK counters; their names come from ncu output recorded on an H100.

Tensor-core operation counters are named differently per architecture, so they are picked by
compute capability (`metrics_for`).
"""

from __future__ import annotations

# Speed of light: ncu's own ratios of achieved to peak throughput (at its locked base clock).
DURATION = "gpu__time_duration.sum"
SM_PCT = "sm__throughput.avg.pct_of_peak_sustained_elapsed"
MEMORY_PCT = "gpu__compute_memory_throughput.avg.pct_of_peak_sustained_elapsed"
DRAM_PCT = "dram__throughput.avg.pct_of_peak_sustained_elapsed"
DRAM_READ = "dram__bytes_read.sum"
DRAM_WRITE = "dram__bytes_write.sum"
OCCUPANCY = "sm__warps_active.avg.pct_of_peak_sustained_active"
THEORETICAL_OCCUPANCY = "sm__maximum_warps_per_active_cycle_pct"
TENSOR_PCT = "sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_active"

HARDWARE = (
    DURATION,
    SM_PCT,
    MEMORY_PCT,
    DRAM_PCT,
    DRAM_READ,
    DRAM_WRITE,
    "l1tex__throughput.avg.pct_of_peak_sustained_active",
    "lts__throughput.avg.pct_of_peak_sustained_elapsed",
    "l1tex__t_sector_hit_rate.pct",
    "lts__t_sector_hit_rate.pct",
    OCCUPANCY,
    "gpc__cycles_elapsed.avg.per_second",
    # Coalescing: sectors per request (coalesced: 4 for 4-byte loads by a full warp, 16 for float4).
    "l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum",
    "l1tex__t_requests_pipe_lsu_mem_global_op_ld.sum",
    "l1tex__t_sectors_pipe_lsu_mem_global_op_st.sum",
    "l1tex__t_requests_pipe_lsu_mem_global_op_st.sum",
    "l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum",
    "l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_st.sum",
    # Where warps wait, as a share of their active cycles.
    "smsp__warp_issue_stalled_long_scoreboard_per_warp_active.pct",
    "smsp__warp_issue_stalled_short_scoreboard_per_warp_active.pct",
    "smsp__warp_issue_stalled_barrier_per_warp_active.pct",
    "smsp__warp_issue_stalled_mio_throttle_per_warp_active.pct",
    "smsp__warp_issue_stalled_lg_throttle_per_warp_active.pct",
    "smsp__warp_issue_stalled_math_pipe_throttle_per_warp_active.pct",
    "smsp__warp_issue_stalled_wait_per_warp_active.pct",
    "smsp__warp_issue_stalled_not_selected_per_warp_active.pct",
    "smsp__warp_issue_stalled_membar_per_warp_active.pct",
    "smsp__warp_issue_stalled_branch_resolving_per_warp_active.pct",
    "smsp__sass_average_branch_targets_threads_uniform.pct",
    "smsp__inst_executed.sum",
    # Non-tensor floating-point work: thread instructions, an FMA counting as two FLOPs.
    "sm__sass_thread_inst_executed_op_fadd_pred_on.sum",
    "sm__sass_thread_inst_executed_op_fmul_pred_on.sum",
    "sm__sass_thread_inst_executed_op_ffma_pred_on.sum",
    "sm__sass_thread_inst_executed_op_hadd_pred_on.sum",
    "sm__sass_thread_inst_executed_op_hmul_pred_on.sum",
    "sm__sass_thread_inst_executed_op_hfma_pred_on.sum",
    "sm__sass_thread_inst_executed_op_dadd_pred_on.sum",
    "sm__sass_thread_inst_executed_op_dmul_pred_on.sum",
    "sm__sass_thread_inst_executed_op_dfma_pred_on.sum",
    TENSOR_PCT,
    "sm__ops_path_tensor_src_bf16_dst_fp32.sum",
    "sm__ops_path_tensor_src_tf32_dst_fp32.sum",
    "sm__ops_path_tensor_src_fp64.sum",
)

LAUNCH = (
    "launch__grid_size",
    "launch__block_size",
    "launch__registers_per_thread",
    "launch__shared_mem_per_block_static",
    "launch__shared_mem_per_block_dynamic",
    "launch__waves_per_multiprocessor",
    "launch__occupancy_limit_blocks",
    "launch__occupancy_limit_registers",
    "launch__occupancy_limit_shared_mem",
    "launch__occupancy_limit_warps",
    THEORETICAL_OCCUPANCY,
)

# fp16 (and fp8) tensor operations: Ampere and Ada count them by accumulator type, Hopper does not.
TENSOR_BY_ARCH = {
    (8, 0): (
        "sm__ops_path_tensor_src_fp16_dst_fp32.sum",
        "sm__ops_path_tensor_src_fp16_dst_fp16.sum",
    ),
    (8, 6): (
        "sm__ops_path_tensor_src_fp16_dst_fp32.sum",
        "sm__ops_path_tensor_src_fp16_dst_fp16.sum",
    ),
    (8, 9): (
        "sm__ops_path_tensor_src_fp16_dst_fp32.sum",
        "sm__ops_path_tensor_src_fp16_dst_fp16.sum",
        "sm__ops_path_tensor_src_fp8.sum",
    ),
    (9, 0): ("sm__ops_path_tensor_src_fp16.sum", "sm__ops_path_tensor_src_fp8.sum"),
}

# The Perf SDK's chip name for each compute capability the table covers (for the name check).
CHIPS = {(8, 0): "GA100", (8, 6): "GA102", (8, 9): "AD102", (9, 0): "GH100"}

# (precision, metric, FLOPs per count). Tensor "ops" are the hardware's math operations, which
# NVIDIA counts the way its peak TFLOP/s figures do (a multiply-add is two).
FLOP_COUNTERS = (
    ("fp32", "sm__sass_thread_inst_executed_op_fadd_pred_on.sum", 1),
    ("fp32", "sm__sass_thread_inst_executed_op_fmul_pred_on.sum", 1),
    ("fp32", "sm__sass_thread_inst_executed_op_ffma_pred_on.sum", 2),
    ("fp16", "sm__sass_thread_inst_executed_op_hadd_pred_on.sum", 1),
    ("fp16", "sm__sass_thread_inst_executed_op_hmul_pred_on.sum", 1),
    ("fp16", "sm__sass_thread_inst_executed_op_hfma_pred_on.sum", 2),
    ("fp64", "sm__sass_thread_inst_executed_op_dadd_pred_on.sum", 1),
    ("fp64", "sm__sass_thread_inst_executed_op_dmul_pred_on.sum", 1),
    ("fp64", "sm__sass_thread_inst_executed_op_dfma_pred_on.sum", 2),
    ("tensor_fp16_bf16", "sm__ops_path_tensor_src_bf16_dst_fp32.sum", 1),
    ("tensor_fp16_bf16", "sm__ops_path_tensor_src_fp16_dst_fp32.sum", 1),
    ("tensor_fp16_bf16", "sm__ops_path_tensor_src_fp16_dst_fp16.sum", 1),
    ("tensor_fp16_bf16", "sm__ops_path_tensor_src_fp16.sum", 1),
    ("tensor_tf32", "sm__ops_path_tensor_src_tf32_dst_fp32.sum", 1),
    ("tensor_fp8", "sm__ops_path_tensor_src_fp8.sum", 1),
    ("tensor_fp64", "sm__ops_path_tensor_src_fp64.sum", 1),
)

# Warp stall reasons, by the short name the judge sees.
STALLS = {
    name.split("stalled_", 1)[1].split("_per_warp", 1)[0]: name
    for name in HARDWARE
    if name.startswith("smsp__warp_issue_stalled_")
}


def metrics_for(capability: tuple[int, int] | None) -> list[str]:
    """The names to request on a GPU of this compute capability (None: unknown)."""
    extra = TENSOR_BY_ARCH.get(capability, ()) if capability else ()
    return [*HARDWARE, *extra, *LAUNCH]
