"""The float64 second opinion for low-precision outputs (verifier/wide.py) and how a case is
judged with it (verifier/session._check_case)."""

from __future__ import annotations

import torch
from kernelwright.compiler.seal import sha256_file
from kernelwright.verifier import session, wide
from kernelwright.verifier.tolerances import Tolerance


class ExpShift(torch.nn.Module):
    def forward(self, x):
        return torch.exp(x) - 6.0


class RoundsOnPurpose(torch.nn.Module):
    def forward(self, x):
        return (x.half() * 3).to(x.dtype)  # the problem asks for float16 arithmetic


def _inputs() -> torch.Tensor:
    return torch.randn(64, 64, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)


def test_only_low_precision_outputs_get_a_second_opinion():
    assert wide.needed(torch.ones(2, dtype=torch.bfloat16))
    assert wide.needed((torch.ones(2), [torch.ones(1, dtype=torch.float16)]))
    assert not wide.needed((torch.ones(2), 3.0, {"a": torch.ones(1, dtype=torch.float64)}))


def test_the_float64_run_rounds_once_to_the_reference_dtype():
    x = _inputs()
    eager = ExpShift()(x)
    rounded = wide.run(ExpShift(), [x], eager)
    exact = (torch.exp(x.double()) - 6.0).to(torch.bfloat16)
    assert rounded.dtype == torch.bfloat16 and torch.equal(rounded, exact)
    assert not torch.equal(eager, exact)  # eager's double rounding differs somewhere


def test_explicit_casts_in_the_model_still_round():
    x = torch.randn(256, dtype=torch.float16)
    rounded = wide.run(RoundsOnPurpose(), [x], RoundsOnPurpose()(x))
    assert torch.equal(rounded, RoundsOnPurpose()(x))


def test_a_model_that_cannot_run_in_float64_has_no_second_opinion():
    class OnlyBf16(torch.nn.Module):
        def forward(self, x):
            assert x.dtype == torch.bfloat16
            return x * 2

    x = _inputs()
    assert wide.run(OnlyBf16(), [x], OnlyBf16()(x)) is None


def _reference(tmp_path, expected, second) -> session.ReferenceOutputs:
    ref, wide_path = tmp_path / "ref_0.pt", tmp_path / "ref_0_wide.pt"
    torch.save(expected, ref)
    torch.save(second, wide_path)
    files = {0: (ref, sha256_file(ref))}
    return session.ReferenceOutputs([], files, {}, [], {0: (wide_path, sha256_file(wide_path))})


def test_a_case_passes_on_the_float64_run_and_fails_when_it_is_off_both(tmp_path):
    x = _inputs()
    eager, exact = ExpShift()(x), (torch.exp(x.double()) - 6.0).to(torch.bfloat16)
    reference = _reference(tmp_path, eager, exact)
    tolerance = Tolerance(None, None)
    fused = tmp_path / "cand_fused.pt"
    torch.save(exact, fused)  # what a kernel rounding once returns
    result = session._check_case(0, {}, reference, fused, tolerance)
    assert result.ok and "float64" in result.reason
    wrong = tmp_path / "cand_wrong.pt"
    torch.save(exact + 0.5, wrong)
    result = session._check_case(0, {}, reference, wrong, tolerance)
    assert not result.ok and "out of tolerance" in result.reason
    # a float64 file changed after the reference wrote it is not believed
    torch.save(exact + 0.5, reference.wide[0][0])
    wrong_too = tmp_path / "cand_wrong_too.pt"
    torch.save(exact + 0.5, wrong_too)
    assert not session._check_case(0, {}, reference, wrong_too, tolerance).ok
