"""`kernelwright runs ...` / `candidates ...` on recorded data, and the exported drop-in file.
The commands run in-process (`cli` is conftest's `cli_in_process` here); the exported file is
checked in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from kernelwright.problem import load_problem
from kernelwright.records import EvaluationResult, Status
from kernelwright.store import repo
from kernelwright.store.db import open_engine

FIXTURES = Path(__file__).resolve().parent / "fixtures"
PROBLEM = FIXTURES / "problems" / "scale_add.py"


def _problem() -> dict[str, str]:
    p = load_problem(PROBLEM)
    return {"content_hash": p.content_hash, "name": p.name, "path": str(p.path), "source": p.source}


def _result(status: Status, speedup: float | None) -> EvaluationResult:
    return EvaluationResult(
        status=status,
        reason="" if speedup else "wrong",
        target="cpu",
        problem=str(PROBLEM),
        problem_hash="x",
        candidate="c",
        trials=3,
        speedup=speedup,
        log="the log\n",
        environment={"cpu": "test cpu"},
    )


@pytest.fixture
def cli(cli_in_process):
    return cli_in_process


@pytest.fixture
def history(tmp_path):
    db = f"sqlite:///{tmp_path / 'h.db'}"
    engine = open_engine(db)
    ok = (FIXTURES / "candidates" / "scale_add_ok.py").read_text()
    wrong = (FIXTURES / "candidates" / "scale_add_wrong.py").read_text()
    run_a = repo.start_run(engine, "optimize", "cpu", {})
    a1 = repo.add_candidate(engine, run_a, _problem(), wrong, "w", _result(Status.INCORRECT, None))
    a2 = repo.add_candidate(
        engine,
        run_a,
        _problem(),
        ok,
        "o",
        _result(Status.CORRECT, 1.7),
        parents=[a1],
        round_index=1,
    )
    repo.finish_run(engine, run_a)
    run_b = repo.start_run(engine, "optimize", "cpu", {})
    repo.add_candidate(engine, run_b, _problem(), ok, "o", _result(Status.CORRECT, 1.1))
    engine.dispose()
    return {"db": db, "a": run_a, "b": run_b, "a1": a1, "a2": a2}


def _cli(cli, history, *args):
    return cli(*args, env_extra={"KERNELWRIGHT_DB": history["db"]})


def test_runs_list_show_tree_compare(cli, history):
    listed = json.loads(_cli(cli, history, "runs", "list", "--json").stdout)
    assert {r["id"] for r in listed} == {history["a"], history["b"]}
    shown = json.loads(_cli(cli, history, "runs", "show", history["a"], "--json").stdout)
    assert shown["best"]["candidate"] == history["a2"] and shown["best"]["speedup"] == 1.7
    assert [r["round"] for r in shown["rounds"]] == [0, 1]
    tree = _cli(cli, history, "runs", "tree", history["a"])
    assert tree.returncode == 0
    lines = tree.stdout.splitlines()
    child = next(i for i, line in enumerate(lines) if history["a2"] in line)
    parent = next(i for i, line in enumerate(lines) if history["a1"] in line)
    assert child > parent and "correct" in lines[child] and "1.7x" in lines[child]
    assert len(lines[child]) - len(lines[child].lstrip("│ └├─")) > len(lines[parent]) - len(
        lines[parent].lstrip("│ └├─")
    )  # indented under its parent
    compared = json.loads(
        _cli(cli, history, "runs", "compare", history["a"], history["b"], "--json").stdout
    )
    assert [{k: v for k, v in row.items() if k != "spread"} for row in compared] == [
        {"problem": "scale_add", history["a"]: 1.7, history["b"]: 1.1}
    ]


def test_candidates_show_and_diff(cli, history):
    code = _cli(cli, history, "candidates", "show", history["a2"], "--code").stdout
    assert code == (FIXTURES / "candidates" / "scale_add_ok.py").read_text()
    assert _cli(cli, history, "candidates", "show", history["a2"], "--log").stdout == "the log\n"
    metrics = json.loads(
        _cli(cli, history, "candidates", "show", history["a2"], "--metrics").stdout
    )
    assert metrics["environment"] == {"cpu": "test cpu"}
    summary = _cli(cli, history, "candidates", "show", history["a1"]).stdout
    assert "incorrect" in summary and history["a"] in summary
    diff = _cli(cli, history, "candidates", "diff", history["a1"], history["a2"]).stdout
    assert "-            po[r * cols + c] = px[r * cols + c] * pw[c];" in diff
    assert "+            po[r * cols + c] = px[r * cols + c] * pw[c] + pb[c];" in diff


def test_delete_and_unknown_ids(cli, history):
    for args in (
        ("runs", "show", "nope"),
        ("runs", "tree", "nope"),
        ("runs", "delete", "nope"),
        ("runs", "export", "nope"),
        ("runs", "compare", history["a"], "nope"),
        ("candidates", "show", "nope"),
        ("candidates", "diff", history["a1"], "nope"),
    ):
        proc = _cli(cli, history, *args)
        assert proc.returncode == 2, args
        assert proc.stderr.startswith("error: no ") and "Traceback" not in proc.stderr
    assert _cli(cli, history, "runs", "delete", history["b"], "--yes").returncode == 0
    listed = json.loads(_cli(cli, history, "runs", "list", "--json").stdout)
    assert [r["id"] for r in listed] == [history["a"]]


def test_evaluate_save_records_a_run(cli, tmp_path):
    db = f"sqlite:///{tmp_path / 'saved.db'}"
    proc = cli(
        "evaluate",
        str(PROBLEM),
        str(FIXTURES / "cheats" / "timer_patch.py"),
        "--target",
        "cpu",
        "--json",
        "--save",
        "--db",
        db,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    engine = open_engine(db)
    shown = repo.show_run(engine, data["run_id"])
    assert shown["kind"] == "evaluate" and shown["status"] == "finished"
    assert shown["candidates"][0]["status"] == "rejected"


def test_bad_database_fails_before_evaluating(cli, tmp_path):
    proc = cli(
        "evaluate",
        str(PROBLEM),
        str(FIXTURES / "candidates" / "scale_add_ok.py"),
        "--target",
        "cpu",
        "--save",
        "--db",
        "nosuchdialect://x",
    )
    assert proc.returncode == 2 and "cannot use history database" in proc.stderr


CHECK_EXPORT = """
import importlib.util, os, sys, torch
spec = importlib.util.spec_from_file_location("exported", sys.argv[1])
exported = importlib.util.module_from_spec(spec); spec.loader.exec_module(exported)
assert not os.listdir(os.environ["TORCH_EXTENSIONS_DIR"]), "built at import"
pspec = importlib.util.spec_from_file_location("problem", sys.argv[2])
problem = importlib.util.module_from_spec(pspec); pspec.loader.exec_module(problem)
torch.manual_seed(0); ref = problem.Model(*problem.get_init_inputs())
torch.manual_seed(0); new = exported.ModelNew(*problem.get_init_inputs())
x = torch.randn(5, problem.dim)
try:
    got = new(x)
