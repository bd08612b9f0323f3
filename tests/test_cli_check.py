"""`kernelwright check`: the static pre-screen alone, in-process (typer's CliRunner).

The verdicts of the fixture attacks (tests/fixtures/static_verdicts.json) were recorded with the
static checks as they were before the rule registry (the first rejecting check, which
`evaluate` names in its reason; null where the static checks pass the file)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kernelwright.cli import app
from kernelwright.problem import load_problem_dir
from kernelwright.suite import builtin_dir, candidates_for
from typer.testing import CliRunner

FIXTURES = Path(__file__).resolve().parent / "fixtures"
VERDICTS = json.loads((FIXTURES / "static_verdicts.json").read_text())
runner = CliRunner()


def _check(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["check", *args])
    return result.exit_code, result.output


def _json(*args: str) -> dict:
    code, output = _check(*args, "--json")
    assert code == 0, output
    return json.loads(output)


def _shipped() -> list[tuple[str, Path, Path]]:
    return [
        (target, problem.path, path)
        for problem in load_problem_dir(builtin_dir())
        for target, path in candidates_for(problem.path).items()
    ]


@pytest.mark.parametrize(("target", "problem", "path"), _shipped(), ids=lambda v: str(v)[-24:])
def test_every_shipped_candidate_passes(target, problem, path):
    data = _json(str(path), "--problem", str(problem), "--target", target)
    assert data["verdict"] == "pass", data["findings"]


@pytest.mark.parametrize("name", sorted(VERDICTS))
def test_every_fixture_keeps_its_static_verdict(name):
    expected = VERDICTS[name]
    data = _json(str(FIXTURES / name), "--target", expected["target"])
    rejects = [f["check"] for f in data["findings"] if f["severity"] == "reject"]
    if expected["check"] is None:
        assert data["verdict"] == "pass", rejects
    else:
        assert data["verdict"] == "rejected" and rejects[0] == expected["check"], rejects


def test_the_fixtures_cover_every_static_cheat():
    caught = {name for name, v in VERDICTS.items() if v["check"]}
    assert len(caught) >= 50
    assert {"cheats/torch_functions.py", "cheats/timer_patch.py"} <= caught
    assert {p.parent.name for p in FIXTURES.glob("*attacks/*.py")} <= {
        name.split("/")[0] for name in VERDICTS
    }


def test_findings_carry_check_severity_line_and_message():
    data = _json(str(FIXTURES / "cheats" / "torch_functions.py"), "--target", "cpu")
    assert data["verdict"] == "rejected"
    first = data["findings"][0]
    assert set(first) == {"check", "severity", "line", "message"}
    assert first["check"] == "torch_compute" and first["severity"] == "reject"
    assert isinstance(first["line"], int) and first["line"] > 0


def test_plain_output_is_a_verdict_line_and_one_line_per_finding():
    code, output = _check(str(FIXTURES / "cheats" / "torch_functions.py"), "--target", "cpu")
    lines = output.splitlines()
    assert code == 0
    assert lines[0] == "rejected by torch_compute"
    assert len(lines) == 1 + len(_json(str(FIXTURES / "cheats" / "torch_functions.py"),
                                       "--target", "cpu")["findings"])  # fmt: skip
    source = (FIXTURES / "cheats" / "torch_functions.py").read_text().splitlines()
    line = next(n for n, text in enumerate(source, 1) if "return torch.add(" in text)
    assert lines[1].split()[:4] == ["torch_compute", "reject", "line", str(line)]


def test_warnings_alone_pass():
    code, output = _check(str(FIXTURES / "static_fixes" / "size_gate.py"))
    assert code == 0 and output.startswith("pass (1 warning)"), output
    assert "torch_compute_partial  warn" in output


def test_the_cuda_target_wants_a_kernel():
    cpu_candidate = next(path for target, _, path in _shipped() if target == "cpu")
    assert _json(str(cpu_candidate), "--target", "cpu")["verdict"] == "pass"
    data = _json(str(cpu_candidate))  # cuda by default
    assert data["verdict"] == "rejected"
    assert [f["check"] for f in data["findings"]] == ["no_custom_kernel"]


def test_the_problem_makes_literal_inputs_sizes(tmp_path):
    # `dim` is a literal input of the problem: arithmetic on it is no PyTorch compute
    honest = FIXTURES / "honest_static"
    candidate = honest / "c" / "c40_dim_forward_arg.py"
    problem = honest / "p" / "p16_dim_forward_arg.py"
    assert _json(str(candidate), "--problem", str(problem), "--target", "cpu")["findings"] == []


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["missing.py"], "candidate file not found"),
        (["{ok}", "--target", "tpu"], "unknown target 'tpu'; use cuda or cpu"),
        (["{ok}", "--problem", "no_such_problem"], "no problem file or shipped problem"),
        (["{bad}"], "syntax error"),
        (["{ok}", "--problem", "{bad}"], "syntax error"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, fragment):
    ok = FIXTURES / "static_fixes" / "size_gate.py"
    bad = tmp_path / "bad.py"
    bad.write_text("def broken(:\n")
    args = [a.format(ok=ok, bad=bad) for a in args]
    code, output = _check(*args)
    assert code == 2, output
    assert fragment in output and len(output.strip().splitlines()) == 1, output


def test_no_torch_is_imported():
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from kernelwright.cli import app\n"
        f"r = CliRunner().invoke(app, ['check', {str(FIXTURES / 'cheats' / 'timer_patch.py')!r}])\n"
        "assert r.exit_code == 0, r.output\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr
