"""The name of every anti-cheat check, static and run-time, in one place.

A check's name is what a rejection's reason starts with (`rejected by torch_compute: ...`) and
what a warning is stored under, so it is part of the results' format: the values never change
once released. `Check` is a `StrEnum`, so a member compares equal to its string and reads as it
(`f"{Check.THREADS}" == "threads"`) wherever a plain string was used before.

Each name is described in docs/checks.md (a test holds the table and this enum to each other).
Imported as `kernelwright.check_names` from any stage, or `kernelwright.verifier.check_names`.
"""

from __future__ import annotations

from enum import StrEnum


class Check(StrEnum):
    # -- static: the Python module's AST (verifier/static) ----------------------------------
    TORCH_COMPUTE = "torch_compute"  # also run-time: the ATen op record
    TORCH_COMPUTE_PARTIAL = "torch_compute_partial"  # also run-time
    NO_CUSTOM_KERNEL = "no_custom_kernel"
    TRY_FALLBACK = "try_fallback"
    HOST_COMPUTE = "host_compute"
    INHERITS_REFERENCE = "inherits_reference"
    TENSOR_SUBCLASS = "tensor_subclass"
    PATCHING = "patching"
    FRAME_SNOOPING = "frame_snooping"
    HARNESS_ACCESS = "harness_access"
    PROCESS_EXIT = "process_exit"
    PHASE_PROBE = "phase_probe"
    ENV_ACCESS = "env_access"
    FILE_REPLAY = "file_replay"
    NETWORK = "network"
    THREADS = "threads"  # also run-time: threads left running (verifier/guards.py)
    STREAMS = "streams"
    # -- static: the embedded C++/CUDA text (compiler/native_checks.py) ----------------------
    PERSISTING_L2 = "persisting_l2"
    RESULT_CACHE = "result_cache"
    PROCESS_HOOKS = "process_hooks"
    PYTHON_FROM_NATIVE = "python_from_native"
    LIBRARY_COMPUTE = "library_compute"
    PRECISION = "precision"
    DISPATCH_BYPASS = "dispatch_bypass"  # also Python: switching modes or dispatch keys off
    # -- the audit of what was built (compiler/audit.py) -------------------------------------
    NATIVE_SYMBOLS = "native_symbols"
    NATIVE_PREPROCESSED = "native_preprocessed"
    # -- run-time: the candidate's worker and the parent ------------------------------------
    OP_RECORD_TAMPERED = "op_record_tampered"
    PATCHED_HARNESS = "patched_harness"
    INPUTS_MODIFIED = "inputs_modified"
    OUTPUT_TYPE = "output_type"
    OWN_KERNELS_NOT_LAUNCHED = "own_kernels_not_launched"
    KERNEL_LAUNCH_CHECK = "kernel_launch_check"
    RESULT_CHANNEL = "result_channel"
    RECHECK_AFTER_TIMING = "recheck_after_timing"
    SPOT_CHECK = "spot_check"
    CLOCK_MISMATCH = "clock_mismatch"
    HIDDEN_WORK = "hidden_work"
    TIMING = "timing"
    IMPLAUSIBLE_SPEEDUP = "implausible_speedup"


# Checks the static pre-screen can report (`kernelwright check`); the rest fire while running.
STATIC_CHECKS = frozenset(
    {
        Check.TORCH_COMPUTE,
        Check.TORCH_COMPUTE_PARTIAL,
        Check.NO_CUSTOM_KERNEL,
        Check.TRY_FALLBACK,
        Check.HOST_COMPUTE,
        Check.INHERITS_REFERENCE,
        Check.TENSOR_SUBCLASS,
        Check.PATCHING,
        Check.FRAME_SNOOPING,
        Check.HARNESS_ACCESS,
        Check.PROCESS_EXIT,
        Check.PHASE_PROBE,
        Check.ENV_ACCESS,
        Check.FILE_REPLAY,
        Check.NETWORK,
        Check.THREADS,
        Check.STREAMS,
        Check.PERSISTING_L2,
        Check.RESULT_CACHE,
        Check.PROCESS_HOOKS,
        Check.PYTHON_FROM_NATIVE,
        Check.LIBRARY_COMPUTE,
        Check.PRECISION,
        Check.DISPATCH_BYPASS,
    }
)
