"""Sizes and literal inputs are not tensors: arithmetic or numpy on them is not PyTorch or host
compute. Anything not proven a size stays a tensor, so a helper doing the work is still found."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from kernelwright.compiler.findings import REJECT
from kernelwright.problem import load_candidate, load_problem
from kernelwright.verifier.static_checks import check_candidate

HEAD = """
import numpy as np
import torch
import torch.nn as nn
from torch.utils.cpp_extension import load_inline

ext = load_inline(name="k", cpp_sources="torch::Tensor run(torch::Tensor x, int64_t n);",
                  functions=["run"])
"""


def _checks(
    body: str, scalar_inputs: tuple[int, ...] = (), scalar_init_inputs: tuple[int, ...] = ()
) -> dict[str, str]:
    """check -> severity of each finding about compute."""
    source = HEAD + textwrap.dedent(body)
    found = check_candidate(source, "cpu", scalar_inputs, scalar_init_inputs)
    return {f.check: f.severity for f in found if "compute" in f.check}


DIM_INPUT = """
class ModelNew(nn.Module):
    def forward(self, x, dim):
        dim = dim % x.dim()
        if dim < 0:
            dim = dim + x.ndim
        return ext.run(x, int(np.mod(dim, x.ndim)))
"""


def test_an_int_input_of_the_problem_is_not_a_tensor():
    # helper 19 c04/c05/c15: `dim` comes from get_inputs() as -1
    assert _checks(DIM_INPUT, scalar_inputs=(1,)) == {}
    # without the problem's word, `dim` may be a tensor: numpy on it is host compute
    assert _checks(DIM_INPUT)["host_compute"] == REJECT


def test_a_tensor_input_beside_a_literal_one_is_still_a_tensor():
    body = """
    class ModelNew(nn.Module):
        def forward(self, x, dim):
            return ext.run(x * 2, dim)
    """
    assert _checks(body, scalar_inputs=(1,)) == {"torch_compute_partial": "warn"}


SIZE_HELPER = """
class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = 256

    def _rows_per_chunk(self, n):
        return int(2 ** np.ceil(np.log2(max(n, 1))))

    def _grid(self, n, block):
        return (n + block - 1) // block

    def forward(self, x):
        rows, cols = x.shape
        chunk = self._rows_per_chunk(rows)
        dims = tuple(x.shape)
        if len(dims) != 2 or min(dims) < 1:
            raise ValueError("a 2-D input expected")
        return ext.run(x, self._grid(chunk * cols, self.block) + _cdiv(x.numel(), 4))


def _cdiv(a, b):
    return (a + b - 1) // b
