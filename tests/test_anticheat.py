"""The adversarial corpus (tests/fixtures/cheats) and the legitimate candidates, on the CPU target.

Every cheat must end `rejected` (with the intended check) or `incorrect`; no shipped legitimate
candidate may be rejected. GPU-only cheats live in test_gpu.py.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from kernelwright.evaluate import EvaluateOptions, evaluate
from kernelwright.problem import load_problem_dir
from kernelwright.records import Status
from kernelwright.runner.isolation import Sandbox, sandbox
from kernelwright.suite import builtin_dir, candidates_for
from kernelwright.verifier import session
from kernelwright.verifier.static_checks import REJECT, check_candidate
from kernelwright.verifier.tolerances import Tolerance

FIXTURES = Path(__file__).resolve().parent / "fixtures"
PROBLEM = FIXTURES / "problems" / "scale_add.py"
CHEATS = FIXTURES / "cheats"

# Rejected before anything of the candidate is built or run.
STATIC = {
    "inherit_reference.py": "inherits_reference",
    "torch_functions.py": "torch_compute",
    "torch_operators.py": "torch_compute",
    "tensor_methods.py": "torch_compute",
    "try_fallback.py": "try_fallback",
    "frame_snooping.py": "frame_snooping",
    "gc_snooping.py": "frame_snooping",
    "late_thread.py": "threads",
    "lazy_subclass.py": "tensor_subclass",
    "timer_patch.py": "patching",
    "event_patch.py": "patching",
    "comparator_patch.py": "patching",
    "setattr_patch.py": "patching",
    "env_theft.py": "env_access",
    "network_exfil.py": "network",
    "file_replay.py": "file_replay",
    "native_posix_read.py": "file_replay",
    "process_exit.py": "process_exit",
    "harness_import.py": "harness_access",
    "native_result_cache.py": "result_cache",
    "persisting_l2.py": "persisting_l2",
    "numpy_compute.py": "host_compute",
}
# Caught while running: (status, check named in the reason or None for plain `incorrect`).
DYNAMIC = {
    "input_zeroing.py": ("rejected", "inputs_modified"),
    "parameter_output.py": ("rejected", "output_type"),
    "precision_downgrade.py": ("incorrect", None),
    "hardcoded_shape.py": ("incorrect", "extra shape"),
}
# Reaching into the harness from the candidate's process: rejected by the static checks, and
# caught while running when those are bypassed (the test turns them off).
HARNESS = {
    "channel_forge.py": "result_channel",
    "channel_garble.py": "result_channel",
    "reference_slowdown.py": "patched_harness",
    "worker_save_patch.py": "patched_harness",
}

# Telling timed calls from checked ones, or slowing the reference through torch itself:
# (the static check that refuses it, the run-time check that catches it when that is bypassed).
RUNTIME = {
    "timed_seed_probe.py": ("phase_probe", "spot_check"),
    "function_mode_slowdown.py": ("patching", "patched_harness"),
    "problem_global_swap.py": ("harness_access", "patched_harness"),
    "spot_list_clear.py": ("frame_snooping", "spot_check"),
}

# Result caches: keyed on addresses (fails the re-check after timing) or on contents (gains
# nothing, since every timed call gets new input values).
CACHES = {"address_cache.py", "content_cache.py"}


@pytest.fixture(autouse=True)
def _pytorch_stand_ins(monkeypatch):
    """Candidates here compute with PyTorch as stand-ins for a kernel, to show another wall:
    the op record's verdict on that (tests/test_op_record.py) is out of the way."""
    monkeypatch.setattr("kernelwright.verifier.op_record.judge", lambda ops, work: None)


def test_corpus_has_twenty_distinct_cheats():
    files = {p.name for p in CHEATS.glob("*.py")}
    gpu_only = {p.name for p in CHEATS.glob("cuda_*.py")}  # run in test_gpu.py
    assert len(gpu_only) >= 4
    assert files == set(STATIC) | set(DYNAMIC) | set(HARNESS) | set(RUNTIME) | CACHES | gpu_only
    assert len(files) >= 20


@pytest.mark.parametrize(("name", "check"), sorted(STATIC.items()))
def test_static_cheat_is_rejected_before_building(name, check):
    result = evaluate(PROBLEM, CHEATS / name, EvaluateOptions(target="cpu", trials=1))
    assert result.status is Status.REJECTED
    assert result.reason.startswith(f"rejected by {check}:"), result.reason
    assert result.compile_s is None  # nothing was built


