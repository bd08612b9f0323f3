"""Checks of numeric options, shared by `evaluate`, `optimize`, `bench` and the settings file.

A value that cannot work (NaN, a negative tolerance, a time limit of zero, a seed torch cannot
take) is bad input: one line naming the option, exit code 2, before anything runs. Without these,
NaN slipped through every comparison (`diff > NaN` is never true, so any output passed) and a
negative time limit blamed the problem.

Each rule returns what is wrong ("must be at least 1") or None, so that the caller can name where
the value came from: a flag (`--rounds`), a key of config.toml or a KERNELWRIGHT_* variable.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from kernelwright.errors import BadInput

SEED_LIMIT = 2**62  # seeds get offsets added per case; torch takes 64 bits

Rule = Callable[[float | int | None], str | None]


def at_least_one_rule(value: float | int | None) -> str | None:
    return "must be at least 1" if value is not None and value < 1 else None


def above_zero_rule(value: float | int | None) -> str | None:
    if value is not None and not (math.isfinite(value) and value > 0):
        return f"must be a finite number above 0 (got {value:g})"
    return None


def zero_or_more_rule(value: float | int | None) -> str | None:
    if value is not None and not (math.isfinite(value) and value >= 0):
        return f"must be a finite number of at least 0 (got {value:g})"
    return None


def seed_rule(value: float | int | None) -> str | None:
    if value is not None and not -SEED_LIMIT < value < SEED_LIMIT:
        return "must lie between -2**62 and 2**62"
    return None


def _flag(name: str, problem: str | None) -> None:
    if problem is not None:
        raise BadInput(f"--{name} {problem}")


def at_least_one(name: str, value: int | None) -> None:
    _flag(name, at_least_one_rule(value))


def above_zero(name: str, value: float | None) -> None:
    _flag(name, above_zero_rule(value))


def zero_or_more(name: str, value: float | None) -> None:
    _flag(name, zero_or_more_rule(value))


def seed(value: int | None) -> None:
    _flag("seed", seed_rule(value))


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
