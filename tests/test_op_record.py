"""Did the kernel do the work? The record of the ops that ran (verifier/op_record.py).

In process: what the record sees of calls that text rules miss (a dunder, `torch.special`
called as a function, ops inside a registered op), how the parent judges it, and a call that
switches the record off. End to end on `cpu` with the static checks out of the way: ATen called
from C++ and a size-gated PyTorch path are rejected, PyTorch beside the kernel is a warning.
"""

from __future__ import annotations

import uuid

import pytest
import torch
from kernelwright.evaluate import EvaluateOptions, evaluate
from kernelwright.records import Status
from kernelwright.verifier import op_record
from kernelwright.verifier.op_record import OpCount, judge, op_kind, record_call


def _names(ops: list[OpCount]) -> set[str]:
    return {op.name for op in ops}


def test_calls_that_text_rules_miss_are_recorded_by_what_ran():
    x, y = torch.randn(16, 16), torch.randn(16, 16)

    def forward():
        a = torch.Tensor.__mul__(x, y)  # a dunder called as a function
        b = torch.special.expit(a)  # sigmoid under another name
        return torch.nn.functional.linear(b, y)  # decomposes into t + mm

    with torch.no_grad():
        out, ops = record_call(forward)
    assert torch.allclose(out, torch.sigmoid(x * y) @ y.t())
    assert {"aten.mul.Tensor", "aten.sigmoid.default", "aten.mm.default"} <= _names(ops)
    kinds = {op.name: op_kind(op.name) for op in ops}
    assert kinds["aten.t.default"] == "free" and kinds["aten.mm.default"] == "compute"
    mm = next(op for op in ops if op.name == "aten.mm.default")
    assert mm.work == 2 * 16**3  # FLOPs from PyTorch's flop counter


def test_ops_inside_a_registered_op_are_recorded():
    namespace = f"kw_test_rec_{uuid.uuid4().hex[:8]}"
    library = torch.library.Library(namespace, "DEF")
    library.define("fused(Tensor a, Tensor b) -> Tensor")
    library.impl("fused", lambda a, b: torch.mm(a, b) + 1, "CPU")
    a, b = torch.randn(8, 8), torch.randn(8, 8)
    with torch.no_grad():
        out, ops = record_call(lambda: getattr(torch.ops, namespace).fused(a, b))
    assert torch.allclose(out, a @ b + 1)
    assert f"{namespace}.fused.default" in _names(ops)
    assert op_kind(f"{namespace}.fused.default") == "own"
    assert {"aten.mm.default", "aten.add.Tensor"} <= _names(ops)


def test_allocation_views_copies_and_random_draws_are_not_compute():
    x = torch.randn(4, 6)

    def wrapper():
        out = torch.empty_like(x)
        out.copy_(x.t().contiguous().view(6, 4).t())
        torch.randn(3)
        return out.clone()

    _, ops = record_call(wrapper)
    assert ops and all(op_kind(op.name) == "free" for op in ops), ops
    assert judge(ops, 100.0) is None


def test_the_parent_judges_main_work_against_the_reference():
    ops = [OpCount("aten.mm.default", 1, 900.0), OpCount("mylib.kernel.default", 1, 0.0)]
    main = judge(ops, reference_work=1000.0)
    assert main is not None and (main.check, main.severity) == ("torch_compute", "reject")
    assert "aten.mm.default" in main.message and "90%" in main.message
    beside = judge([OpCount("aten.sum.default", 2, 10.0)], reference_work=1000.0)
    assert beside is not None and (beside.check, beside.severity) == (
        "torch_compute_partial",
        "warn",
    )
    assert judge([OpCount("mylib.kernel.default", 3, 0.0)], reference_work=1000.0) is None


def test_a_call_that_takes_the_record_off_the_stack_is_refused():
    from torch.utils._python_dispatch import _pop_mode, _push_mode

    x = torch.randn(8)

    def hides():
        mode = _pop_mode()
        return x * 2, mode

    def hides_and_restores_nothing_else():
        mode = _pop_mode()
        _push_mode(mode)
        _push_mode(mode)  # one more than it found
        return x * 2

    for call in (hides, hides_and_restores_nothing_else):
        depth = torch._C._len_torch_dispatch_stack()
        with pytest.raises(op_record.Tampered):
            record_call(call)
        while torch._C._len_torch_dispatch_stack() > depth:
            _pop_mode()


# -- end to end on cpu, with the static checks: what passed them before ------------------------


