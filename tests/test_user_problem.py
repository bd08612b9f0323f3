"""`resolve_problem`: problem files, shipped names and `module.py:ClassName` wrappers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from kernelwright.errors import BadInput
from kernelwright.problem import load_problem
from kernelwright.suite import builtin_dir
from kernelwright.user_problem import _entries, _input_entry, resolve_problem
from kernelwright.verifier import session

MODULE = '''"""A user's module: not a KernelBench problem."""

from __future__ import annotations

import torch
import torch.nn as nn
from helper import SCALE  # a sibling module


class Net(nn.Module):
    def __init__(self, k: float = 1.0, widths: list[int] | None = None):
        super().__init__()
        self.k = k

    def forward(self, x: torch.Tensor, idx: torch.Tensor, s: float) -> torch.Tensor:
        return x * SCALE * self.k * s + idx.float().sum()


def make_inputs():
    return [torch.randn(3, 5), torch.randint(0, 4, (2,)), 2.0]


def get_inputs():
    raise RuntimeError("replaced by the wrapper")
'''


@pytest.fixture
def user_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "helper.py").write_text("SCALE = 3.0\n")
    (tmp_path / "mymod.py").write_text(MODULE)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _returned(path: Path, func: str) -> ast.expr:
    """The expression the last top-level `func` of a generated file returns."""
    defs = [n for n in ast.parse(path.read_text()).body if getattr(n, "name", None) == func]
    ret = defs[-1].body[-1]
    assert isinstance(ret, ast.Return) and ret.value is not None
    return ret.value


@pytest.mark.parametrize("spec", ["02_row_sum", "02_row_sum.py"])
def test_shipped_name(spec, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_problem(spec) == (builtin_dir() / "02_row_sum.py").resolve()


def test_file_in_cwd_wins_over_shipped_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "02_row_sum.py").write_text("class Model: pass\n")
    assert resolve_problem("02_row_sum.py") == tmp_path / "02_row_sum.py"


def test_existing_file_passes_through(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "prob.py").write_text("x = 1\n")
    monkeypatch.chdir(tmp_path)
    assert resolve_problem("sub/prob.py") == (tmp_path / "sub" / "prob.py").resolve()


def test_module_with_inputs(user_dir, kw_home):
    path = resolve_problem("mymod.py:Net", inputs="float32[3, 5]; int64[2] 0.5")
    assert path == kw_home.resolve() / "problems" / "mymod_Net.py"
    problem = load_problem(path)
    source = path.read_text()
    assert MODULE.split("from __future__ import annotations\n")[1] in source  # verbatim
    assert "class Model(Net):" in source
    assert ast.unparse(_returned(path, "get_inputs")) == (
        "[torch.randn((3, 5), dtype=torch.float32), "
        "torch.randint(0, 16, (2,), dtype=torch.int64), 0.5]"
    )
    assert ast.literal_eval(_returned(path, "get_init_inputs")) == []

    again = resolve_problem("mymod.py:Net", inputs="float32[3, 5]; int64[2] 0.5")
    assert again.read_bytes() == path.read_bytes()
    assert load_problem(again).content_hash == problem.content_hash

    (user_dir / "mymod.py").write_text(MODULE.replace("self.k * s", "self.k * s * 2"))
    changed = load_problem(resolve_problem("mymod.py:Net", inputs="float32[3, 5]; int64[2] 0.5"))
    assert changed.content_hash != problem.content_hash


def test_user_class_named_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "modelmod.py").write_text(
        "import torch.nn as nn\n\nclass Model(nn.Module):\n    def forward(self, x):\n"
        "        return x + 1\n"
    )
    path = resolve_problem("modelmod.py:Model", inputs="[4]")
    load_problem(path)
    assert "_KwUserModel = Model" in path.read_text()
    assert "class Model(_KwUserModel):" in path.read_text()
    compile(path.read_text(), str(path), "exec")


def test_get_inputs_from_same_file(user_dir):
    path = resolve_problem("mymod.py:Net", get_inputs="mymod.py:make_inputs")
    load_problem(path)
    assert path.read_text().rstrip().splitlines().count("get_inputs = make_inputs") == 1
    compile(path.read_text(), str(path), "exec")  # the __future__ import stayed first


def test_get_inputs_from_other_file(user_dir):
    inputs_file = user_dir / "shapes.py"
    inputs_file.write_text("import torch\n\ndef inputs():\n    return [torch.ones(2)]\n")
    path = resolve_problem("mymod.py:Net", get_inputs=f"{inputs_file}:inputs")
    first = load_problem(path)
    assert str(inputs_file) in path.read_text()
    inputs_file.write_text("import torch\n\ndef inputs():\n    return [torch.ones(3)]\n")
    # The wrapper records the inputs file's sha256, so its edits change the problem's hash.
    again = load_problem(resolve_problem("mymod.py:Net", get_inputs="shapes.py:inputs"))
    assert again.content_hash != first.content_hash


def test_init_args(user_dir):
    path = resolve_problem("mymod.py:Net", inputs="[2]", init_args='[0.5, [1, 2], "x", true]')
    assert ast.literal_eval(_returned(path, "get_init_inputs")) == [0.5, [1, 2], "x", True]


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("[8,16]", "torch.randn((8, 16), dtype=torch.float32)"),
        ("bfloat16[7]", "torch.randn((7,), dtype=torch.bfloat16)"),
        ("float64[]", "torch.randn((), dtype=torch.float64)"),
        ("int32[2,0]", "torch.randint(0, 16, (2, 0), dtype=torch.int32)"),
        ("bool[3]", "torch.randint(0, 2, (3,), dtype=torch.bool)"),
        ("3", "3"),
        ("-0.5", "-0.5"),
        ("1e-3", "0.001"),
    ],
)
def test_input_entries(spec, expected):
    assert _input_entry(spec) == expected


def test_entries_split_on_semicolons_and_spaces():
    assert _entries(" float16[8, 16];int64[4]  ; 2 ") == ["float16[8,16]", "int64[4]", "2"]


def _bad(user_dir: Path) -> list[tuple[str, dict[str, str], str]]:
    (user_dir / "data.txt").write_text("")
    (user_dir / "inner.py").write_text("def f():\n    class Net: pass\n")
    (user_dir / "broken.py").write_text("class Net(:\n")
    (user_dir / "pkg.py").write_text("from .x import y\nclass Net: pass\n")
    ok = {"inputs": "[1]"}
    return [
        ("nope.py:Net", ok, "file not found"),
        ("data.txt:Net", ok, "not a .py file"),
        ("mymod.py:Nope", ok, "no top-level class Nope"),
        ("inner.py:Net", ok, "no top-level class Net"),
        ("broken.py:Net", ok, "syntax error"),
        ("pkg.py:Net", ok, "relative imports"),
        ("mymod.py:", ok, "malformed"),
        (":Net", ok, "malformed"),
        ("mymod.py:1Net", ok, "malformed"),
        ("99_nothing", {}, "kernelwright suite"),
        ("nothere.py", {}, "not found"),
        ("data.txt", {}, "not a .py file"),
        ("02_row_sum", ok, "module.py:ClassName"),
        ("mymod.py", {"init_args": "[]"}, "module.py:ClassName"),
        ("mymod.py:Net", {}, "--get-inputs"),
        ("mymod.py:Net", {"inputs": "[1]", "get_inputs": "mymod.py:make_inputs"}, "--inputs"),
        ("mymod.py:Net", {"inputs": "float32[8,]"}, "'float32[8,]'"),
        ("mymod.py:Net", {"inputs": "float33[8]"}, "'float33[8]'"),
        ("mymod.py:Net", {"inputs": "[8x16]"}, "'[8x16]'"),
        ("mymod.py:Net", {"inputs": "float32(8)"}, "'float32(8)'"),
        ("mymod.py:Net", {"inputs": "[2] nan"}, "'nan'"),
        ("mymod.py:Net", {"inputs": " ; "}, "--inputs"),
        ("mymod.py:Net", {"get_inputs": "mymod.py"}, "malformed"),
        ("mymod.py:Net", {"get_inputs": "mymod.py:missing"}, "no top-level function missing"),
        ("mymod.py:Net", {"get_inputs": "gone.py:f"}, "file not found"),
        ("mymod.py:Net", {"inputs": "[1]", "init_args": "[1,"}, "not valid JSON"),
        ("mymod.py:Net", {"inputs": "[1]", "init_args": "5"}, "JSON list"),
        ("mymod.py:Net", {"inputs": "[1]", "init_args": '[{"a": 1}]'}, "JSON list"),
        ("mymod.py:Net", {"inputs": "[1]", "init_args": "[NaN]"}, "JSON list"),
    ]


def test_bad_input(user_dir):
    for spec, kwargs, fragment in _bad(user_dir):
        with pytest.raises(BadInput) as info:
            resolve_problem(spec, **kwargs)
        message = str(info.value)
        assert fragment in message, (spec, kwargs, message)
        assert "\n" not in message
        if fragment.startswith("'"):  # a malformed --inputs entry: quoted, with an example
            assert '--inputs "float32[8192,4096] int64[16]"' in message


@pytest.mark.parametrize(
    "kwargs, shape",
    [
        ({"inputs": "float32[3,5] int64[2] 0.5", "init_args": "[2.0]"}, (3, 5)),
        ({"get_inputs": "mymod.py:make_inputs"}, (3, 5)),
        ({"get_inputs": "shapes.py:inputs"}, (6,)),
    ],
)
def test_generated_problem_runs_in_the_reference_worker(user_dir, kwargs, shape):
    (user_dir / "shapes.py").write_text(
        "import torch\nfrom helper import SCALE\n\n"
        "def inputs():\n"
        "    return [torch.ones(6) * SCALE, torch.zeros(1, dtype=torch.int64), 1.0]\n"
    )
    problem = resolve_problem("mymod.py:Net", **kwargs)
    reference = session.run_reference(problem, "cpu", 1, 42, user_dir / "scratch", 120)
    assert reference.files
    for out_path, _ in reference.files.values():
        output = torch.load(out_path, weights_only=True)
        assert output.shape == shape and torch.isfinite(output).all()