except RuntimeError as exc:
    print("RAISED", str(exc)[:4000]); sys.exit(3)
torch.testing.assert_close(got, ref(x), atol=1e-5, rtol=1e-5)
print("MATCH")
"""


@pytest.mark.slow
def test_exported_file_matches_the_reference_in_a_fresh_process(cli, history, tmp_path):
    out = tmp_path / "drop_in.py"
    proc = _cli(cli, history, "runs", "export", history["a"], "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert "Exported by kernelwright" in text and "_kw_lazy(lambda: load_inline(" in text
    ext_dir = tmp_path / "ext"
    ext_dir.mkdir()
    env = {
        "TORCH_EXTENSIONS_DIR": str(ext_dir),
        "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
    }
    check = subprocess.run(
        [sys.executable, "-c", CHECK_EXPORT, str(out), str(PROBLEM)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert "MATCH" in check.stdout, check.stdout + check.stderr
    # a build that fails raises with the compiler's log, never falls back to PyTorch (the
    # compiler refuses an option at once: no second parse of torch's headers)
    broken = tmp_path / "broken.py"
    failing = 'no_implicit_headers=True,\n    extra_cflags=["-kw-no-such-option"],\n)'
    broken.write_text(
        text.replace("no_implicit_headers=True,\n)", failing).replace(
            "kw_test_scale_add_ok", "kw_test_scale_add_export_broken"
        )
    )
    assert failing in broken.read_text()
    ext_dir2 = tmp_path / "ext2"
    ext_dir2.mkdir()
    env["TORCH_EXTENSIONS_DIR"] = str(ext_dir2)
    check = subprocess.run(
        [sys.executable, "-c", CHECK_EXPORT, str(broken), str(PROBLEM)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert check.returncode == 3, check.stdout + check.stderr
    assert "building the kernel extension failed" in check.stdout and "error" in check.stdout


def test_runs_list_never_cuts_a_run_id(cli, history):
    for columns in ("80", "50"):
        proc = cli("runs", "list", env_extra={"KERNELWRIGHT_DB": history["db"], "COLUMNS": columns})
        assert proc.returncode == 0, proc.stderr
        assert history["a"] in proc.stdout and history["b"] in proc.stdout, proc.stdout


def _record(source: str) -> dict:
    return {
        "id": "cand1",
        "run_id": "run1",
        "problem": {"name": "scale_add", "content_hash": "ab" * 32},
        "source": source,
        "evaluation": {"speedup": 1.5, "environment": {"cpu": "test cpu", "torch": "2"}},
    }


def test_export_keeps_the_candidates_docstring_and_future_import_first(tmp_path):
    from kernelwright.export import render

    ok = (FIXTURES / "candidates" / "scale_add_ok.py").read_text()
    source = '"""My kernel."""\nfrom __future__ import annotations\n\n' + ok
    out = tmp_path / "exported.py"
    out.write_text(render(_record(source)))
    namespace: dict = {}
    exec(compile(out.read_text(), str(out), "exec"), namespace)  # imports without building
    assert namespace["__doc__"] == "My kernel." and "annotations" in namespace
    assert "Exported by kernelwright: candidate cand1" in out.read_text()
    assert "ModelNew" in namespace
    # without a docstring of its own, the export's header is the module docstring
    plain = {}
    exec(compile(render(_record("from __future__ import annotations\n" + ok)), "x", "exec"), plain)
    assert plain["__doc__"].startswith("Exported by kernelwright")


FAST_LAYOUT = '''
import torch
import torch.nn as nn
from torch.utils.cpp_extension import load_inline

cpp_source = r"""
#include <torch/library.h>
at::Tensor twice(const at::Tensor& x);
TORCH_LIBRARY(NAMESPACE, m) { m.def("twice(Tensor x) -> Tensor", &twice); }
"""

load_inline(name="NAMESPACE", cpp_sources=cpp_source, is_python_module=False)


class ModelNew(nn.Module):
    def forward(self, x):
        return torch.ops.NAMESPACE.twice(x)
'''


def test_fast_layout_export_builds_on_first_use_of_its_op(tmp_path, monkeypatch):
    """The fast layout (a bare load_inline(..., is_python_module=False), ops called through
    torch.ops) imports without building; the first op call builds, once. A stand-in for
    load_inline registers the op in Python, so nothing is compiled here."""
    import uuid

    import torch
    import torch.utils.cpp_extension
    from kernelwright.export import render

    namespace = f"kw_test_lazy_{uuid.uuid4().hex[:8]}"
    builds: list[str] = []
    libraries = []

    def fake_load_inline(name, cpp_sources, is_python_module=True, **_):
        builds.append(name)
        if "broken" in name:
            raise RuntimeError("error: the compiler log")
        library = torch.library.Library(name, "DEF")
        library.define("twice(Tensor x) -> Tensor")
        library.impl("twice", lambda x: x * 2, "CompositeExplicitAutograd")
        libraries.append(library)  # registrations live as long as their Library
        return f"/builds/{name}.so"

    monkeypatch.setattr(torch.utils.cpp_extension, "load_inline", fake_load_inline)
    for name, works in ((namespace, True), (namespace + "_broken", False)):
        text = render(_record(FAST_LAYOUT.replace("NAMESPACE", name)))
        assert f"_kw_lazy_ops(('{name}',))" in text
        module: dict = {"__name__": "exported"}
        exec(compile(text, "exported.py", "exec"), module)
        assert builds == ([namespace] if not works else []), "built at import"
        x = torch.arange(4.0)
        if works:
            torch.testing.assert_close(module["ModelNew"]()(x), x * 2)
            torch.testing.assert_close(module["ModelNew"]()(x), x * 2)
            assert builds == [namespace]  # once
        else:
            with pytest.raises(RuntimeError, match="building the kernel extension failed"):
                module["ModelNew"]()(x)


def test_export_defers_no_op_build_it_cannot_tie_to_a_namespace():
    """Where the file's op namespaces cannot be read for sure, or the build's path is bound to a
    name, the candidate's build stays at import: an op would otherwise never be registered."""
    from kernelwright.export import make_lazy

    made_at_run_time = FAST_LAYOUT.replace(
        "TORCH_LIBRARY(NAMESPACE, m)", 'TORCH_LIBRARY(""" + NS + """, m)'
    ).replace("cpp_source = ", 'NS = "kw_x"\ncpp_source = ', 1)
    impl = FAST_LAYOUT.replace("TORCH_LIBRARY(NAMESPACE, m)", "TORCH_LIBRARY_IMPL(aten, CPU, m)")
    bound = FAST_LAYOUT.replace("\nload_inline(", "\n_path = load_inline(")
    for source in (made_at_run_time, impl, bound):
        assert make_lazy(source) == (source, ())
    lazy, namespaces = make_lazy(FAST_LAYOUT)
    assert namespaces == ("NAMESPACE",) and "_kw_lazy(lambda: load_inline(" in lazy
