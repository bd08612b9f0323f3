"""`kernelwright hotspots` and `apply` (issue 24): from a slow model to a faster one.

Bad input and the pieces (grouping, choosing what to apply, carrying weights) run in this
process; the one end-to-end test runs the real flow as a user would, each command a fresh
process: hotspots on the tiny transformer, a replayed bench with an honest C++ LayerNorm, apply
(with a kernel that breaks the model, left out), and the patched model imported and run in a
process of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from kernelwright.apply import Kernel, Outcome, choose, patched_source
from kernelwright.hotspots import group, read_marker, units

FIXTURES = Path(__file__).resolve().parent / "fixtures"
MODEL = FIXTURES / "models" / "tiny_transformer.py"
MODEL_REF = f"{MODEL}:TinyTransformer"
INPUTS = "float32[4,32,64]"


def _in_process(*args: str) -> subprocess.CompletedProcess[str]:
    from kernelwright.cli import app
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, result.stderr)


def _one_line(proc: subprocess.CompletedProcess[str], phrase: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert phrase in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (["nowhere.py:Net", "--inputs", INPUTS], "file not found"),
        ([f"{MODEL}:NoSuchClass", "--inputs", INPUTS], "defines no top-level class"),
        ([MODEL_REF, "--inputs", "float32[4,x]"], "--inputs entry"),
        ([MODEL_REF, "--inputs", INPUTS, "--init-args", "{"], "--init-args is not valid JSON"),
        ([MODEL_REF, "--inputs", INPUTS, "--top", "0"], "--top must be 1 or more"),
        ([MODEL_REF, "--inputs", INPUTS, "--target", "tpu"], "unknown target"),
    ],
)
def test_hotspots_bad_input_is_one_line(args, phrase, tmp_path):
    _one_line(_in_process("hotspots", *args, "--db", f"sqlite:///{tmp_path / 'h.db'}"), phrase)


def test_apply_bad_input_is_one_line(tmp_path):
    db = ["--db", f"sqlite:///{tmp_path / 'h.db'}"]
    common = ["--model", MODEL_REF, "--inputs", INPUTS, *db]
    _one_line(_in_process("apply", "abcdef012345", *common), "no run")
    _one_line(_in_process("apply", "abcdef012345", *common, "--trials", "0"), "--trials")
    missing = _in_process("apply", "abcdef012345", "--inputs", INPUTS, *db)
    assert missing.returncode == 2 and "--model" in missing.stderr


def _module(path: str, kind: str, total: float, self_: float, **extra) -> dict:
    entry = {
        "path": path,
        "type": kind,
        "module": "torch.nn.modules.x" if extra.get("torch_nn") else "kw_problem",
        "torch_nn": False,
        "user_children": False,
        "calls": 1,
        "signatures": [
            {"args": [{"kind": "tensor", "dtype": "float32", "shape": [2, 8]}], "kwargs": []}
        ],
        "total_us": total,
        "self_us": self_,
        "init": {"args": [8], "how": "recorded constructor call"},
    }
    entry.update(extra)
    return entry


def test_units_do_not_overlap_and_same_shapes_group_with_a_count():
    modules = [
        _module("", "Net", 100, 10, user_children=True),
        _module("blocks", "ModuleList", 0, 0, calls=0, torch_nn=True),
        _module("blocks.0", "Block", 45, 5, user_children=True),
        _module("blocks.0.norm", "LayerNorm", 10, 10, torch_nn=True),
        _module("blocks.0.mlp", "MLP", 30, 10),
        _module("blocks.0.mlp.fc", "Linear", 20, 20, torch_nn=True),
        _module("blocks.1", "Block", 45, 5, user_children=True),
        _module("blocks.1.norm", "LayerNorm", 10, 10, torch_nn=True),
        _module("blocks.1.mlp", "MLP", 30, 10, signatures=[{"args": [], "kwargs": ["x"]}]),
        _module("blocks.1.mlp.fc", "Linear", 20, 20, torch_nn=True),
    ]
    chosen = units(modules)
    assert [u["path"] for u in chosen] == [
        "blocks.0.norm",
        "blocks.0.mlp",
        "blocks.1.norm",
        "blocks.1.mlp",
    ]
    groups = group(chosen)
    assert [(g.type, g.count) for g in groups] == [("MLP", 1), ("MLP", 1), ("LayerNorm", 2)]
    assert "keyword arguments" in groups[1].skipped and not groups[0].skipped
    assert sum(g.total_us for g in groups) <= modules[0]["total_us"]


def _kernel(name: str, share: float) -> Kernel:
    return Kernel(name, f"c_{name}", name.upper(), [name], [], share, "", 1.0)


def test_a_kernel_that_breaks_the_model_is_left_out_never_applied():
    kernels = [_kernel("a", 0.5), _kernel("b", 0.3), _kernel("c", 0.1)]

    def render(chosen):
        return ",".join(k.problem for k in chosen)

    def check(text):  # b breaks the model; a and c together do too
        names = set(text.split(","))
        if "b" in names:
            return Outcome(False, "incorrect: 3 of 3 cases wrong")
        if names == {"a", "c"}:
            return Outcome(False, "runtime_error: clash")
        return Outcome(True, "", verdict=text)

    chosen, outcome, left = choose(kernels, check, render)
    assert [k.problem for k in chosen] == ["a"] and outcome.verdict == "a"
    assert {d["problem"]: d["why"] for d in left} == {
        "b": "incorrect: 3 of 3 cases wrong",
        "c": "breaks the model with the others: runtime_error: clash",
    }
    everything_works = choose(kernels, lambda text: Outcome(True, "", verdict=text), render)
    assert [k.problem for k in everything_works[0]] == ["a", "b", "c"]
    nothing, none_outcome, left = choose(kernels[:1], lambda t: Outcome(False, "no"), render)
    assert nothing == [] and none_outcome is None and left[0]["why"] == "no"


SCALE = """
import torch
class ModelNew(torch.nn.Module):
    def __init__(self, n):
        super().__init__()
        self.gain = torch.nn.Parameter(torch.zeros(n))  # another name: carried by order
    def forward(self, x):
        return x * self.gain
