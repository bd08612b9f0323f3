"""New input values before every timed sample (verifier/fresh_inputs.py), without a worker."""

from __future__ import annotations

import time
import types

import torch
from kernelwright.verifier.cases import Case
from kernelwright.verifier.fresh_inputs import InputRefresher

CPU = torch.device("cpu")


def _problem(get_inputs, **globals_):
    module = types.ModuleType("kw_fake_problem")
    module.get_inputs = get_inputs
    module.__dict__.update(globals_)
    return module


def _rows_problem():
    module = _problem(None, rows=4, cols=8)
    module.get_inputs = lambda: [
        torch.randn(module.rows, module.cols),
        torch.randint(0, module.cols, (module.rows,)),
    ]
    return module


def test_each_call_writes_new_values_into_the_same_tensors():
    problem = _rows_problem()
    targets = problem.get_inputs()
    addresses = [t.data_ptr() for t in targets]
    refresh = InputRefresher(problem, Case(0, "trial 0", 1), targets, CPU, budget_s=60.0)
    seen = [targets[0].clone()]
    for _ in range(5):
        refresh()
        assert [t.data_ptr() for t in targets] == addresses
        assert all(not torch.equal(targets[0], old) for old in seen)
        seen.append(targets[0].clone())
        assert targets[1].dtype == torch.int64 and bool((targets[1] < 8).all())  # valid indices
    assert refresh.summary()["refreshed"] == 5 and not refresh.over_budget


def test_seeds_are_not_the_cases_own():
    problem = _rows_problem()
    case = Case(0, "trial 0", 1)
    a, b = problem.get_inputs(), problem.get_inputs()
    InputRefresher(problem, case, a, CPU, 60.0)()
    InputRefresher(problem, case, b, CPU, 60.0)()
    assert not torch.equal(a[0], b[0])  # two refreshers drew different seeds


def test_the_case_overrides_apply_and_a_new_shape_replaces_the_entry():
    problem = _rows_problem()
    targets = problem.get_inputs()
    case = Case(3, "extra shape", 1, {"rows": 2, "cols": 3})
    InputRefresher(problem, case, targets, CPU, 60.0)()
    assert targets[0].shape == (2, 3) and targets[1].shape == (2,)
    assert problem.rows == 4  # undone afterwards


def test_the_get_inputs_taken_at_the_start_is_the_one_used():
    problem = _rows_problem()
    targets = problem.get_inputs()
    refresh = InputRefresher(problem, Case(0, "t", 1), targets, CPU, 60.0)
    constant = [torch.zeros(4, 8), torch.zeros(4, dtype=torch.int64)]
    problem.get_inputs = lambda: constant  # a rebinding after the start does not reach it
    refresh()
    assert not torch.equal(targets[0], constant[0])


def test_a_get_inputs_that_fails_on_the_device_is_made_on_the_cpu():
    def get_inputs():
        x = torch.randn(3, 5)
        x.numpy()  # needs real values: fails where tensors are made on the "meta" device
        return [x]

    problem = _problem(get_inputs)
    targets = [torch.zeros(3, 5)]
    InputRefresher(problem, Case(0, "t", 1), targets, torch.device("meta"), 60.0)()
    assert targets[0].device.type == "cpu" and bool((targets[0] != 0).any())


def test_a_slow_get_inputs_shortens_the_timing_and_never_repeats_values():
    # Reusing values once the budget is spent would let a content-keyed memo replay (its outputs
    # are right, so no check catches it): instead fewer rounds run, each call with new values.
    from kernelwright.profiler import timing
    from kernelwright.verifier import fresh_inputs

    rows = _rows_problem()

    def slow_inputs():
        time.sleep(0.02)
        return rows.get_inputs()

    problem = _problem(slow_inputs)
    sides = (problem.get_inputs(), problem.get_inputs())
    seen: list[torch.Tensor] = []

    def first():
        return sides[0][0] * 2

    def second():
        seen.append(sides[1][0].clone())
        return sides[1][0] * 2

    settings = timing.TimingSettings(
        rounds=6,
        warmup_calls=0,
        warmup_s=0.0,
        min_samples=3,
        max_samples=3,
        host_calls=1,
        refresh_budget_s=0.01,  # spent by the first call
    )
    clock = timing.make_clock(CPU)
    case = Case(0, "t", 1)
    report = fresh_inputs.measure(first, second, clock, settings, problem, case, sides, CPU)
    assert len(report.round_ratios) == 2  # one round in each order, then no more
    assert all(not torch.equal(a, b) for i, a in enumerate(seen) for b in seen[i + 1 :])
    refresh = report.input_refresh
    assert refresh["refreshed"] == 2 * (2 * 3 + 1)  # every sample and host call, both sides
    assert "get_inputs() is slow" in refresh["note"] and "after 2 of 6 rounds" in refresh["note"]


def test_measure_gives_each_side_new_values_before_every_call_and_reports_them():
    from kernelwright.profiler import timing
    from kernelwright.verifier import fresh_inputs

    problem = _rows_problem()
    sides = (problem.get_inputs(), problem.get_inputs())
    seen: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])

    def call(side: int):
        def run():
            seen[side].append(sides[side][0].clone())
            return sides[side][0] * 2

        return run

    # no warm-up calls (those are untimed and may repeat values): every call here is a timed one
    settings = timing.TimingSettings(
        rounds=2, warmup_calls=0, warmup_s=0.0, min_samples=3, max_samples=3, host_calls=2
    )
    clock = timing.make_clock(CPU)
    case = Case(0, "t", 1)
    report = fresh_inputs.measure(call(0), call(1), clock, settings, problem, case, sides, CPU)
    for values in seen:
        assert len(values) >= 2
        # no two calls of one side ever saw the same values
        assert all(not torch.equal(a, b) for i, a in enumerate(values) for b in values[i + 1 :])
    refresh = report.input_refresh
    assert refresh["refreshed"] == len(seen[0]) + len(seen[1]) and refresh["note"] == ""
