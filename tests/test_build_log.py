"""The full compiler output of every real build is kept and shown: a candidate that built and
ran keeps the build's output (the compiler's command lines, from torch's verbose ninja build)
before what running it said, and `candidates show --log` prints it."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from kernelwright.cli import app
from kernelwright.evaluate import BUILD_HEADING, RUN_HEADING, EvaluateOptions, evaluate
from kernelwright.problem import load_problem
from kernelwright.store import repo
from kernelwright.store.db import open_engine
from typer.testing import CliRunner

FIXTURES = Path(__file__).resolve().parent / "fixtures"
PROBLEM = FIXTURES / "problems" / "scale_add.py"

# scale_add in the fast layout (a slim TORCH_LIBRARY registration: the quickest real build)
CANDIDATE = '''
import torch
import torch.nn as nn
from torch.utils.cpp_extension import load_inline

cpp_source = r"""
#include <torch/library.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>

// build NONCE
at::Tensor scale_add(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
    TORCH_CHECK(x.dim() == 2 && w.numel() == x.size(1) && b.numel() == x.size(1), "shapes");
    at::Tensor xc = x.contiguous(), wc = w.contiguous(), bc = b.contiguous();
    at::Tensor out = at::empty_like(xc);
    const float* px = xc.const_data_ptr<float>();
    const float* pw = wc.const_data_ptr<float>();
    const float* pb = bc.const_data_ptr<float>();
    float* po = out.mutable_data_ptr<float>();
    const int64_t rows = xc.size(0), cols = xc.size(1);
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c)
            po[r * cols + c] = px[r * cols + c] * pw[c] + pb[c];
    return out;
}

TORCH_LIBRARY(kw_test_build_log, m) {
    m.def("scale_add(Tensor x, Tensor w, Tensor b) -> Tensor", &scale_add);
}
"""

load_inline(
    name="kw_test_build_log",
    cpp_sources=cpp_source,
    is_python_module=False,
    no_implicit_headers=True,
)


class ModelNew(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.w = nn.Parameter(torch.randn(dim))
        self.b = nn.Parameter(torch.randn(dim))

    def forward(self, x):
        return torch.ops.kw_test_build_log.scale_add(x, self.w, self.b)
'''


@pytest.mark.slow
def test_an_uncached_builds_compiler_output_is_kept_and_shown(tmp_path, monkeypatch):
    candidate = tmp_path / "candidate.py"
    candidate.write_text(CANDIDATE.replace("NONCE", uuid.uuid4().hex), encoding="utf-8")
    options = EvaluateOptions(target="cpu", trials=1, timing={"rounds": 2})
    phases: list[str] = []
    result = evaluate(PROBLEM, candidate, options, on_phase=phases.append)
    assert result.status.value == "correct", result.reason + result.log
    assert not result.cached
    assert phases[0].startswith("building the candidate") and phases[-1].startswith("verifying")
    build, _, run = result.log.partition(RUN_HEADING)
    assert build.startswith(f"{BUILD_HEADING} (") and " s)" in build.splitlines()[0]
    # ninja's verbose lines: each compile and link command, naming the source it compiles
    assert "main.cpp" in build and "-shared" in build, build
    assert "ninja: no work to do" not in build
    assert run  # what the candidate's run said follows, last

    db = f"sqlite:///{tmp_path / 'h.db'}"
    engine = open_engine(db)
    spec = load_problem(PROBLEM)
    problem = {"content_hash": spec.content_hash, "name": spec.name, "path": str(PROBLEM),
               "source": spec.source}  # fmt: skip
    run_id = repo.start_run(engine, "evaluate", "cpu", {})
    cid = repo.add_candidate(engine, run_id, problem, CANDIDATE, "h", result)
    shown = CliRunner().invoke(app, ["candidates", "show", cid, "--log", "--db", db])
    assert shown.exit_code == 0, shown.output
    assert "main.cpp" in shown.stdout and BUILD_HEADING in shown.stdout