"""


def test_numpy_and_arithmetic_on_sizes_in_helpers_are_fine():
    # helper 19 c24: a helper method's argument counted as a tensor
    assert _checks(SIZE_HELPER) == {}


@pytest.mark.parametrize(
    "change",
    [
        ("self._rows_per_chunk(rows)", "self._rows_per_chunk(x)"),  # a tensor passed in
        ("chunk = self._rows_per_chunk(rows)", "f = self._rows_per_chunk\n        chunk = f(x)"),
        ("chunk = self._rows_per_chunk(rows)", "chunk = (lambda r: self._rows_per_chunk(r))(x)"),
        ("chunk = self._rows_per_chunk(rows)", "chunk = self._rows_per_chunk(*[x])"),
        ("rows, cols = x.shape", "rows, cols = x, x.shape[1]"),
        ("rows, cols = x.shape", "rows, cols = x.shape\n        rows = x.sum(1)"),
        ("rows, cols = x.shape", "rows, cols = x.shape\n        for rows in [x]: pass"),
        ("self._rows_per_chunk(rows)", "self._rows_per_chunk(self.w)"),
        ("    def _rows_per_chunk", "    @some_wrapper\n    def _rows_per_chunk"),
    ],
)
def test_a_tensor_reaching_a_helper_any_way_keeps_it_a_tensor(change):
    body = SIZE_HELPER.replace(*change)
    assert _checks(body).get("host_compute") == REJECT


@pytest.mark.parametrize(
    "change",
    [
        ("_cdiv(x.numel(), 4)", "_cdiv(x, 4)"),
        ("self._grid(chunk * cols, self.block)", "self._grid(chunk * cols, self.scale)"),
        ("self.block = 256", "self.block = nn.Parameter(torch.ones(1))"),
        ("self.block = 256", "self.block = 256\n        self.register_buffer('block', None)"),
    ],
)
def test_arithmetic_on_a_tensor_in_a_helper_is_pytorch_compute(change):
    body = SIZE_HELPER.replace(*change)
    assert _checks(body) == {"torch_compute_partial": "warn"}


def test_a_module_helper_doing_the_work_is_found():
    # its arguments used to count as sizes whatever they were
    body = """
    def _mul(a, b):
        return a * b

    class ModelNew(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(4))

        def forward(self, x):
            return _mul(x, self.w)
    """
    assert _checks(body) == {"torch_compute": REJECT}


def test_a_module_constant_rebound_to_a_tensor_is_not_a_size():
    body = """
    BLOCK = 256

    def _grid(n, block):
        return (n + block - 1) // block

    def _set(x):
        global BLOCK
        BLOCK = x

    class ModelNew(nn.Module):
        def forward(self, x):
            _set(x)
            return ext.run(x, _grid(x.numel(), BLOCK))
    """
    assert _checks(body) == {"torch_compute_partial": "warn"}
    assert _checks(body.replace("global BLOCK", "pass")) == {}  # a local BLOCK then


def test_an_alias_of_the_candidates_op_namespace_is_its_extension():
    # helper 19 c04: `_ops = torch.ops.myns` then `_ops.fn(...)` was not seen as the kernel,
    # so partial PyTorch work beside it was rejected instead of labelled
    body = """
    SRC = 'TORCH_LIBRARY(myns, m) { m.def("fn(Tensor x) -> Tensor", &fn); }'
    _ops = torch.ops.myns

    class ModelNew(nn.Module):
        def forward(self, x):
            return _ops.fn(x * 2)
    """
    assert _checks(body) == {"torch_compute_partial": "warn"}
    # PyTorch's own namespaces, and any the candidate does not declare (mkldnn, ...)
    for space in ("aten", "mkldnn"):
        other = body.replace("torch.ops.myns", f"torch.ops.{space}")
        assert _checks(other)["torch_compute"] == REJECT


def test_the_backward_of_an_autograd_function_is_not_evaluated():
    body = """
    class Relu(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return ext.run(x, 0)

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return grad * (x > 0)

    class ModelNew(nn.Module):
        def forward(self, x):
            return Relu.apply(x)
    """
    assert _checks(body) == {}


PROBLEM = """
import torch
import torch.nn as nn

class Model(nn.Module):
    def forward(self, x, dim, shape, scale, mask):
        return x

rows = 128
DIM = -1
{extra}

def get_inputs():
    scale = 0.5 * 2
    mask = torch.rand(rows) > 0.5
    return [torch.randn(rows, 4), DIM, (rows, 4), scale, mask]

def get_init_inputs():
    return []
"""


@pytest.mark.parametrize(
    ("extra", "scalars"),
    [
        ("", (1, 2, 3)),
        ("EXTRA_SHAPES = [{'rows': 64}]", (1, 2, 3)),
        # computed overrides may rebind module names to anything: only get_inputs' own stay
        ("EXTRA_SHAPES = [{'rows': r} for r in (64,)]", (3,)),
        ("DIM = torch.tensor(1)", (2, 3)),
        ("def _f():\n    global DIM\n    DIM = 2", (2, 3)),
    ],
)
def test_the_problem_names_its_literal_inputs(tmp_path, extra, scalars):
    path = tmp_path / "p.py"
    path.write_text(PROBLEM.format(extra=extra))
    assert load_problem(path).scalar_inputs == scalars


def test_inputs_of_unknown_positions_are_all_tensors(tmp_path):
    path = tmp_path / "p.py"
    starred = PROBLEM.format(extra="").replace("return [torch", "return [*[1], torch")
    path.write_text(starred)
    assert load_problem(path).scalar_inputs == ()


def test_a_method_rebound_on_the_instance_proves_nothing():
    body = SIZE_HELPER.replace(
        "self.block = 256", "self.block = 256\n        self._rows_per_chunk = lambda r: r"
    ).replace("chunk = self._rows_per_chunk(rows)", "chunk = self._rows_per_chunk(x)")
    # the lambda runs, not the method: `chunk` may be a tensor
    assert _checks(body)["torch_compute_partial"] == "warn"


ATTACKS = sorted((Path(__file__).parent / "fixtures" / "scalar_attacks").glob("*.py"))
# the attacks on the problem's literal positions (26-28) assume input 1 is a literal
LITERAL_INPUT = {"26", "27", "28"}


@pytest.mark.parametrize("path", ATTACKS, ids=[p.stem for p in ATTACKS])
def test_a_tensor_smuggled_into_a_proven_name_is_still_pytorch_compute(path):
    # red team (helper 20): each of these once hid `a * b` on tensors behind the proof
    scalar_inputs = (1,) if path.name[:2] in LITERAL_INPUT else ()
    text = path.read_text()
    # attacks on the defaults the harness never passes name the argument counts they assume
    counts = re.search(r"passed=\((\d+), (\d+)\)", text)
    passed = (int(counts[1]), int(counts[2])) if counts else (None, None)
    found = check_candidate(text, "cpu", scalar_inputs, passed=passed)
    assert {f.check for f in found} & {"torch_compute", "torch_compute_partial", "host_compute"}


@pytest.mark.parametrize(
    "get_inputs",
    [
        "def get_inputs(S=torch.ones(4)):\n    return [torch.randn(3), S]",
        "def get_inputs():\n    with nullcontext(torch.ones(4)) as S:\n"
        "        return [torch.randn(3), S]",
        "def get_inputs():\n    match torch.ones(4):\n        case S:\n            pass\n"
        "    return [torch.randn(3), S]",
        "def get_inputs():\n    try:\n        raise ValueError()\n    except ValueError as S:\n"
        "        pass\n    return [torch.randn(3), S]",
        "globals()['S'] = torch.ones(4)\n\ndef get_inputs():\n    return [torch.randn(3), S]",
        "class S:\n    pass\n\nS = 2.0\n\ndef get_inputs():\n    return [torch.randn(3), S]",
    ],
    ids=["param_default", "with_as", "match", "except_as", "globals", "rebound"],
)
def test_a_name_bound_to_anything_but_literals_is_no_literal_input(tmp_path, get_inputs):
    path = tmp_path / "p.py"
    path.write_text(
        "import torch\nimport torch.nn as nn\nfrom contextlib import nullcontext\n\n"
        "class Model(nn.Module):\n    def forward(self, x, s):\n        return x * s\n\n"
        f"S = 2.0\n\n{get_inputs}\n\ndef get_init_inputs():\n    return []\n"
    )
    assert load_problem(path).scalar_inputs == ()
    plain = "def get_inputs():\n    return [torch.randn(3), S]"
    path.write_text(path.read_text().replace(get_inputs, plain))
    assert load_problem(path).scalar_inputs == (1,)


INIT_SIZE = """
def _blocks(n):
    return int(np.ceil(n / 256))

class ModelNew(nn.Module):
    def __init__(self, features, eps):
        super().__init__()
        self.features = features
        self.eps = eps

    def forward(self, x):
        return ext.run(x, _blocks(self.features) + int(np.log2(self.features)))
"""


def test_a_size_the_constructor_gets_from_the_problem_is_not_a_tensor():
    # get_init_inputs() returns [features, eps] as literals: `self.features` is a size
    assert _checks(INIT_SIZE, scalar_init_inputs=(0, 1)) == {}
    assert _checks(INIT_SIZE)["host_compute"] == REJECT  # without the problem's word
    # a store of another value anywhere makes it unproven again
    stored = INIT_SIZE.replace(
        "        self.eps = eps", "        self.eps = eps\n        self.features = x"
    )
    assert _checks(stored, scalar_init_inputs=(0, 1))["host_compute"] == REJECT


def test_the_problem_names_its_literal_constructor_inputs(tmp_path):
    path = tmp_path / "p.py"
    text = PROBLEM.format(extra="").replace(
        "def get_init_inputs():\n    return []",
        "def get_init_inputs():\n    return [rows, 0.5, mask_t()]",
    )
    path.write_text(text + "\ndef mask_t():\n    return torch.ones(2)\n")
    assert load_problem(path).scalar_init_inputs == (0, 1)


HONEST = Path(__file__).parent / "fixtures" / "honest_static"
# Still labelled `torch_compute_partial` (a warning, never a rejection): sizes carried through a
# property, a dataclass or a helper class's constructor, or a starred `*x.shape[2:]`.
STILL_WARNED = {"c10", "c11", "c22", "c23", "c34"}


@pytest.mark.parametrize(
    "path", sorted((HONEST / "c").glob("*.py")), ids=lambda p: p.stem.split("_")[0]
)
def test_honest_candidates_are_not_rejected(path):
    # a false-positive hunt (helper 21): KernelBench-style problems and honest candidates
    # whose Python only sizes, allocates and launches; each names its problem and target
    _, _, problem_name, target = path.read_text().splitlines()[0].split()
    problem = load_problem(HONEST / "p" / f"{problem_name}.py")
    candidate = load_candidate(path, problem)
    found = check_candidate(
        candidate.source,
        target,
        problem.scalar_inputs,
        problem.scalar_init_inputs,
        passed=problem.input_counts,
    )
    assert not [f for f in found if f.severity == REJECT], found
    if path.stem.split("_")[0] not in STILL_WARNED:
        assert found == [], found