@pytest.mark.parametrize("name", sorted(HARNESS))
def test_reaching_into_the_harness_is_rejected_before_building(name):
    result = evaluate(PROBLEM, CHEATS / name, EvaluateOptions(target="cpu", trials=1))
    assert result.reason.startswith("rejected by harness_access:"), result.reason


@pytest.mark.slow
@pytest.mark.parametrize(("name", "check"), sorted(HARNESS.items()))
def test_reaching_into_the_harness_is_caught_while_running(name, check, monkeypatch):
    monkeypatch.setattr("kernelwright.evaluate.check_candidate", lambda *args, **kw: [])
    result = evaluate(PROBLEM, CHEATS / name, EvaluateOptions(target="cpu", trials=2))
    assert result.status is Status.REJECTED, (result.status, result.reason, result.log[-2000:])
    assert result.reason.startswith(f"rejected by {check}:"), result.reason
    assert result.speedup is None


@pytest.mark.parametrize(("name", "checks"), sorted(RUNTIME.items()))
def test_phase_probes_and_torch_interposers_are_rejected_before_building(name, checks):
    result = evaluate(PROBLEM, CHEATS / name, EvaluateOptions(target="cpu", trials=1))
    assert result.status is Status.REJECTED and f"{checks[0]}:" in result.reason, result.reason
    assert result.compile_s is None


@pytest.mark.slow
@pytest.mark.parametrize(("name", "checks"), sorted(RUNTIME.items()))
def test_phase_probes_and_torch_interposers_are_caught_while_running(name, checks, monkeypatch):
    monkeypatch.setattr("kernelwright.evaluate.check_candidate", lambda *args, **kw: [])
    result = evaluate(PROBLEM, CHEATS / name, EvaluateOptions(target="cpu", trials=1))
    assert result.status is Status.REJECTED, (result.status, result.reason, result.log[-2000:])
    assert result.reason.startswith(f"rejected by {checks[1]}:"), result.reason
    assert result.speedup is None


@pytest.mark.slow
@pytest.mark.parametrize(("name", "expected"), sorted(DYNAMIC.items()))
def test_dynamic_cheat_is_caught_while_running(name, expected):
    status, fragment = expected
    result = evaluate(PROBLEM, CHEATS / name, EvaluateOptions(target="cpu", trials=2))
    assert result.status.value == status, (result.status, result.reason, result.log[-2000:])
    if fragment:
        assert fragment in result.reason
    assert result.speedup is None


@pytest.mark.slow
def test_address_keyed_cache_is_caught():
    result = evaluate(PROBLEM, CHEATS / "address_cache.py", EvaluateOptions(target="cpu", trials=3))
    # Either a later case lands on an earlier input's address (stale result: incorrect), or the
    # re-check after timing writes new values into the timed tensors (rejected).
    assert result.status in (Status.INCORRECT, Status.REJECTED), result.reason
    if result.status is Status.REJECTED:
        assert "recheck_after_timing" in result.reason


@pytest.mark.slow
def test_a_cache_keyed_on_input_values_gains_nothing_in_the_timing():
    options = EvaluateOptions(target="cpu", trials=1)
    honest = evaluate(PROBLEM, FIXTURES / "candidates" / "scale_add_ok.py", options)
    cheat = evaluate(PROBLEM, CHEATS / "content_cache.py", options)
    assert honest.status is Status.CORRECT and cheat.status is Status.CORRECT, cheat.reason
    refresh = cheat.timing.input_refresh
    assert refresh["refreshed"] > 2 * cheat.timing.settings["rounds"] and refresh["note"] == ""
    # With the inputs repeated, its lookups took about a fifth of the honest kernel's time.
    assert cheat.timing.candidate.median_ms > 0.6 * honest.timing.candidate.median_ms


def _shipped() -> list[tuple[str, Path]]:
    pairs = []
    for problem in load_problem_dir(builtin_dir()):
        for target, path in candidates_for(problem.path).items():
            pairs.append((target, path))
    return pairs


@pytest.mark.parametrize(("target", "path"), _shipped(), ids=lambda v: str(v)[-30:])
def test_no_legitimate_candidate_is_rejected(target, path):
    rejects = [f for f in check_candidate(path.read_text(), target) if f.severity == REJECT]
    assert not rejects


def test_fixture_candidates_are_not_rejected():
    for path in (FIXTURES / "candidates").glob("*.py"):
        target = "cuda" if "cuda" in path.name else "cpu"
        rejects = [f for f in check_candidate(path.read_text(), target) if f.severity == REJECT]
        assert not rejects, (path.name, rejects)


# -- containment, checked with pure-Python candidates run straight through the worker ----------

