"""End to end on the CPU target: real C++ candidates built, verified and timed through the CLI."""

from __future__ import annotations

import json
import time

import pytest

pytestmark = pytest.mark.slow

REQUIRED_KEYS = {
    "status",
    "reason",
    "speedup",
    "candidate_ms",
    "reference_ms",
    "max_abs_error",
    "trials",
    "target",
    "compile_s",
    "cached",
    "environment",
}


def _evaluate(cli, fixtures_dir, candidate: str, *extra: str) -> dict:
    proc = cli(
        "evaluate",
        str(fixtures_dir / "problems" / "scale_add.py"),
        str(fixtures_dir / "candidates" / candidate),
        "--target",
        "cpu",
        "--json",
        *extra,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_correct_cpp_candidate_is_built_verified_and_timed(cli, fixtures_dir):
    result = _evaluate(cli, fixtures_dir, "scale_add_ok.py", "--trials", "5")
    assert REQUIRED_KEYS <= result.keys()
    assert result["status"] == "correct", result["reason"] + result["log"]
    assert result["target"] == "cpu"
    assert result["trials"] == 5
    # 5 seeded trials, the problem's one extra shape and the re-check after timing, all compared
    assert len(result["cases"]) == 7 and all(c["ok"] for c in result["cases"])
    assert any("extra shape" in c["label"] for c in result["cases"])
    assert result["cases"][-1]["label"].startswith("re-check after timing")
    assert result["max_abs_error"] == pytest.approx(0.0, abs=1e-5)
    timing = result["timing"]
    assert timing["method"] == "bounded_by_outside_clock_cold_cache"
    assert len(timing["round_ratios"]) == 5
    assert timing["reference"]["samples"] >= 15 and timing["candidate"]["samples"] >= 15
    assert result["candidate_ms"] > 0 and result["reference_ms"] > 0
    assert result["speedup"] == pytest.approx(sorted(timing["round_ratios"])[2])
    assert result["environment"]["torch"]
    # where the time went: every step that ran, none longer than the whole
    phases = result["phases_s"]
    assert list(phases) == ["reference_s", "build_wait_s", "candidate_s"]
    assert all(v >= 0 for v in phases.values()) and phases["candidate_s"] > 0
    assert sum(phases.values()) <= result["duration_s"]
    # a second evaluation of the same source is a cache hit
    again = _evaluate(cli, fixtures_dir, "scale_add_ok.py", "--trials", "2")
    assert again["status"] == "correct" and again["cached"] is True
    assert again["compile_s"] < 1  # loading the built library, nothing compiled


def test_sources_loaded_from_a_new_temporary_folder_each_import_build_once(cli, fixtures_dir):
    # every worker writes the candidate's source under a new path: the same build all the same
    first = _evaluate(cli, fixtures_dir, "scale_add_load_tmp.py", "--trials", "1")
    assert first["status"] == "correct", first["reason"] + first["log"]
    again = _evaluate(cli, fixtures_dir, "scale_add_load_tmp.py", "--trials", "1")
    assert again["status"] == "correct" and again["cached"] is True
    assert again["compile_s"] < 1


def test_wrong_candidate_is_incorrect_and_not_timed(cli, fixtures_dir):
    result = _evaluate(cli, fixtures_dir, "scale_add_wrong.py")
    assert result["status"] == "incorrect"
    assert "out of tolerance" in result["reason"]
    assert result["max_abs_error"] > 1e-2
    assert result["speedup"] is None and result["timing"] is None


def test_candidate_that_does_not_compile_keeps_its_log(cli, fixtures_dir):
    result = _evaluate(cli, fixtures_dir, "scale_add_broken.py")
    assert result["status"] == "compile_error"
    assert "expected" in result["reason"] and "main.cpp" in result["reason"]
    assert "ninja" in result["log"] and "main.cpp" in result["log"]
    assert result["cases"] == []


def test_tolerance_flags_override_the_table(cli, fixtures_dir):
    # The wrong candidate drops the bias (randn values): a huge atol lets it through.
    result = _evaluate(cli, fixtures_dir, "scale_add_wrong.py", "--atol", "100", "--trials", "1")
    assert result["status"] == "correct"


def test_hanging_candidate_times_out_and_the_next_evaluation_works(cli, fixtures_dir):
    start = time.monotonic()
    result = _evaluate(cli, fixtures_dir, "scale_add_hang.py", "--timeout", "8", "--trials", "1")
    assert result["status"] == "timeout"
    assert "8 s" in result["reason"]
    # the build has its own limit; running stopped at 8 s, not at the build's 300 s
    assert time.monotonic() - start < result["compile_s"] + 60
    assert _evaluate(cli, fixtures_dir, "scale_add_ok.py", "--trials", "1")["status"] == "correct"


def test_crashing_candidate_is_a_runtime_error(cli, fixtures_dir):
    result = _evaluate(cli, fixtures_dir, "scale_add_crash.py", "--trials", "1")
    assert result["status"] == "runtime_error"
    assert "SIGSEGV" in result["reason"]
    assert _evaluate(cli, fixtures_dir, "scale_add_ok.py", "--trials", "1")["status"] == "correct"


def test_exception_in_forward_is_a_runtime_error_with_traceback(cli, fixtures_dir, tmp_path):
    source = (fixtures_dir / "candidates" / "scale_add_ok.py").read_text()
    raising = tmp_path / "raising.py"
    raising.write_text(
        source.replace(
            "return _ext.scale_add(x, self.w, self.b)", "raise ValueError('candidate gave up')"
        )
    )
    proc = cli(
        "evaluate",
        str(fixtures_dir / "problems" / "scale_add.py"),
        str(raising),
        "--target",
        "cpu",
        "--json",
        "--trials",
        "1",
    )
    result = json.loads(proc.stdout)
    assert result["status"] == "runtime_error"
    assert "ValueError: candidate gave up" in result["reason"]
    assert "Traceback" in result["log"]


def _scale_add_variant(fixtures_dir, folder, imports: str, old: str, new: str):
    """scale_add.py with `old` replaced by `new` and `imports` on top, and its honest candidate."""
    source = (fixtures_dir / "problems" / "scale_add.py").read_text()
    assert old in source
    problem = folder / "variant.py"
    problem.write_text(imports + "\n" + source.replace(old, new))
    return problem, fixtures_dir / "candidates" / "scale_add_ok.py"


def test_inputs_drawn_with_numpy_are_the_same_for_both_sides(cli, fixtures_dir, tmp_path):
    problem, candidate = _scale_add_variant(
        fixtures_dir,
        tmp_path,
        "import numpy as np",
        "return [torch.randn(rows, dim)]",
        "return [torch.from_numpy(np.random.randn(rows, dim).astype('float32'))]",
    )
    proc = cli("evaluate", str(problem), str(candidate), "--target", "cpu", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "correct"


def test_a_reference_with_randomness_no_seed_reaches_is_refused(
    cli_in_process, fixtures_dir, tmp_path
):
    # (torch.randn in forward is repeatable: torch's generator is seeded before each case, and
    # a candidate may draw the same numbers)
    problem, candidate = _scale_add_variant(
        fixtures_dir,
        tmp_path,
        "import random",
        "return x * self.w + self.b",
        "return x * self.w + random.SystemRandom().random()",
    )
    proc = cli_in_process("evaluate", str(problem), str(candidate), "--target", "cpu")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "the reference is not repeatable" in proc.stderr and "trial 0" in proc.stderr


def test_a_cached_build_changed_by_someone_else_is_built_again(cli, fixtures_dir, tmp_path):
    # a home of its own: the session's holds this candidate's builds under other flags too
    home = tmp_path / "home"

    def evaluate() -> dict:
        problem = str(fixtures_dir / "problems" / "scale_add.py")
        candidate = str(fixtures_dir / "candidates" / "scale_add_ok.py")
        args = ("evaluate", problem, candidate, "--target", "cpu", "--json", "--trials", "1")
        proc = cli(*args, env_extra={"KERNELWRIGHT_HOME": str(home)})
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    first = evaluate()
    assert first["status"] == "correct"
    (library,) = (home / "builds").glob("*/kw_test_scale_add_ok-*/kw_test_scale_add_ok.so")
    library.write_bytes(b"\x7fELF planted by another candidate")
    again = evaluate()
    assert again["status"] == "correct" and again["cached"] is False  # rebuilt, not loaded
    assert library.read_bytes() != b"\x7fELF planted by another candidate"
