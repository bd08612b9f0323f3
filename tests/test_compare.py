"""Output comparison: structure, dtypes, tolerances per dtype, NaN and error reporting."""

from __future__ import annotations

import pytest
import torch
from kernelwright.verifier.compare import compare
from kernelwright.verifier.tolerances import Tolerance

DEFAULT = Tolerance()


def test_identical_tensors_pass_with_zero_error():
    x = torch.randn(8, 8)
    result = compare(x, x.clone(), DEFAULT)
    assert result.ok and result.max_abs_error == 0.0 and result.max_rel_error == 0.0


@pytest.mark.parametrize(
    ("dtype", "inside", "outside"),
    [(torch.float32, 5e-5, 5e-4), (torch.float16, 4e-3, 5e-2), (torch.bfloat16, 4e-3, 5e-2)],
)
def test_tolerance_table_per_dtype(dtype, inside, outside):
    ref = torch.zeros(16, dtype=dtype)  # |ref| = 0: only atol applies
    assert compare(ref, ref + inside, DEFAULT).ok
    result = compare(ref, ref + outside, DEFAULT)
    assert not result.ok and "16 of 16 elements out of tolerance" in result.reason


def test_relative_part_scales_with_the_reference():
    ref = torch.full((4,), 1000.0)
    assert compare(ref, ref + 0.05, DEFAULT).ok  # 1e-4 + 1e-4 * 1000 = 0.1001
    assert not compare(ref, ref + 0.2, DEFAULT).ok


def test_flags_override_every_float_dtype():
    ref = torch.zeros(4)
    assert compare(ref, ref + 0.5, Tolerance(atol=1.0, rtol=0.0)).ok
    assert not compare(ref.half(), ref.half() + 0.5, Tolerance(atol=0.1)).ok


def test_reason_names_the_worst_element():
    ref = torch.zeros(3, 4)
    cand = ref.clone()
    cand[1, 2] = 7.0
    cand[0, 0] = 1.0
    result = compare(ref, cand, DEFAULT)
    assert not result.ok
    assert "2 of 12" in result.reason and "(1, 2)" in result.reason and "got 7" in result.reason
    assert result.max_abs_error == 7.0


@pytest.mark.parametrize(
    ("ref", "cand", "fragment"),
    [
        (torch.zeros(4), torch.zeros(5), "shape (5,)"),
        (torch.zeros(4), torch.zeros(4, dtype=torch.float64), "dtype torch.float64"),
        ((torch.zeros(2), torch.zeros(2)), torch.zeros(2), "expected a tuple"),
        ((torch.zeros(2), torch.zeros(2)), (torch.zeros(2),), "expected 2 outputs"),
        (torch.zeros(2), (torch.zeros(2),), "expected a tensor"),
        (torch.zeros(2, dtype=torch.int64), torch.tensor([0, 1]), "exact match"),
    ],
)
def test_structure_and_dtype_must_match_exactly(ref, cand, fragment):
    result = compare(ref, cand, DEFAULT)
    assert not result.ok and fragment in result.reason


def test_a_list_may_stand_for_a_tuple():
    """A C++ function returning std::vector<Tensor> hands Python a list."""
    pair = (torch.ones(2), torch.zeros(3))
    assert compare(pair, list(pair), DEFAULT).ok
    assert compare(list(pair), pair, DEFAULT).ok
    assert not compare(pair, [torch.ones(2), torch.ones(3)], DEFAULT).ok


def test_every_output_of_a_tuple_is_compared():
    ref = (torch.ones(3), torch.zeros(3))
    bad_second = (torch.ones(3), torch.ones(3))
    result = compare(ref, bad_second, DEFAULT)
    assert not result.ok and result.reason.startswith("output[1]")


def test_nan_must_match_positions():
    ref = torch.tensor([1.0, float("nan"), 3.0])
    assert compare(ref, ref.clone(), DEFAULT).ok
    assert "NaN" in compare(ref, torch.tensor([1.0, 2.0, 3.0]), DEFAULT).reason
    assert "NaN" in compare(torch.ones(3), torch.tensor([1.0, float("nan"), 1.0]), DEFAULT).reason


def test_infinities_must_match():
    ref = torch.tensor([1.0, float("inf")])
    assert compare(ref, ref.clone(), DEFAULT).ok
    assert not compare(ref, torch.tensor([1.0, -float("inf")]), DEFAULT).ok
    assert not compare(torch.ones(2), torch.tensor([1.0, float("inf")]), DEFAULT).ok


def test_tensor_subclass_is_not_a_tensor_output():
    class Sneaky(torch.Tensor):
        pass

    ref = torch.zeros(2)
    result = compare(ref, ref.clone().as_subclass(Sneaky), DEFAULT)
    assert not result.ok and "expected a tensor" in result.reason


def test_python_floats_are_held_to_the_default_dtypes_tolerance_and_report_their_error():
    # `x.sum().item()` of a float32 sum against a kernel that sums in double
    ref, cand = 483.47003173828125, 483.47015380859375
    result = compare(ref, cand, DEFAULT)
    assert result.ok and result.max_abs_error == pytest.approx(1.2207e-4, rel=1e-3)
    wrong = compare(ref, ref * 1.01, DEFAULT)
    assert not wrong.ok and "expected 483.47" in wrong.reason
    assert wrong.max_abs_error == pytest.approx(4.8347, rel=1e-3)
    assert not compare(1.0, float("nan"), DEFAULT).ok
    assert compare(float("inf"), float("inf"), DEFAULT).ok
    assert not compare(float("inf"), 1e300, DEFAULT).ok


def test_chunked_comparison_gives_the_same_verdict_and_errors(monkeypatch):
    from kernelwright.verifier import compare as compare_module

    torch.manual_seed(0)
    ref = torch.randn(37, 11)
    cand = ref + 1e-6 * torch.randn(37, 11)
    cand[20, 3] += 0.5  # the worst, in a later chunk than the first bad one
    cand[2, 1] += 0.1
    ref[5, 5] = float("nan")
    cand[5, 5] = float("nan")
    whole = compare_module.compare(ref, cand, Tolerance())
    monkeypatch.setattr(compare_module, "CHUNK", 7)
    chunked = compare_module.compare(ref, cand, Tolerance())
    assert chunked == whole and not whole.ok
    assert "2 of 407 elements" in whole.reason and "worst at (20, 3)" in whole.reason