def _evaluate(fixtures_dir, name):
    problem = fixtures_dir / "problems" / "scale_add.py"
    candidate = fixtures_dir / "op_record" / name
    return evaluate(problem, candidate, EvaluateOptions(target="cpu", trials=1))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["aten_from_cpp.py", "size_gated.py", "dunder.py"])
def test_pytorch_doing_the_main_work_is_rejected_whatever_the_text(name, fixtures_dir):
    # Each was `correct` before: ATen called from C++ was the `library_compute` warning, PyTorch
    # behind a size gate beside a kernel call the `torch_compute_partial` warning, dunders
    # called as functions nothing at all.
    result = _evaluate(fixtures_dir, name)
    assert result.status is Status.REJECTED, (result.status, result.reason, result.log[-2000:])
    assert result.reason.startswith("rejected by torch_compute:"), result.reason
    assert result.speedup is None


@pytest.mark.slow
def test_pytorch_beside_the_kernel_is_a_warning_naming_what_ran(fixtures_dir):
    result = _evaluate(fixtures_dir, "beside.py")
    assert result.status is Status.CORRECT, (result.status, result.reason, result.log[-2000:])
    partial = [w for w in result.warnings if w["check"] == "torch_compute_partial"]
    assert len(partial) == 1 and "aten.mul" in partial[0]["message"], result.warnings


@pytest.mark.gpu
def test_the_record_sees_cuda_ops_and_an_own_cuda_op_inside():
    namespace = f"kw_test_rec_cuda_{uuid.uuid4().hex[:8]}"
    library = torch.library.Library(namespace, "DEF")
    library.define("fused(Tensor a, Tensor b) -> Tensor")
    library.impl("fused", lambda a, b: torch.mm(a, b).relu(), "CUDA")
    a, b = torch.randn(64, 64, device="cuda"), torch.randn(64, 64, device="cuda")
    with torch.no_grad():
        out, ops = record_call(lambda: getattr(torch.ops, namespace).fused(a, b) * 2)
    torch.cuda.synchronize()
    assert torch.allclose(out, (a @ b).relu() * 2, atol=1e-3)
    names = _names(ops)
    assert {f"{namespace}.fused.default", "aten.mm.default", "aten.mul.Tensor"} <= names
    judged = judge(ops, reference_work=2 * 64**3)
    assert judged is not None and judged.check == "torch_compute"


PY_BYPASSES = {
    "pop": "from torch.utils._python_dispatch import _pop_mode\nHIDE = _pop_mode\n",
    "guard": "GUARD = torch._C._ExcludeDispatchKeyGuard\n",
    "by_name": "GUARD = getattr(torch._C, '_DisableTorchDispatch')\n",
}
CPP_BYPASSES = {
    "header": "#include <ATen/NativeFunctions.h>",
    "native": "auto f(at::Tensor x) { return at::native::abs(x); }",
    "cpu": "auto f(at::Tensor x) { return at::cpu::mm(x, x); }",
    "alias": "namespace kernels = at :: native;",
    "guard": "c10::impl::ExcludeDispatchKeyGuard g(c10::DispatchKey::Python);",
    "redispatch": "auto f(at::Tensor x, c10::DispatchKeySet k) { return at::redispatch::abs(k); }",
}
CPP_TEMPLATE = '''
import torch
from torch.utils.cpp_extension import load_inline
src = r"""
#include <torch/extension.h>
{code}
"""
ext = load_inline(name="e", cpp_sources=src, functions=["f"])
class ModelNew(torch.nn.Module):
    def forward(self, x):
        return ext.f(x)
'''


@pytest.mark.parametrize(
    "source",
    [f"import torch\n{code}" for code in PY_BYPASSES.values()]
    + [CPP_TEMPLATE.format(code=code) for code in CPP_BYPASSES.values()],
    ids=[*PY_BYPASSES, *(f"cpp_{name}" for name in CPP_BYPASSES)],
)
def test_what_would_hide_work_from_the_record_is_refused_on_sight(source):
    from kernelwright.verifier.static_checks import check_candidate

    checks = {(f.check, f.severity) for f in check_candidate(source, "cpu")}
    assert ("dispatch_bypass", "reject") in checks, checks


def test_the_cuda_helpers_a_kernel_needs_are_not_a_bypass():
    from kernelwright.verifier.static_checks import check_candidate

    code = "auto s = at::cuda::getCurrentCUDAStream(); at::cuda::OptionalCUDAGuard g(x.device());"
    findings = check_candidate(CPP_TEMPLATE.format(code=code), "cpu")
    assert not [f for f in findings if f.check == "dispatch_bypass"], findings
