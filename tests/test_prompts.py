"""The prompt templates: snapshots of every prompt the loop can send, the variable headers, strict
undefined variables, the coder's summary line, and `ask` with a budget.

Snapshots live in tests/snapshots/prompts/<case>.txt. After an intended change to a template,
regenerate them with `KW_UPDATE_SNAPSHOTS=1 python -m pytest tests/test_prompts.py` and review
the diff.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
import pytest
from kernelwright.agents import coder
from kernelwright.agents.calls import MAX_TOKENS, ask
from kernelwright.agents.llm import BudgetExceeded, Completion, Message, ProviderError, Usage
from kernelwright.agents.parsing import parse_verdict
from kernelwright.agents.pricing import Budget, cost, estimate_tokens, model_info
from kernelwright.agents.prompting import as_text, environment, messages, render
from kernelwright.profiler import ncu, roofline
from kernelwright.profiler.sheets import gpu_sheet
from kernelwright.search import Entry

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOTS = Path(__file__).resolve().parent / "snapshots" / "prompts"
PROMPTS = ROOT / "prompts"
UPDATE = os.environ.get("KW_UPDATE_SNAPSHOTS") == "1"

PROBLEM = "02_row_sum"
REFERENCE = (ROOT / "core" / "suite" / "problems" / "02_row_sum.py").read_text(encoding="utf-8")

H100 = gpu_sheet("NVIDIA H100 80GB HBM3")
FIXTURES = Path(__file__).parent / "fixtures"
CPU = {"label": "AMD EPYC 7R13 Processor", "known": True, "cores": 16, "timed_threads": 1}

# -- fixed candidates --------------------------------------------------------------------------

CUDA_NAIVE = '''\
import torch
import torch.nn as nn
from torch.utils.cpp_extension import load_inline

cuda_src = r"""
#include <cuda_runtime.h>
__global__ void row_sum(const float* x, float* y, int rows, int cols) {
    int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    float s = 0.f;
    for (int c = 0; c < cols; ++c) s += x[r * cols + c];
    y[r] = s;
}
void launch_row_sum(const float* x, float* y, int rows, int cols, cudaStream_t s) {
    row_sum<<<(rows + 255) / 256, 256, 0, s>>>(x, y, rows, cols);
}
"""

cpp_src = r"""
#include <torch/library.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAStream.h>
at::Tensor fn(at::Tensor x) {
    auto y = at::empty({x.size(0)}, x.options());
    launch_row_sum(x.data_ptr<float>(), y.data_ptr<float>(), x.size(0), x.size(1),
                   c10::cuda::getCurrentCUDAStream());
    return y;
}
TORCH_LIBRARY(kw_row_sum_v1, m) { m.def("fn(Tensor x) -> Tensor", &fn); }
"""

load_inline(name="kw_row_sum_v1", cpp_sources=cpp_src, cuda_sources=cuda_src,
            is_python_module=False, no_implicit_headers=True)


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        return torch.ops.kw_row_sum_v1.fn(x.contiguous())
'''

CUDA_FIXED = CUDA_NAIVE.replace(
    "#include <c10/cuda/CUDAStream.h>\n",
    "#include <c10/cuda/CUDAStream.h>\n"
    "void launch_row_sum(const float*, float*, int, int, cudaStream_t);\n",
).replace("kw_row_sum_v1", "kw_row_sum_v2")

CUDA_WARP = (
    CUDA_FIXED.replace(
        """    int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    float s = 0.f;
    for (int c = 0; c < cols; ++c) s += x[r * cols + c];
    y[r] = s;""",
        """    int r = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (r >= rows) return;
    float s = 0.f;
    for (int c = lane; c < cols; c += 32) s += x[(size_t)r * cols + c];
    for (int o = 16; o > 0; o /= 2) s += __shfl_down_sync(0xffffffff, s, o);
    if (lane == 0) y[r] = s;""",
    )
    .replace("(rows + 255) / 256, 256", "(rows + 7) / 8, 256")
    .replace("kw_row_sum_v2", "kw_row_sum_v3")
)

CPU_CANDIDATE = '''\
import torch
import torch.nn as nn
from torch.utils.cpp_extension import load_inline

cpp_src = r"""
#include <torch/library.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
at::Tensor fn(at::Tensor x) {
    auto y = at::empty({x.size(0)}, x.options());
    const float* p = x.data_ptr<float>();
    float* q = y.data_ptr<float>();
    int64_t rows = x.size(0), cols = x.size(1);
    for (int64_t r = 0; r < rows; ++r) {
        float s = 0.f;
        for (int64_t c = 0; c < cols; ++c) s += p[r * cols + c];
        q[r] = s;
    }
    return y;
}
TORCH_LIBRARY(kw_row_sum_cpu_v1, m) { m.def("fn(Tensor x) -> Tensor", &fn); }
"""

load_inline(name="kw_row_sum_cpu_v1", cpp_sources=cpp_src, is_python_module=False,
            no_implicit_headers=True, extra_cflags=["-O3"])


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        return torch.ops.kw_row_sum_cpu_v1.fn(x.contiguous())
'''

COMPILE_LOG = """\
[1/3] c++ -MMD -MF main.o.d -DTORCH_EXTENSION_NAME=kw_row_sum_v1 -O3 -c main.cpp -o main.o
FAILED: main.o
main.cpp: In function 'at::Tensor fn(at::Tensor)':
main.cpp:7:5: error: 'launch_row_sum' was not declared in this scope
    7 |     launch_row_sum(x.data_ptr<float>(), y.data_ptr<float>(), x.size(0), x.size(1),
      |     ^~~~~~~~~~~~~~
ninja: build stopped: subcommand failed.
"""

REPAIR_REPLY = (
    '{"issue": "fn in cpp_sources calls launch_row_sum, which is defined only in cuda_sources",'
    ' "why": "the C++ translation unit never sees a declaration, so g++ stops at main.cpp:7",'
    ' "fix": "declare void launch_row_sum(const float*, float*, int, int, cudaStream_t); '
    'in cpp_sources before fn"}'
)
OPTIMIZE_REPLY = """\
```json
{"bottleneck": "one thread per row: a warp's 32 threads read 32 different rows, so every load \
is uncoalesced and DRAM throughput stays near 10% of peak", "plan": "give each row to one warp: \
lanes stride over the columns and reduce with __shfl_down_sync", "expected": "coalesced loads; \
the kernel should approach the 3.35 TB/s bound, roughly 2x faster"}
```"""
FREE_TEXT_REPLY = (
    "The candidate is wrong on the extra shapes because it indexes x with int; "
    "with 129 rows of 33 columns the last block reads past the end.\n"
    "Use size_t for the offset and guard the column loop."
)

SUMMARY_NAIVE = "One thread per row, summing the columns in a loop."
SUMMARY_FIXED = "One thread per row; the launcher is declared in cpp_sources."
SUMMARY_WARP = "One warp per row with coalesced loads and a shuffle reduction."


def entries_cuda() -> dict[str, Entry]:
    """Round 1 (two slots from the reference): a compile error and a slow correct one.
    Round 2: a fast child of the correct one, and a no_code attempt at repairing the failure.
    Timings are realistic for 8192x4096 floats on an H100 (128 MiB read at ~3 TB/s)."""
    a = Entry(
        id="3f9a1c2b7d10",
        round=1,
        parents=[],
        source=CUDA_NAIVE,
        status="compile_error",
        reason="main.cpp:7:5: error: 'launch_row_sum' was not declared in this scope",
        summary=SUMMARY_NAIVE,
        log=COMPILE_LOG,
    )
    b = Entry(
        id="8e2d4b6a0c91",
        round=1,
        parents=[],
        source=CUDA_FIXED,
        status="correct",
        reason="all cases match",
        summary=SUMMARY_FIXED,
        speedup=0.5,
        candidate_ms=0.0904,
        reference_ms=0.0452,
    )
    c = Entry(
        id="c47e90d15a3b",
        round=2,
        parents=[b.id],
        source=CUDA_WARP,
        status="correct",
        reason="all cases match",
        summary=SUMMARY_WARP,
        speedup=1.9234,
        candidate_ms=0.0235,
        reference_ms=0.0452,
    )
    d = Entry(
        id="5b1f7e8c2a64",
        round=2,
        parents=[a.id],
        source="",
        status="no_code",
        reason="the coder's reply held no ```python block defining ModelNew",
        summary="",
    )
    return {"a": a, "b": b, "c": c, "d": d}


def incorrect_entry() -> Entry:
    return Entry(
        id="91d0e6f3b2a8",
        round=2,
        parents=["8e2d4b6a0c91"],
        source=CUDA_FIXED.replace("x.contiguous()", "x"),
        status="incorrect",
        reason="shape {'batch_size': 129, 'dim': 33}: max abs error 3.1e+00 (atol 1e-04)",
        summary="Dropped the contiguous() copy.",
        log="",
    )


def history(*entries: Entry) -> list[dict[str, Any]]:
    return [e.history_row() for e in entries]


def top_view(entry: Entry) -> dict[str, Any]:
    """As the loop passes the best candidate."""
    return {**entry.view(), "speedup": entry.speedup}


# -- the cases ---------------------------------------------------------------------------------


def case_coder_next_repair() -> dict[str, Any]:
    e = entries_cuda()
    return dict(
        problem_name=PROBLEM,
        reference=REFERENCE,
        target="cuda",
        sheet=H100,
        parent=e["a"].view(),
        verdict=parse_verdict(REPAIR_REPLY, "repair"),
        best=top_view(e["b"]),
        history=history(e["a"], e["b"]),
    )


def case_coder_next_optimize() -> dict[str, Any]:
    e = entries_cuda()
    return dict(
        problem_name=PROBLEM,
        reference=REFERENCE,
        target="cuda",
        sheet=H100,
        parent=e["b"].view(),
        verdict=parse_verdict(OPTIMIZE_REPLY, "optimize"),
        best=top_view(e["c"]),
        history=history(e["a"], e["b"], e["c"], e["d"]),
    )


def case_coder_next_unparsed() -> dict[str, Any]:
    e = entries_cuda()
    bad = incorrect_entry()
    return dict(
        problem_name=PROBLEM,
        reference=REFERENCE,
        target="cuda",
        sheet=H100,
        parent=bad.view(),
        verdict=parse_verdict(FREE_TEXT_REPLY, "repair"),
        best=top_view(e["c"]),
        history=history(e["a"], e["b"], e["c"], bad),
    )


def case_coder_next_no_verdict() -> dict[str, Any]:
    cpu = Entry(
        id="0a7c3e5d9f12",
        round=1,
        parents=[],
        source=CPU_CANDIDATE,
        status="correct",
        reason="all cases match",
        summary="A plain double loop over raw pointers.",
        speedup=1.0417,
        candidate_ms=12.48,
        reference_ms=13.0,
    )
    return dict(
        problem_name=PROBLEM,
        reference=REFERENCE,
        target="cpu",
        sheet=CPU,
        parent=cpu.view(),
        verdict=None,
        best=top_view(cpu),
        history=history(cpu),
    )


def case_judge_repair() -> dict[str, Any]:
    e = entries_cuda()
    return dict(
        problem_name=PROBLEM,
        reference=REFERENCE,
        target="cuda",
        candidate=e["a"].view(),
        history=history(e["a"], e["b"]),
    )


def case_judge_optimize(with_metrics: bool) -> dict[str, Any]:
    e = entries_cuda()
    b = e["b"]
    if with_metrics:
        launches = ncu.parse_csv((FIXTURES / "ncu" / "raw_h100.csv").read_text())
        kernels = roofline.summarize(launches, ["reduce_rows", "matmul_tiled"], H100)
        b.metrics = {k["kernel"]: roofline.judge_block(k) for k in kernels[:2]}
    view = b.view()
    return dict(
        problem_name=PROBLEM,
        reference=REFERENCE,
        target="cuda",
        sheet=H100,
        candidate=view,
        metrics=view["metrics"],  # as judge.review passes it
        history=history(e["a"], b),
    )


CASES: dict[str, tuple[str, Any]] = {
    "coder_system_cuda": ("coder_system.j2", lambda: {"target": "cuda"}),
    "coder_system_cpu": ("coder_system.j2", lambda: {"target": "cpu"}),
    "judge_system_cuda": ("judge_system.j2", lambda: {"target": "cuda"}),
    "judge_system_cpu": ("judge_system.j2", lambda: {"target": "cpu"}),
    "coder_first_cuda": (
        "coder_first.j2",
        lambda: dict(problem_name=PROBLEM, reference=REFERENCE, target="cuda", sheet=H100),
    ),
    "coder_first_cpu": (
        "coder_first.j2",
        lambda: dict(problem_name=PROBLEM, reference=REFERENCE, target="cpu", sheet=CPU),
    ),
    "coder_first_cuda_unknown_gpu": (
        "coder_first.j2",
        lambda: dict(
            problem_name=PROBLEM,
            reference=REFERENCE,
            target="cuda",
            sheet=gpu_sheet("NVIDIA GeForce RTX 3060"),
        ),
    ),
    "coder_first_cuda_a100": (  # no FP8 figure in the sheet
        "coder_first.j2",
        lambda: dict(
            problem_name=PROBLEM,
            reference=REFERENCE,
            target="cuda",
            sheet=gpu_sheet("NVIDIA A100-SXM4-80GB"),
        ),
    ),
    "coder_next_repair_compile_error": ("coder_next.j2", case_coder_next_repair),
    "coder_next_optimize": ("coder_next.j2", case_coder_next_optimize),
    "coder_next_unparsed_verdict": ("coder_next.j2", case_coder_next_unparsed),
    "coder_next_no_verdict_cpu": ("coder_next.j2", case_coder_next_no_verdict),
    "judge_repair": ("judge_repair.j2", case_judge_repair),
    "judge_optimize_no_metrics": ("judge_optimize.j2", lambda: case_judge_optimize(False)),
    "judge_optimize_metrics": ("judge_optimize.j2", lambda: case_judge_optimize(True)),
}


def check_snapshot(
    case: str, text: str, directory: Path = SNAPSHOTS, update: bool = UPDATE
) -> None:
    path = directory / f"{case}.txt"
    if update:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    if not path.exists():
        pytest.fail(
            f"no snapshot {path}; create it with "
            "`KW_UPDATE_SNAPSHOTS=1 python -m pytest tests/test_prompts.py` and review it"
        )
    expected = path.read_text(encoding="utf-8")
    assert text == expected, (
        f"{case} differs from {path}; if the change is intended, regenerate "
        "with KW_UPDATE_SNAPSHOTS=1 and review the diff"
    )


@pytest.mark.parametrize("case", sorted(CASES))
def test_prompt_snapshot(case: str) -> None:
    template, variables = CASES[case]
    text = render(template, **variables())
    assert "{{" not in text and "{%" not in text and "{#" not in text
    prose = "|".join(text.split("```")[::2])  # outside code blocks, which keep their blank lines
    assert "\n\n\n" not in prose and text.endswith("\n") and not text.endswith("\n\n")
    check_snapshot(case, text)


def test_snapshot_check_fails_when_missing_and_writes_when_updating(tmp_path) -> None:
    with pytest.raises(pytest.fail.Exception, match="KW_UPDATE_SNAPSHOTS=1"):
        check_snapshot("nothing_here", "text\n", directory=tmp_path, update=False)
    check_snapshot("nothing_here", "text\n", directory=tmp_path / "new", update=True)
    assert (tmp_path / "new" / "nothing_here.txt").read_text() == "text\n"
    check_snapshot("nothing_here", "text\n", directory=tmp_path / "new", update=False)
    with pytest.raises(AssertionError, match="differs"):
        check_snapshot("nothing_here", "other\n", directory=tmp_path / "new", update=False)


# -- what each case must (not) say, independent of the snapshots -------------------------------


def test_sections_follow_the_parent_and_verdict() -> None:
    repair = render("coder_next.j2", **case_coder_next_repair())
    assert repair.startswith("Fix this candidate for 02_row_sum")
    assert "Its log (last lines):" in repair and "ninja: build stopped" in repair
    assert "- issue: fn in cpp_sources calls launch_row_sum" in repair
    assert "The best correct candidate so far is 8e2d4b6a0c91 at 0.5x" in repair
    assert "| 3f9a1c2b7d10 | 1 | reference | compile_error | - | One thread per row" in repair

    optimize = render("coder_next.j2", **case_coder_next_optimize())
    assert optimize.startswith("Make this candidate for 02_row_sum faster")
    assert "Its log" not in optimize
    assert "correct; 0.0904 ms against PyTorch's 0.0452 ms: 0.5x" in optimize
    assert "The best correct candidate so far is c47e90d15a3b at 1.92x" in optimize
    assert "| 5b1f7e8c2a64 | 2 | 3f9a1c2b7d10 | no_code | - | - |" in optimize
    assert "| c47e90d15a3b | 2 | 8e2d4b6a0c91 | correct | 1.92x |" in optimize

    unparsed = render("coder_next.j2", **case_coder_next_unparsed())
    assert FREE_TEXT_REPLY in unparsed
    assert "Its log" not in unparsed  # the incorrect parent has no log

    none = render("coder_next.j2", **case_coder_next_no_verdict())
    assert "Reviewer: none this round" in none
    assert "best candidate so far" not in none  # the parent is the best
    assert "Hardware: CPU AMD EPYC 7R13 Processor, 16 cores" in none


def test_sheet_lines() -> None:
    h100 = render("coder_first.j2", **CASES["coder_first_cuda"][1]())
    assert "Hardware: NVIDIA H100 SXM 80GB, sm_90 (Hopper), 132 SMs" in h100
    assert "FP32 67 TFLOP/s, TF32 495, FP16/BF16 989, FP8 1979 TFLOP/s; DRAM 3.35 TB/s." in h100
    a100 = render("coder_first.j2", **CASES["coder_first_cuda_a100"][1]())
    assert "FP8" not in a100 and "TF32 156" in a100
    unknown = render("coder_first.j2", **CASES["coder_first_cuda_unknown_gpu"][1]())
    assert "Hardware: NVIDIA GeForce RTX 3060 (peak figures unknown)." in unknown
    assert gpu_sheet(None) == {"label": "unknown GPU", "known": False}
    assert gpu_sheet("NVIDIA H100 PCIe")["sms"] == 114  # the longest matching key wins


def test_judge_optimize_metrics_section() -> None:
    without = render("judge_optimize.j2", **case_judge_optimize(False))
    assert "No hardware profile is available" in without and "Nsight" not in without
    with_ = render("judge_optimize.j2", **case_judge_optimize(True))
    assert "No hardware profile" not in with_
    assert "\n- matmul_tiled\n  - time: 2.500 ms over 1 launch\n  - bound: compute (SM 84%" in with_
    assert "\n- reduce_rows\n  - time: 100.0 us over 2 launches\n" in with_
    assert "  - top stalls: long_scoreboard 64%, barrier 4%, math_pipe_throttle 1%\n" in with_


def test_messages_give_the_system_template_only_the_target() -> None:
    variables = case_coder_next_repair()
    pair = messages("coder_system.j2", "coder_next.j2", **variables)
    assert pair == [
        Message("system", render("coder_system.j2", target="cuda")),
        Message("user", render("coder_next.j2", **variables)),
    ]
    text = as_text(pair)
    assert text.startswith("### system\nYou are an expert CUDA performance engineer.")
    assert "\n### user\nFix this candidate" in text


# -- headers and strictness --------------------------------------------------------------------

HEADER = re.compile(r"\A\{#\s*variables:\s*(.*?)\s*#\}")


def declared(source: str) -> set[str]:
    match = HEADER.match(source)
    assert match, "the template must start with a {# variables: ... #} header"
    return {name.strip() for name in match.group(1).split(",") if name.strip()}


def used(source: str) -> set[str]:
    return set(jinja2.meta.find_undeclared_variables(environment().parse(source)))


TEMPLATES = sorted(p.name for p in PROMPTS.glob("*.j2") if p.name != "_parts.j2")


def test_every_template_is_covered() -> None:
    assert set(TEMPLATES) == {template for template, _ in CASES.values()}


@pytest.mark.parametrize("name", TEMPLATES)
def test_header_lists_exactly_the_variables_used(name: str) -> None:
    source = (PROMPTS / name).read_text(encoding="utf-8")
    assert declared(source) == used(source)


def test_header_check_catches_an_undeclared_variable() -> None:
    source = "{# variables: target #}\nHello {{ target }} and {{ sheet.label }}.\n"
    assert declared(source) == {"target"}
    assert used(source) == {"target", "sheet"}
    assert declared(source) != used(source)


def test_parts_are_macros_only() -> None:
    source = (PROMPTS / "_parts.j2").read_text(encoding="utf-8")
    assert used(source) == set()


@pytest.mark.parametrize(
    ("template", "case"),
    [
        ("coder_system.j2", "coder_system_cuda"),
        ("coder_first.j2", "coder_first_cuda"),
        ("coder_next.j2", "coder_next_optimize"),
        ("judge_repair.j2", "judge_repair"),
        ("judge_optimize.j2", "judge_optimize_metrics"),
    ],
)
def test_a_missing_variable_raises(template: str, case: str) -> None:
    variables = CASES[case][1]()
    needed = used((PROMPTS / template).read_text(encoding="utf-8"))
    assert needed and needed <= set(variables)
    for name in needed:
        partial = {k: v for k, v in variables.items() if k != name}
        with pytest.raises(jinja2.UndefinedError):
            render(template, **partial)


def test_a_missing_key_of_a_view_raises() -> None:
    variables = case_coder_next_optimize()
    variables["parent"] = {k: v for k, v in variables["parent"].items() if k != "source"}
    with pytest.raises(jinja2.UndefinedError):
        render("coder_next.j2", **variables)


# -- the coder's summary -----------------------------------------------------------------------


def test_summarize_takes_the_prose_before_the_first_fence() -> None:
    reply = "I moved to  one warp\n\nper row.\t It coalesces.\n```python\nx = 1\n```\nAfter."
    assert coder.summarize(reply) == "I moved to one warp per row. It coalesces."


def test_summarize_without_prose_or_fence() -> None:
    assert coder.summarize("```python\nclass ModelNew: pass\n```") == ""
    assert coder.summarize("  just words\n") == "just words"


def test_summarize_cuts_long_prose_with_an_ellipsis() -> None:
    exact = "x" * coder.SUMMARY_CHARS
    assert coder.summarize(exact) == exact
    long = "word " * 100 + "```python\nx\n```"
    out = coder.summarize(long)
    assert len(out) <= coder.SUMMARY_CHARS
    assert out.endswith("…") and not out.endswith(" …")
    assert out.startswith("word word")


# -- ask with a budget -------------------------------------------------------------------------


class Stub:
    provider = "openai"
    model = "gpt-4o"

    def __init__(self, reply: str | None = "done", error: Exception | None = None) -> None:
        self.info = model_info("openai", "gpt-4o")
        self.reply, self.error = reply, error
        self.calls: list[dict[str, Any]] = []

    def complete(self, messages, *, role, problem=None, max_tokens=8192) -> Completion:
        self.calls.append({"messages": messages, "role": role, "max_tokens": max_tokens})
        if self.error is not None:
            raise self.error
        usage = Usage(100, 20)
        return Completion(
            self.reply or "", usage, cost(self.info, usage), self.model, "openai", 0.5
        )


PROMPT = [Message("system", "You review kernels."), Message("user", "Review this one.")]


def worst_case(role: str) -> float:
    info = model_info("openai", "gpt-4o")
    return cost(info, Usage(estimate_tokens(as_text(PROMPT)), MAX_TOKENS[role]))


def test_ask_refuses_a_call_that_could_pass_the_budget() -> None:
    stub = Stub()
    budget = Budget(limit_usd=worst_case("judge") * 0.9)
    with pytest.raises(BudgetExceeded):
        ask(stub, PROMPT, role="judge", problem=PROBLEM, budget=budget)
    assert stub.calls == []
    assert budget.spent_usd == 0.0


def test_ask_within_budget_records_the_call_and_its_cost() -> None:
    stub = Stub(reply="fine")
    budget = Budget(limit_usd=worst_case("judge") * 1.1)
    completion, call = ask(stub, PROMPT, role="judge", problem=PROBLEM, budget=budget)
    assert completion is not None and completion.text == "fine"
    assert stub.calls[0]["max_tokens"] == MAX_TOKENS["judge"]
    assert call.error == "" and call.reply == "fine" and call.prompt == as_text(PROMPT)
    assert call.tokens_in == 100 and call.tokens_out == 20
    assert budget.spent_usd == pytest.approx(call.cost_usd) and call.cost_usd > 0


def test_ask_turns_a_provider_error_into_a_call_and_releases_the_reservation() -> None:
    stub = Stub(error=ProviderError("HTTP 503: overloaded", retryable=True, status=503))
    limit = worst_case("coder") * 1.5  # room for one worst case, not two
    budget = Budget(limit_usd=limit, spent_usd=0.01)
    completion, call = ask(stub, PROMPT, role="coder", problem=PROBLEM, budget=budget)
    assert completion is None
    assert call.error == "HTTP 503: overloaded"
    assert call.role == "coder" and call.provider == "openai" and call.model == "gpt-4o"
    assert call.reply == "" and call.cost_usd == 0.0 and call.tokens_in == 0
    assert len(stub.calls) == 1
    assert budget.spent_usd == pytest.approx(0.01)
    # the reservation was released: a call of the same worst case still fits
    reserved = budget.reserve(stub.info, as_text(PROMPT), MAX_TOKENS["coder"])
    assert reserved == pytest.approx(worst_case("coder"))
    budget.settle(reserved, 0.0)
    assert budget.spent_usd == pytest.approx(0.01)