"""
WRONG_SHAPE = SCALE.replace("torch.zeros(n)", "torch.zeros(n + 1)")
MODEL_TEXT = """
import torch
class Scale(torch.nn.Module):
    def __init__(self, n):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(n))
    def forward(self, x):
        return x * self.weight
class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = torch.nn.Sequential(Scale(4), torch.nn.ReLU(), Scale(4))
    def forward(self, x):
        return self.layers(x)
"""


def _patched(tmp_path: Path, source: str, name: str) -> object:
    import importlib.util

    model = tmp_path / "net.py"
    model.write_text(MODEL_TEXT)
    kernel = Kernel("01_scale", "cand1", "Scale", ["layers.0", "layers.2"], [4], 0.4, source, 2.0)
    text = patched_source("run1", model, "Net", [kernel])
    path = tmp_path / f"{name}.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_patched_model_carries_each_instance_weights(tmp_path):
    import torch

    module = _patched(tmp_path, SCALE, "patched_ok")
    torch.manual_seed(0)
    original = module._model_class()()
    torch.manual_seed(0)
    patched = module.build_model()
    assert type(patched.layers[0]).__module__.startswith("kw_apply_")
    x = torch.randn(3, 4)
    assert torch.equal(original(x), patched(x))
    # the same model through ModelNew, as apply checks it
    torch.manual_seed(0)
    assert torch.equal(module.ModelNew()(x), original(x))
    broken = _patched(tmp_path, WRONG_SHAPE, "patched_bad")
    with pytest.raises(RuntimeError, match="cannot carry the weights of layers.0"):
        broken.build_model()


def test_the_marker_round_trips():
    assert read_marker('x = 1\n# kernelwright-hotspot: {"type": "MLP"}\n') == {"type": "MLP"}
    assert read_marker("# kernelwright-hotspot: [1]\n") is None and read_marker("") is None


TRANSPOSED_MLP = """
import torch
import torch.nn.functional as F
class ModelNew(torch.nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.w1 = torch.nn.Parameter(torch.randn(dim, hidden))
        self.b1 = torch.nn.Parameter(torch.zeros(hidden))
        self.w2 = torch.nn.Parameter(torch.randn(hidden, dim))
        self.b2 = torch.nn.Parameter(torch.zeros(dim))
    def forward(self, x):
        return F.gelu(x @ self.w1 + self.b1) @ self.w2 + self.b2
"""


def _fenced(code: str) -> str:
    return f"A fused LayerNorm, one pass per row.\n```python\n{code}```\n"


@pytest.mark.slow
def test_from_a_slow_model_to_a_faster_one(cli, tmp_path):
    """hotspots -> bench (replayed, honest C++ LayerNorm) -> apply (the LayerNorm applied, an
    MLP kernel that breaks the model left out) -> report -> patched.py in a fresh process."""
    import time

    def timed(*args: str) -> subprocess.CompletedProcess[str]:
        start = time.perf_counter()
        # no precompiled headers: making them costs more than the two builds here save
        proc = cli(*args, env_extra={"KERNELWRIGHT_PCH": "0"})
        print(f"[{args[0]}: {time.perf_counter() - start:.1f} s]")
        return proc

    db = ["--db", f"sqlite:///{tmp_path / 'h.db'}"]
    out = tmp_path / "problems"
    found = timed(
        "hotspots",
        MODEL_REF,
        "--inputs",
        INPUTS,
        "--top",
        "3",
        "--out",
        str(out),
        "--target",
        "cpu",
        "--json",
        *db,
    )
    assert found.returncode == 0, found.stderr
    hot = json.loads(found.stdout)
    # every module's own time, the whole model's included, adds up to the forward
    assert sum(m["self_share"] for m in hot["modules"]) == pytest.approx(1.0, abs=0.01)
    assert sum(p["share"] for p in hot["problems"]) <= 1.0 + 1e-6
    by_type = {p["type"]: p for p in hot["problems"]}
    assert set(by_type) == {"Attention", "MLP", "LayerNorm"}
    assert by_type["LayerNorm"]["count"] == 5 and by_type["Attention"]["count"] == 2
    assert by_type["MLP"]["init"] == [64, 256] and by_type["LayerNorm"]["init"] == [64]
    assert by_type["LayerNorm"]["inputs"] == INPUTS
    norm = Path(by_type["LayerNorm"]["file"])
    assert norm.parent == out and "blocks.1.norm2" in norm.read_text()

    # bench runs every problem's reference before anything else: all three must pass it
    candidate = (FIXTURES / "models" / "candidates" / "layer_norm_cpu.py").read_text()
    replay = tmp_path / "replay.jsonl"
    replies = [{"role": "coder", "problem": norm.stem, "text": _fenced(candidate)}]
    replay.write_text("".join(json.dumps(r) + "\n" for r in replies))
    bench = timed(
        "bench",
        str(out),
        "--target",
        "cpu",
        "--model",
        f"replay:{replay}",
        "--rounds",
        "1",
        "--trials",
        "2",
        "--json",
        *db,
    )
    assert bench.returncode == 0, bench.stderr
    summary = json.loads(bench.stdout)
    correct = {by_type[t]["name"]: int(t == "LayerNorm") for t in by_type}
    assert {p["name"]: p["correct"] for p in summary["problems"]} == correct

    # a kernel correct as a module that breaks the model: recorded correct for the MLP problem,
    # its weights laid out transposed, so the instances' weights cannot be carried into it
    from kernelwright.problem import load_problem
    from kernelwright.records import EvaluationResult, Status
    from kernelwright.store import repo
    from kernelwright.store.db import open_engine

    engine = open_engine(db[1])
    mlp = load_problem(Path(by_type["MLP"]["file"]))
    row = {
        "content_hash": mlp.content_hash,
        "name": mlp.name,
        "path": str(mlp.path),
        "source": mlp.source,
    }
    recorded = EvaluationResult(
        status=Status.CORRECT,
        reason="",
        target="cpu",
        problem=str(mlp.path),
        problem_hash=mlp.content_hash,
        candidate="c",
        trials=2,
        speedup=1.2,
    )
    broken = repo.add_candidate(
        engine, summary["run_id"], row, TRANSPOSED_MLP, repo.source_hash(TRANSPOSED_MLP), recorded
    )

    patched = tmp_path / "patched.py"
    applied = timed(
        "apply",
        summary["run_id"],
        "--model",
        MODEL_REF,
        "--inputs",
        INPUTS,
        "--out",
        str(patched),
        "--trials",
        "2",
        *db,
    )
    assert applied.returncode == 0, applied.stderr
    print(applied.stdout)  # the end-to-end figure, for the log
    shown = " ".join(applied.stdout.split())  # rich wraps lines at the terminal's width
    assert "end to end: " in shown and "outputs match the original" in shown
    attention = by_type["Attention"]["name"]
    assert "LayerNorm" in shown and f"skipped problem {attention}" in shown
    assert f"left out MLP ({mlp.name}, {broken}): runtime_error" in shown
    assert "cannot carry the weights of blocks.0.mlp" in shown
    page = tmp_path / "report.html"
    assert cli("report", summary["run_id"], "--out", str(page), *db).returncode == 0
    assert "From the model" in page.read_text() and "end to end" in page.read_text()

    from kernelwright.store import model_runs

    stored = model_runs.for_run(open_engine(db[1]), summary["run_id"])
    assert stored["applies"][0]["status"] == "applied" and stored["applies"][0]["speedup"] > 0
    assert stored["hotspots"][0]["model"] == str(MODEL.resolve()) + ":TinyTransformer"

    # patched.py in a fresh process, far from kernelwright: same outputs as the original
    script = (
        "import sys, torch\n"
        f"sys.path[:0] = [{str(tmp_path)!r}, {str(MODEL.parent)!r}]\n"
        "import patched, tiny_transformer as tt\n"
        "torch.manual_seed(0); ref = tt.TinyTransformer()\n"
        "torch.manual_seed(0); new = patched.build_model()\n"
        "x = torch.randn(4, 32, 64)\n"
        "print('kw_apply_' in type(new.norm).__module__, (ref(x) - new(x)).abs().max().item())\n"
    )
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(tmp_path / "torch_extensions")}
    ran = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=600,
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    swapped, error = ran.stdout.split()[-2:]
    assert swapped == "True" and float(error) < 1e-4


def test_both_commands_render_their_results():
    from kernelwright.cli import apply as cli_apply
    from kernelwright.cli import hotspots as cli_hotspots
    from rich.console import Console

    console = Console(width=80, record=True)
    hot = {
        "model": "m.py:Net",
        "target": "cpu",
        "forward_ms": 2.0,
        "clock": "CPU time",
        "modules": [
            {
                "path": "(whole model)",
                "type": "Net",
                "calls": 1,
                "total_ms": 2.0,
                "self_ms": 0.5,
                "share": 1.0,
                "self_share": 0.25,
            }
        ],
        "problems": [
            {
                "name": "01_mlp",
                "type": "MLP",
                "count": 2,
                "share": 0.75,
                "inputs": "float32[2,8]",
                "init": [8],
                "init_from": "recorded call",
            }
        ],
        "skipped": [{"type": "Odd", "paths": ["odd"], "why": "called with keyword arguments"}],
        "out_dir": "/tmp/hot",
        "hotspots_id": "abc",
        "bench_command": "kernelwright bench /tmp/hot",
    }
    cli_hotspots.render(console, hot)
    applied = {
        "status": "nothing_applied",
        "left_out": [
            {"type": "MLP", "problem": "01_mlp", "candidate": "c1", "why": "incorrect: [wrong]"}
        ],
        "skipped": [],
        "patched": None,
    }
    cli_apply.render(console, applied)
    text = " ".join(console.export_text().split())
    assert "01_mlp" in text and "skipped Odd (odd): called with keyword arguments" in text
    assert "nothing applied" in text and "left out MLP (01_mlp, c1): incorrect: [wrong]" in text
