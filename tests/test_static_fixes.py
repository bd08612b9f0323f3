"""Issue 22's false rejections and misses of the static checks, each on a candidate of its own
(tests/fixtures/static_fixes). Each test failed on the checks as they were before the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from kernelwright.compiler.findings import REJECT, WARN
from kernelwright.compiler.native_checks import native_findings
from kernelwright.verifier.check_names import Check
from kernelwright.verifier.static_checks import check_candidate

FIXES = Path(__file__).parent / "fixtures" / "static_fixes"


def _findings(name: str) -> dict[str, str]:
    found = check_candidate((FIXES / name).read_text(), "cuda")
    return {f.check: f.severity for f in found}


def test_aten_clone_is_not_the_clone_system_call():
    assert _findings("aten_clone.py") == {}


@pytest.mark.parametrize(
    "line",
    [
        "auto y = x.clone();",
        "auto y = t.clone( );",
        "auto y = x . clone();",
        "auto y = p->clone();",
        "auto y = at::clone(x);",
        "auto y = torch::clone(x);",
    ],
)
def test_aten_clone_in_any_spelling_is_a_copy(line):
    assert Check.THREADS not in {f.check for f in native_findings(line)}


@pytest.mark.parametrize(
    "line",
    [
        "int pid = clone(fn, stack + size, SIGCHLD, nullptr);",
        "int pid = ::clone(fn, stack, flags, arg);",
        "long r = clone3(&args, sizeof(args));",
    ],
)
def test_the_clone_system_call_is_still_threads(line):
    assert Check.THREADS in {f.check for f in native_findings(line)}


def test_an_extension_built_in_a_method_is_the_candidates_own_code():
    assert _findings("method_built_ext.py") == {Check.TORCH_COMPUTE_PARTIAL: WARN}


def test_a_try_that_only_guards_the_build_is_a_warning_at_most():
    found = _findings("guarded_build.py")
    assert REJECT not in found.values(), found
    assert found == {Check.TRY_FALLBACK: WARN}


def test_a_guarded_build_inside_a_method_is_the_candidates_own_code():
    found = _findings("guarded_method_build.py")
    assert REJECT not in found.values(), found
    assert Check.TORCH_COMPUTE_PARTIAL in found


@pytest.mark.parametrize(
    "handler",
    [
        "    ext = torch\n",  # the fallback is PyTorch itself
        "    ext = None\n    y = torch.relu(torch.ones(1))\n",  # computes in the handler
        "    import torch.nn.functional as ext\n",
    ],
)
def test_a_build_guard_that_falls_back_to_something_is_still_a_fallback(handler):
    source = (FIXES / "guarded_build.py").read_text()
    start = source.index("except Exception as exc:\n") + len("except Exception as exc:\n")
    end = source.index("\n\nclass ModelNew")
    source = source[:start] + handler + source[end:]
    found = check_candidate(source, "cuda")
    assert any(f.check == Check.TRY_FALLBACK and f.severity == REJECT for f in found), found


@pytest.mark.parametrize("name", ["dunder_mul.py", "special_expit.py"])
def test_pure_pytorch_called_as_functions_is_torch_compute(name):
    assert _findings(name).get(Check.TORCH_COMPUTE) == REJECT


def test_a_size_gated_pytorch_path_is_only_partial_statically():
    # documented miss: the static checks see PyTorch beside a kernel; the run-time op record
    # sees which one ran at the problem's size
    assert _findings("size_gate.py") == {Check.TORCH_COMPUTE_PARTIAL: WARN}
