"""Checks of numeric options, shared by `evaluate`, `optimize` and `bench`.

A value that cannot work (NaN, a negative tolerance, a time limit of zero, a seed torch cannot
take) is bad input: one line naming the option, exit code 2, before anything runs. Without these,
NaN slipped through every comparison (`diff > NaN` is never true, so any output passed) and a
negative time limit blamed the problem.
"""

from __future__ import annotations

import math

from kernelwright.errors import BadInput

SEED_LIMIT = 2**62  # seeds get offsets added per case; torch takes 64 bits


def at_least_one(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise BadInput(f"--{name} must be at least 1")


def above_zero(name: str, value: float | None) -> None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise BadInput(f"--{name} must be a finite number above 0 (got {value:g})")


def zero_or_more(name: str, value: float | None) -> None:
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise BadInput(f"--{name} must be a finite number of at least 0 (got {value:g})")


def seed(value: int | None) -> None:
    if value is not None and not -SEED_LIMIT < value < SEED_LIMIT:
        raise BadInput("--seed must lie between -2**62 and 2**62")


def evaluation(
    trials: int,
    seed_value: int,
    atol: float | None,
    rtol: float | None,
    timeout_s: float,
    build_timeout_s: float,
) -> None:
    at_least_one("trials", trials)
    seed(seed_value)
    zero_or_more("atol", atol)
    zero_or_more("rtol", rtol)
    above_zero("timeout", timeout_s)
    above_zero("build-timeout", build_timeout_s)
