"""Timing of candidates against the reference, and the environment each timing ran in.

`timing` runs inside the evaluation worker (it calls the models); `environment` reads torch, the
CPU and, where present, NVML; `ncu`, `ncu_metrics` and `roofline` hold the Nsight Compute
command line, metric set and report reader, and the roofline figures the judge reads.
"""
