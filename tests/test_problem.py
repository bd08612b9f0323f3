"""Problem and candidate files: static checks, content hash, folders in KernelBench's layout."""

from __future__ import annotations

import pytest
from kernelwright.errors import BadInput
from kernelwright.problem import content_hash, load_candidate, load_problem, load_problem_dir
from kernelwright.suite import builtin_dir, candidates_for

PROBLEM = '''
import torch
import torch.nn as nn

class Model(nn.Module):
    """Doubles."""
    def __init__(self, k):
        super().__init__()
        self.k = k
    def forward(self, x, y=None):
        return x * self.k

n = 8
def get_inputs():
    return [torch.randn(n)]
def get_init_inputs():
    return [2]
'''


def test_hash_ignores_comments_blank_lines_and_indent_width():
    commented = PROBLEM.replace("n = 8", "# the size\nn = 8   # elements\n\n")
    reindented = PROBLEM.replace("    ", "  ")
    assert content_hash(PROBLEM) == content_hash(commented) == content_hash(reindented)


@pytest.mark.parametrize(
    "change",
    [("n = 8", "n = 9"), ("x * self.k", "x + self.k"), ('"""Doubles."""', '"""Triples."""')],
)
def test_hash_changes_with_code(change):
    assert content_hash(PROBLEM) != content_hash(PROBLEM.replace(*change))


def test_load_problem(tmp_path):
    path = tmp_path / "level2" / "7_double.py"
    path.parent.mkdir()
    path.write_text(PROBLEM + "EXTRA_SHAPES = [{'n': 3}]\n")
    problem = load_problem(path)
    assert problem.name == "7_double" and problem.level == 2
    assert problem.extra_shapes == [{"n": 3}]
    assert problem.content_hash == content_hash(path.read_text())


def test_sizes_set_inside_a_top_level_block_count_as_module_level(tmp_path):
    # helper 19: sizes chosen by `if torch.cuda.is_available():` were refused for EXTRA_SHAPES
    path = tmp_path / "p.py"
    sized = "if torch.cuda.is_available():\n    n = 4096\nelse:\n    n = 8\n"
    path.write_text(PROBLEM.replace("n = 8\n", sized) + "EXTRA_SHAPES = [{'n': 3}]\n")
    assert load_problem(path).extra_shapes == [{"n": 3}]
    path.write_text(PROBLEM + "EXTRA_SHAPES = [{'m': 3}]\n")
    with pytest.raises(BadInput, match="m"):
        load_problem(path)


def test_computed_extra_shapes_are_left_to_the_worker(tmp_path):
    path = tmp_path / "p.py"
    path.write_text(PROBLEM + "EXTRA_SHAPES = [{'n': s} for s in (3, 5)]\n")
    assert load_problem(path).extra_shapes is None


def test_extra_shapes_must_be_dicts(tmp_path):
    path = tmp_path / "p.py"
    path.write_text(PROBLEM + "EXTRA_SHAPES = [3]\n")
    with pytest.raises(BadInput, match="list of dicts"):
        load_problem(path)


def test_candidate_signature_must_match(tmp_path):
    problem_path = tmp_path / "p.py"
    problem_path.write_text(PROBLEM)
    problem = load_problem(problem_path)
    good = tmp_path / "good.py"
    good.write_text(
        "class ModelNew:\n    def __init__(self, k):\n        pass\n"
        "    def forward(self, x, y=None):\n        pass\n"
    )
    assert load_candidate(good, problem).source_hash
    inherited = tmp_path / "inherited.py"  # defines neither method: nothing to compare statically
    inherited.write_text("class ModelNew(object):\n    pass\n")
    load_candidate(inherited, problem)
    bad = tmp_path / "bad.py"
    bad.write_text("class ModelNew:\n    def __init__(self, k, extra):\n        pass\n")
    with pytest.raises(
        BadInput, match=r"ModelNew.__init__\(k, extra\) does not match Model.__init__\(k\)"
    ):
        load_candidate(bad, problem)


def _check_forward(tmp_path, problem_text: str, forward: str, fits: bool, refusal: str) -> None:
    problem_path = tmp_path / "p.py"
    problem_path.write_text(problem_text)
    problem = load_problem(problem_path)
    candidate = tmp_path / "cand.py"
    candidate.write_text(f"class ModelNew:\n    {forward}:\n        pass\n")
    if fits:
        assert load_candidate(candidate, problem).source_hash
    else:
        with pytest.raises(BadInput, match=refusal):
            load_candidate(candidate, problem)


@pytest.mark.parametrize(
    ("forward", "fits"),
    [
        ("def forward(self, inp, other=None)", True),  # renamed: called positionally
        ("def forward(self, *tensors)", True),
        ("def forward(self, a, b=None, c=1, *rest, scale=2.0)", True),
        ("def forward(self, a)", False),  # cannot take the reference's optional y
        ("def forward(self, a, b, c)", False),
        ("def forward(self, a, b=None, *, mode)", False),  # a keyword it will never get
    ],
)
def test_forward_must_take_the_same_positional_arguments_under_any_names(tmp_path, forward, fits):
    # get_inputs() builds its list in a way the file does not spell out: the reference's
    # signature is all there is to go by
    computed = "    return list([torch.randn(n)])\n"
    text = PROBLEM.replace("    return [torch.randn(n)]\n", computed)
    _check_forward(tmp_path, text, forward, fits, "must take the same positional arguments")


@pytest.mark.parametrize(
    ("forward", "fits"),
    [
        ("def forward(self, a)", True),  # the optional y is never passed (helper 19 c08)
        ("def forward(self, a, b=None)", True),
        ("def forward(self, *tensors)", True),
        ("def forward(self, a, b)", False),
        ("def forward(self)", False),
    ],
)
def test_forward_must_take_what_get_inputs_passes(tmp_path, forward, fits):
    # PROBLEM's get_inputs() returns [x]: one positional argument, spelled out or named once
    refusal = r"must take the 1 positional argument\(s\) get_inputs\(\) returns"
    _check_forward(tmp_path, PROBLEM, forward, fits, refusal)
    named = "    inputs = [torch.randn(n)]\n    return inputs\n"
    text = PROBLEM.replace("    return [torch.randn(n)]\n", named)
    _check_forward(tmp_path, text, forward, fits, refusal)


def test_problem_dir_in_kernelbench_layout(tmp_path):
    for level, names in {1: ["10_b.py", "2_a.py"], 2: ["1_c.py"]}.items():
        folder = tmp_path / f"level{level}"
        folder.mkdir()
        for name in names:
            (folder / name).write_text(PROBLEM)
    (tmp_path / "level1" / "helper.py").write_text("def not_a_problem(): pass\n")
    problems = load_problem_dir(tmp_path)
    assert [(p.level, p.name) for p in problems] == [(1, "2_a"), (1, "10_b"), (2, "1_c")]


def test_missing_folder():
    with pytest.raises(BadInput, match="problem folder not found"):
        load_problem_dir("/nonexistent/kernelbench")


def test_shipped_suite_is_complete():
    problems = load_problem_dir(builtin_dir())
    assert len(problems) >= 12
    with_cpu = 0
    for problem in problems:
        candidates = candidates_for(problem.path)
        assert "cuda" in candidates, f"{problem.name} has no CUDA candidate"
        load_candidate(candidates["cuda"], problem)
        if "cpu" in candidates:
            load_candidate(candidates["cpu"], problem)
            with_cpu += 1
        assert problem.extra_shapes, f"{problem.name} declares no EXTRA_SHAPES"
    assert with_cpu >= 3
