"""benchmarks/compile_speed.py: the layout generator and the report, without compiling anything.

The generator must turn every shipped candidate into a naive (KernelBench) and a fast (coder
prompt) layout of the same kernels; the measuring loop runs here on scripted build results. The
real figures come from running the script (README, "Build speed").
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest
from kernelwright.compiler.pool import PooledBuild
from kernelwright.records import BuildResult, Status
from kernelwright.verifier.static_checks import REJECT, check_candidate

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "compile_speed.py"


@pytest.fixture(scope="module")
def cs():
    spec = importlib.util.spec_from_file_location("kw_compile_speed", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _shipped(cs):
    return [(t, p) for t in ("cpu", "cuda") for p in cs.shipped_candidates(t)]


def _strings(source: str) -> dict[str, str]:
    tree = ast.parse(source)
    return {
        node.targets[0].id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.targets[0], ast.Name)
        and isinstance(node.value, ast.Constant)
    }


def _load_inline_keywords(source: str) -> dict[str, object]:
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "load_inline":
            return {k.arg: k.value for k in node.keywords}
    raise AssertionError("no load_inline call")


def test_every_shipped_candidate_has_both_layouts(cs):
    pairs = _shipped(cs)
    assert len(pairs) >= 16  # 12 cuda + 4 cpu
    for target, path in pairs:
        parts = cs.take_apart(path)
        name, fast = cs.render(parts, "fast")
        assert name == f"{parts.ext}_fast"
        strings, kw = _strings(fast), _load_inline_keywords(fast)
        assert "torch/extension.h" not in fast
        assert strings["cpp_source"].startswith("#include <torch/library.h>")
        assert f"TORCH_LIBRARY({name}, m)" in strings["cpp_source"]
        for fn in parts.functions:
            assert f'm.def("{fn}", &{fn});' in strings["cpp_source"]
            assert f"torch.ops.{name}.{fn}(" in fast
        assert "torch::" not in strings["cpp_source"]
        assert ast.literal_eval(kw["is_python_module"]) is False
        assert ast.literal_eval(kw["no_implicit_headers"]) is True
        assert "functions" not in kw and not re.search(r"\b_ext\b", fast)
        # the checker accepts the fast layout (its own op namespace is not "PyTorch compute")
        assert not [f for f in check_candidate(fast, target) if f.severity == REJECT], path

        _, naive = cs.render(parts, "naive")
        strings, kw = _strings(naive), _load_inline_keywords(naive)
        assert ast.literal_eval(kw["functions"]) == parts.functions
        assert "no_implicit_headers" not in kw and "is_python_module" not in kw
        if target == "cuda":  # KernelBench: everything in the .cu, declarations in the .cpp
            assert strings["cuda_source"].startswith("#include <torch/extension.h>\n")
            assert parts.cuda.strip() in strings["cuda_source"]
            assert strings["cuda_source"].rstrip().endswith(parts.cpp.rstrip())
            assert strings["cpp_source"].count(";") == len(parts.functions)
            assert "{" not in strings["cpp_source"]
        else:
            assert strings["cpp_source"] == parts.cpp and "cuda_source" not in strings
        # both keep the candidate's own flags and its ModelNew
        for source in (fast, naive):
            kw = _load_inline_keywords(source)
            for flag, want in (
                ("extra_cflags", parts.cflags),
                ("extra_cuda_cflags", parts.cuda_cflags),
            ):
                assert (ast.literal_eval(kw[flag]) if flag in kw else []) == want
            assert "class ModelNew(nn.Module)" in source


def test_the_slim_wrapper_spells_torch_names_for_the_slim_headers(cs):
    cpp = (
        "#include <torch/extension.h>\n#include <vector>\n"
        "torch::Tensor f(torch::Tensor x, double eps) {\n"
        "    TORCH_CHECK(x.scalar_type() == torch::kFloat32 ||\n"
        "                x.scalar_type() == torch::kFloat16);\n"
        "    auto y = torch::empty_like(x);\n    auto z = torch::zeros({2}, x.options());\n"
        "    at::parallel_for(0, 1, 1, [&](int64_t, int64_t) {});\n    return y;\n}\n"
    )
    slim = cs.slim_wrapper(cpp, "ns_x", ["f"])
    assert "torch/extension.h" not in slim and "torch::" not in slim
    assert "at::kFloat " in slim and "at::kHalf)" in slim
    includes = re.findall(r"#include <(ATen/ops/\w+)\.h>", slim)
    assert includes == ["ATen/ops/empty_like", "ATen/ops/zeros"]  # not parallel_for
    assert slim.rstrip().endswith('TORCH_LIBRARY(ns_x, m) {\n    m.def("f", &f);\n}')
    assert cs.declarations(cpp, ["f"]) == ["torch::Tensor f(torch::Tensor x, double eps);"]


def test_shipped_layout_and_suffix_rename_the_extension_only(cs):
    path = cs.shipped_candidates("cpu", "2")[0]
    parts = cs.take_apart(path)
    name, source = cs.render(parts, "shipped", "_p3")
    assert name == "kw_02_row_sum_cpu_shipped_p3"
    assert source == path.read_text().replace(f'name="{parts.ext}"', f'name="{name}"')
    fast_name, fast = cs.render(parts, "fast", "_p3")
    assert fast_name == "kw_02_row_sum_cpu_fast_p3" and f"TORCH_LIBRARY({fast_name}," in fast


def test_only_picks_by_name_prefix_or_number(cs):
    assert [p.stem for p in cs.shipped_candidates("cuda", "2,01_gelu,10_att")] == [
        "02_row_sum",
        "01_gelu",
        "10_attention",
    ]
    with pytest.raises(cs.LayoutError, match="no shipped cpu candidate"):
        cs.shipped_candidates("cpu", "07")  # conv2d has no cpu candidate


def test_a_candidate_the_generator_cannot_read_is_a_clear_error(cs, tmp_path):
    fast = tmp_path / "already_fast.py"
    fast.write_text('cpp_source = "x"\n_ext = load_inline(name="n", is_python_module=False)\n')
    with pytest.raises(cs.LayoutError, match="pybind candidate"):
        cs.take_apart(fast)
    other = tmp_path / "no_sources.py"
    other.write_text("import torch\n")
    with pytest.raises(cs.LayoutError, match="expected"):
        cs.take_apart(other)


def _fake_build(seconds: dict[str, float], cached_names: set[str]):
    def build(self, paths, jobs=1):
        out = []
        for path in paths:
            layout = "naive" if "_naive" in path.stem else "fast"
            again = path.stem in cached_names
            cached_names.add(path.stem)
            compile_s = 0.02 if again else seconds[layout]
            if "_first" in path.stem:  # makes the precompiled headers: slower, kept apart
                compile_s = 20.0
            result = BuildResult(None, "", "", compile_s, again, "", "k")
            if "_p1" in path.stem:  # one parallel build fails: reported, not hidden
                result = BuildResult(Status.TIMEOUT, "build did not finish", "", 9.0, False, "", "")
            out.append(PooledBuild(path, result, compile_s + 1.0))
        return out

    return build


def test_the_run_reports_medians_ratio_cache_hit_and_parallel_figures(cs, monkeypatch, capsys):
    monkeypatch.setattr(cs.Bench, "build", _fake_build({"naive": 30.0, "fast": 8.0}, set()))
    code = cs.main(["--target", "cpu", "--only", "1,2", "--parallel", "3", "--json"])
    out = capsys.readouterr()
    figures = json.loads(out.out)
    assert code == 1  # the failed parallel build
    assert figures["median_compile_s"] == {"naive": 30.0, "fast": 8.0}
    assert figures["naive_over_fast"] == 3.75
    assert [(b["candidate"], b["layout"]) for b in figures["builds"]] == [
        ("01_gelu", "naive"),
        ("01_gelu", "fast"),
        ("02_row_sum", "naive"),
        ("02_row_sum", "fast"),
    ]
    assert not any(b["cached"] for b in figures["builds"])
    # the first fast build of a fresh home is reported on its own, outside the medians
    assert figures["first_fast_build"]["compile_s"] == 20.0
    assert "first fast build in a fresh home, not in the medians: 20.00 s" in out.err
    assert figures["cache_hit"]["cached"] is True and figures["cache_hit"]["compile_s"] == 0.02
    par = figures["parallel"]
    assert par["builds"] == 3 and par["all_ok"] is False and len(par["failures"]) == 1
    assert par["one_after_another_s"] == 27.0  # 01, 02, 01 alone: 9 s wall each
    # human lines go to stderr with --json: the table, medians and the ratio
    assert "median | 30.00 | 8.00 | 3.75x" in out.err
    assert "SOME FAILED" in out.err


def test_unknown_layout_or_candidate_exits_with_a_message(cs, capsys):
    with pytest.raises(SystemExit):
        cs.main(["--target", "cpu", "--layouts", "fastest"])
    assert cs.main(["--target", "cpu", "--only", "99"]) == 2
    assert "no shipped cpu candidate" in capsys.readouterr().err