PROBE = """
import torch
import torch.nn as nn

class ModelNew(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.w = nn.Parameter(torch.randn(dim))
        self.b = nn.Parameter(torch.randn(dim))

    def forward(self, x):
        leaked = float(PROBE())
        return x * self.w + self.b + leaked

"""


def _run_probe(tmp_path, probe_code: str):
    tmp_path.mkdir(parents=True, exist_ok=True)
    candidate = tmp_path / "probe.py"
    candidate.write_text(PROBE + probe_code)
    scratch = tmp_path / "scratch"
    reference = session.run_reference(PROBLEM, "cpu", 1, 42, scratch, 120)
    return session.run_candidate(PROBLEM, candidate, "cpu", reference, Tolerance(), scratch, 120)


def test_candidate_finds_no_api_keys(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-for-candidates")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    verdict = _run_probe(
        tmp_path,
        "import os\n"
        "def PROBE():\n"
        "    return 1000.0 * sum(1 for k in os.environ if k.endswith('_API_KEY'))\n",
    )
    assert verdict.status is Status.CORRECT, verdict.reason  # 1000 added had it found a key


def test_candidate_cannot_open_a_socket(tmp_path, monkeypatch):
    if sandbox().level == "none":
        pytest.skip(f"this machine cannot create a network namespace: {sandbox().note}")
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    port = listener.getsockname()[1]
    probe = (
        "import socket\n"
        "def PROBE():\n"
        "    try:\n"
        f"        socket.create_connection(('127.0.0.1', {port}), timeout=2).close()\n"
        "        return 1000.0\n"
        "    except OSError:\n"
        "        return 0.0\n"
    )
    try:
        verdict = _run_probe(tmp_path / "isolated", probe)
        # control: the same probe without the namespace does connect, so the check can fail
        monkeypatch.setattr("kernelwright.runner.isolation.sandbox", lambda: Sandbox("none", ()))
        control = _run_probe(tmp_path / "open", probe)
    finally:
        listener.close()
    assert verdict.status is Status.CORRECT, verdict.reason  # 1000 added had it connected
    assert control.status is Status.INCORRECT


def test_cli_shows_rejection_reason(cli):
    proc = cli(
        "evaluate", str(PROBLEM), str(CHEATS / "timer_patch.py"), "--target", "cpu", "--json"
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "rejected" and "patching" in result["reason"]


def test_writing_inputs_is_allowed_where_the_reference_does_it(tmp_path):
    body = """
import torch
import torch.nn as nn

class {name}(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        x.mul_(2.0)
        return x

def get_inputs():
    return [torch.randn(8, 8)]

def get_init_inputs():
    return []
"""
    problem = tmp_path / "inplace.py"
    problem.write_text(body.format(name="Model"))
    candidate = tmp_path / "inplace_candidate.py"
    candidate.write_text(body.format(name="ModelNew"))
    scratch = tmp_path / "scratch"
    reference = session.run_reference(problem, "cpu", 1, 42, scratch, 120)
    assert reference.mutating  # the reference writes into its input
    verdict = session.run_candidate(problem, candidate, "cpu", reference, Tolerance(), scratch, 120)
    assert verdict.status is Status.CORRECT, verdict.reason


# Red team 7's native attacks with the static checks turned off: caught while running
NATIVE_AT_RUN_TIME = {
    # py::exec in the C++ swaps the CPU timer's method, keeping the class object itself
    "rt7_capi_clock_patch_gelu.py": ("patched_harness",),
    # its own CPU allocator runs the kernel at the harness's next allocation, after the timer:
    # inside the parent's window (its own clock disagrees) and after its output was read
    "rt7_alloc_deferred_gelu.py": ("clock_mismatch", "spot_check"),
}


@pytest.mark.slow
@pytest.mark.parametrize(("name", "check"), sorted(NATIVE_AT_RUN_TIME.items()))
def test_native_attacks_are_caught_while_running(name, check, monkeypatch, fixtures_dir):
    from kernelwright.compiler.audit import AuditReport

    # both static walls off (the source rules and the audit of what was built): run time alone
    monkeypatch.setattr("kernelwright.evaluate.check_candidate", lambda *args, **kw: [])
    monkeypatch.setattr("kernelwright.compiler.audit.audit_build", lambda *a, **kw: AuditReport())
    problem = builtin_dir() / "01_gelu.py"
    attack = fixtures_dir / "native_attacks" / name
    result = evaluate(problem, attack, EvaluateOptions(target="cpu", trials=1))
    assert result.status is Status.REJECTED, (result.status, result.reason, result.log[-2000:])
    assert result.reason.startswith(tuple(f"rejected by {c}:" for c in check)), result.reason
    assert result.speedup is None
