"""Timing of candidates against the reference, and the environment each timing ran in.

`timing` runs inside the evaluation worker (it calls the models); `environment` reads torch, the
CPU and, where present, NVML. Nsight Compute metrics and roofline figures come with the profiler
issue.
"""
