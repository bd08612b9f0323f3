"""Bad input: one line on stderr naming the problem, exit code 2, no traceback, nothing written.
In-process (`cli_in_process`), but for one case run in a fresh process as a user would."""

from __future__ import annotations

import pytest

GOOD_PROBLEM = "problems/scale_add.py"
GOOD_CANDIDATE = "candidates/scale_add_ok.py"


def _check(proc, *fragments: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    text = " ".join(line.strip() for line in lines)
    assert text.startswith("error:")
    for fragment in fragments:
        assert fragment in text, text
    assert proc.stdout.strip() == ""


def _write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


PROBLEM_TEXT = """
import torch
import torch.nn as nn
class Model(nn.Module):
    def __init__(self):
        super().__init__()
    def forward(self, x):
        return x * 2
def get_inputs():
    return [torch.randn(4, 4)]
def get_init_inputs():
    return []
"""


@pytest.mark.parametrize(
    ("problem_text", "fragment"),
    [
        ("def broken(:\n", "syntax error at line 1"),
        (
            "import torch\ndef get_inputs(): return []\ndef get_init_inputs(): return []\n",
            "no class Model",
        ),
        (PROBLEM_TEXT.replace("def get_inputs", "def other"), "no get_inputs()"),
        (
            PROBLEM_TEXT.replace("EXTRA", "") + "EXTRA_SHAPES = [{'nope': 3}]\n",
            "EXTRA_SHAPES names nope",
        ),
    ],
)
def test_bad_problem_file(cli_in_process, fixtures_dir, tmp_path, problem_text, fragment):
    problem = _write(tmp_path, "p.py", problem_text)
    _check(
        cli_in_process("evaluate", problem, str(fixtures_dir / GOOD_CANDIDATE), "--target", "cpu"),
        fragment,
    )


def test_missing_files(cli, fixtures_dir, tmp_path):
    # in a fresh process, as a user runs it: the error comes first (no warning of an import)
    _check(
        cli(
            "evaluate",
            str(tmp_path / "nope.py"),
            str(fixtures_dir / GOOD_CANDIDATE),
            "--target",
            "cpu",
        ),
        "problem file not found",
    )
    _check(
        cli(
            "evaluate",
            str(fixtures_dir / GOOD_PROBLEM),
            str(tmp_path / "nope.py"),
            "--target",
            "cpu",
            "--json",
        ),
        "candidate file not found",
    )


def test_evaluate_takes_a_shipped_problem_by_name(cli_in_process, tmp_path):
    # the name resolves (the complaint is about the candidate); an unknown name says what to do
    missing = str(tmp_path / "nope.py")
    _check(
        cli_in_process("evaluate", "01_gelu", missing, "--target", "cpu"),
        "candidate file not found",
    )
    _check(
        cli_in_process("evaluate", "no_such_problem", missing, "--target", "cpu"),
        "no problem file or shipped problem named no_such_problem",
        "kernelwright suite",
    )
    _check(  # a near miss is named
        cli_in_process("evaluate", "01_gelx", missing, "--target", "cpu"),
        "did you mean 01_gelu?",
    )


def test_candidate_without_model_new(cli_in_process, fixtures_dir, tmp_path):
    candidate = _write(tmp_path, "c.py", "import torch\nclass Model:\n    pass\n")
    _check(
        cli_in_process("evaluate", str(fixtures_dir / GOOD_PROBLEM), candidate, "--target", "cpu"),
        "defines no ModelNew",
    )


def test_candidate_with_syntax_error(cli_in_process, fixtures_dir, tmp_path):
    candidate = _write(tmp_path, "c.py", "class ModelNew(:\n")
    _check(
        cli_in_process("evaluate", str(fixtures_dir / GOOD_PROBLEM), candidate, "--target", "cpu"),
        "syntax error",
    )


def test_candidate_with_other_signature(cli_in_process, fixtures_dir, tmp_path):
    text = (
        (fixtures_dir / GOOD_CANDIDATE)
        .read_text()
        .replace("def forward(self, x)", "def forward(self, x, y)")
    )
    candidate = _write(tmp_path, "c.py", text)
    _check(
        cli_in_process("evaluate", str(fixtures_dir / GOOD_PROBLEM), candidate, "--target", "cpu"),
        "ModelNew.forward(x, y) does not match Model.forward(x)",
    )


def test_get_inputs_raising(cli_in_process, fixtures_dir, tmp_path, kw_home):
    problem = _write(
        tmp_path,
        "p.py",
        PROBLEM_TEXT.replace("return [torch.randn(4, 4)]", "raise RuntimeError('no data here')"),
    )
    # a candidate that passes the static checks, so the problem is what fails
    candidate_text = PROBLEM_TEXT.replace("class Model", "class ModelNew").replace(
        "x * 2", "x.clone()"
    )
    candidate = _write(tmp_path, "c.py", candidate_text)
    _check(
        cli_in_process("evaluate", problem, candidate, "--target", "cpu"),
        "get_inputs() raised RuntimeError: no data here",
    )
    # nothing half-written: no scratch folders are left behind
    assert not any((kw_home / "scratch").glob("eval-*"))


def test_unknown_target_and_bad_trials(cli_in_process, fixtures_dir):
    args = ("evaluate", str(fixtures_dir / GOOD_PROBLEM), str(fixtures_dir / GOOD_CANDIDATE))
    _check(cli_in_process(*args, "--target", "tpu"), "unknown target 'tpu'")
    _check(cli_in_process(*args, "--target", "cpu", "--trials", "0"), "--trials must be at least 1")


@pytest.mark.parametrize(
    ("option", "value", "fragment"),
    [
        # NaN passed every comparison (`diff > NaN` is never true): a wrong kernel was correct
        ("--atol", "nan", "--atol must be a finite number of at least 0 (got nan)"),
        ("--rtol", "nan", "--rtol must be a finite number"),
        ("--atol", "-1", "--atol must be a finite number of at least 0 (got -1)"),
        ("--timeout", "nan", "--timeout must be a finite number above 0"),
        ("--timeout", "-5", "--timeout must be a finite number above 0 (got -5)"),
        ("--build-timeout", "-1", "--build-timeout must be a finite number above 0"),
        ("--build-timeout", "inf", "--build-timeout must be a finite number above 0 (got inf)"),
        ("--seed", str(10**23), "--seed must lie between"),
    ],
)
def test_numeric_options_that_cannot_work(cli_in_process, fixtures_dir, option, value, fragment):
    args = ("evaluate", str(fixtures_dir / GOOD_PROBLEM), str(fixtures_dir / GOOD_CANDIDATE))
    _check(cli_in_process(*args, "--target", "cpu", option, value), fragment)


def test_cuda_target_without_cuda(cli_in_process, fixtures_dir):
    from kernelwright.targets import torch_has_cuda, visible_gpus

    if torch_has_cuda() and visible_gpus() > 0:
        pytest.skip("this machine can run the cuda target")
    args = ("evaluate", str(fixtures_dir / GOOD_PROBLEM), str(fixtures_dir / GOOD_CANDIDATE))
    _check(cli_in_process(*args, "--target", "cuda"), "target cuda")


def test_profile_bad_input(cli_in_process, fixtures_dir, tmp_path, kw_home):
    problem = str(fixtures_dir / GOOD_PROBLEM)
    _check(
        cli_in_process("profile", problem, str(tmp_path / "missing.py")), "candidate file not found"
    )
    db = f"sqlite:///{tmp_path / 'h.db'}"
    _check(cli_in_process("profile", problem, "abc123", "--db", db), "no candidate 'abc123'")
    _check(
        cli_in_process("profile", "no_such_problem", str(fixtures_dir / GOOD_CANDIDATE)),
        "no problem",
    )
    from kernelwright.targets import torch_has_cuda, visible_gpus

    if not (torch_has_cuda() and visible_gpus() > 0):
        _check(
            cli_in_process("profile", problem, str(fixtures_dir / GOOD_CANDIDATE)), "target cuda"
        )
