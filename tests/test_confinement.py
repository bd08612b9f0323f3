"""Confinement (runner/bwrap.py): a worker sees its own scratch space and nothing else of the
host. Pure-Python probes run straight through the workers on the `cpu` target: a probe that
reaches what it must not adds 1000 to its output, so the verdict says whether it did."""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path

import pytest
from fakes import SCALE_ADD_MODEL_NEW
from kernelwright.evaluate import EvaluateOptions, evaluate
from kernelwright.records import Status
from kernelwright.runner import bwrap
from kernelwright.runner.isolation import sandbox
from kernelwright.verifier import session
from kernelwright.verifier.tolerances import Tolerance

needs_bwrap = pytest.mark.skipif(
    sandbox().level != "bwrap", reason=f"workers are not under bubblewrap: {sandbox().note}"
)

MODEL = SCALE_ADD_MODEL_NEW.format(extra=" + float(PROBE())") + "\n"


@pytest.fixture(autouse=True)
def _pytorch_stand_ins(monkeypatch):
    """Candidates here compute with PyTorch as stand-ins for a kernel, to show another wall:
    the op record's verdict on that (tests/test_op_record.py) is out of the way."""
    monkeypatch.setattr("kernelwright.verifier.op_record.judge", lambda ops, work: None)


def _probe(fixtures_dir: Path, tmp_path: Path, code: str):
    tmp_path.mkdir(parents=True, exist_ok=True)
    candidate = tmp_path / "probe.py"
    candidate.write_text(MODEL + code)
    problem = fixtures_dir / "problems" / "scale_add.py"
    scratch = tmp_path / "scratch"
    reference = session.run_reference(problem, "cpu", 1, 42, scratch, 120)
    return session.run_candidate(problem, candidate, "cpu", reference, Tolerance(), scratch, 120)


def test_the_seccomp_filter_is_a_program_for_this_machine():
    program = bwrap.seccomp_filter()
    if program is None:
        pytest.skip("the filter is written for x86-64 only")
    assert len(program) % 8 == 0 and len(program) // 8 > len(bwrap.DENIED_SYSCALLS)


@needs_bwrap
def test_writes_to_tmp_and_shm_stay_in_the_worker_and_are_bounded(fixtures_dir, tmp_path):
    name = f"kw-leak-{secrets.token_hex(4)}"
    probe = f"""
import os
def PROBE():
    for folder in ("/tmp", "/dev/shm"):
        with open(os.path.join(folder, "{name}"), "w") as out:
            out.write("left behind")
    try:  # more than the private /dev/shm holds
        with open("/dev/shm/{name}.big", "wb") as out:
            for _ in range(320):
                out.write(bytes(1 << 20))
        return 1000.0
    except OSError:
        return 0.0
"""
    verdict = _probe(fixtures_dir, tmp_path, probe)
    assert verdict.status is Status.CORRECT, verdict.reason
    assert not os.path.exists(f"/tmp/{name}") and not os.path.exists(f"/dev/shm/{name}")
    assert not os.path.exists(f"/dev/shm/{name}.big")


@needs_bwrap
def test_unix_socket_listeners_of_the_host_are_not_reached(fixtures_dir, tmp_path):
    places = [Path("/tmp") / f"kw-{secrets.token_hex(4)}.sock"]
    if os.access("/run", os.W_OK):
        places.append(Path("/run") / f"kw-{secrets.token_hex(4)}.sock")
    listeners = []
    for place in places:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(place))
        listener.listen(4)
        listeners.append(listener)
    probe = f"""
import socket
def PROBE():
    reached = 0.0
    for place in {[str(p) for p in places]!r}:
        try:
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).connect(place)
            reached += 1000.0
        except OSError:
            pass
    return reached
"""
    try:
        verdict = _probe(fixtures_dir, tmp_path, probe)
    finally:
        for listener, place in zip(listeners, places, strict=True):
            listener.close()
            place.unlink(missing_ok=True)
    assert verdict.status is Status.CORRECT, verdict.reason  # 1000 added had it connected


@needs_bwrap
def test_the_state_folder_is_hidden_but_for_the_workers_own_parts(fixtures_dir, tmp_path, kw_home):
    probe = f"""
import os
def PROBE():
    home = {str(kw_home)!r}
    seen = set(os.listdir(home)) if os.path.isdir(home) else set()
    # only what workers need is bound back: no history database, no runs, no locks
    return 1000.0 * len(seen - {{"builds", "scratch", "seals", "snapshots"}})
"""
    (kw_home / "runs").mkdir(exist_ok=True)
    verdict = _probe(fixtures_dir, tmp_path, probe)
    assert verdict.status is Status.CORRECT, verdict.reason


HONEST = SCALE_ADD_MODEL_NEW.format(extra="")
REWRITER = (
    HONEST
    + """
import os
# Runs in the build worker first: rewrite this file, and the problem, before the next workers
# import them (a do-nothing candidate and a problem returning zeros).
for path, text in ({candidate!r}, {cheat!r}), ({problem!r}, {zeros!r}):
    try:
        os.chmod(path, 0o644)
        with open(path, "w") as out:
            out.write(text)
    except OSError:
        pass
"""
)
ZEROS_PROBLEM = """
import torch
import torch.nn as nn

class Model(nn.Module):
    def __init__(self, dim):
        super().__init__()

    def forward(self, x):
        return torch.zeros_like(x)

def get_inputs():
    return [torch.randn(256, 512)]

def get_init_inputs():
    return [512]
"""
DO_NOTHING = """
import torch
import torch.nn as nn

class ModelNew(nn.Module):
    def __init__(self, dim):
        super().__init__()

    def forward(self, x):
        return torch.zeros_like(x)
"""


def test_what_runs_is_the_text_that_was_checked(fixtures_dir, tmp_path, monkeypatch):
    """A candidate that rewrites its own file and the problem's while it is evaluated changes
    nothing of what runs then, and (under bubblewrap, where it cannot see them) nothing later."""
    monkeypatch.setattr("kernelwright.evaluate.check_candidate", lambda *args, **kw: [])
    problem = tmp_path / "problem.py"
    problem.write_text((fixtures_dir / "problems" / "scale_add.py").read_text())
    candidate = tmp_path / "rewriter.py"
    text = REWRITER.format(
        candidate=str(candidate), cheat=DO_NOTHING, problem=str(problem), zeros=ZEROS_PROBLEM
    )
    candidate.write_text(text)
    options = EvaluateOptions(target="cpu", trials=1)
    first = evaluate(problem, candidate, options)
    assert first.status is Status.CORRECT, first.reason  # it ran what was checked: x * w + b
    if sandbox().level == "bwrap":
        assert candidate.read_text() == text and "zeros_like" not in problem.read_text()
    again = evaluate(problem, tmp_path / "rewriter.py", options)
    assert again.status is Status.CORRECT or sandbox().level != "bwrap", again.reason
