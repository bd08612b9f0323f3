"""Correctness of a candidate against the PyTorch reference, never in the orchestrating process.

`session` drives two isolated workers (`worker`): one computes the reference outputs on seeded
cases, the other runs the candidate on the same cases (and, once it is correct, times it). The
comparison (`compare`, with the per-dtype `tolerances`) runs in the parent on the CPU copies the
workers wrote, so candidate code never sees the reference outputs or the comparator.
"""
