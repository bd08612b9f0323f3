"""The parent owns the protocol: whatever a worker writes is a record, a `Fault`, or a verdict.

A fuzz test throws hostile lines (random bytes, huge numbers, deep nesting, NaN, forged and
out-of-order records) at `protocol.decode` and at the parent's state machine
(`candidate_run._Run`) through a fake worker: no exception escapes, every line ends as a verdict.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import pytest
import torch
from kernelwright.records import Status
from kernelwright.runner.isolation import Exit
from kernelwright.verifier import candidate_run, protocol
from kernelwright.verifier.cases import Case
from kernelwright.verifier.session import ReferenceOutputs, _read_output
from kernelwright.verifier.tolerances import Tolerance


def test_records_round_trip():
    done = protocol.Done(
        ms=1.5,
        outputs=(protocol.TensorSpan(address=4096, dtype="float32", shape=(2, 3), stride=(3, 1)),),
    )
    end = protocol.TimingEnd(
        environment={"gpu": "H100", "sm_clock": 1980.0},
        warnings=(protocol.Note(check="x", message="y"),),
    )
    for record in (done, end, protocol.Go(seed=7), protocol.CaseOutput(index=0, path="p")):
        assert protocol.decode(protocol.dumps(record)) == record


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        (b'{"kind": "done", "ms": 1e999}', "out of range"),
        (b'{"kind": "done", "ms": NaN}', "constant NaN"),
        (b'{"kind": "done", "ms": -Infinity}', "constant -Infinity"),
        (b'{"kind": "prepare", "seed": 1' + b"0" * 5000 + b"}", "out of range"),
        (b"[" * 50_000 + b"]" * 50_000, "nested too deep"),
        (b'{"kind": "case", "index": 0}', "without all its fields"),
        (b'{"kind": "case", "index": "0", "path": "p"}', "whole number"),
        (b'{"kind": "case", "index": true, "path": "p"}', "whole number"),
        (b'{"kind": "case", "index": 0, "path": "p", "nonce": "x"}', "fields it never has"),
        (b'{"kind": "timing", "report": {}}', "no kind"),
        (b"\xff\xfe garbage", "does not parse"),
        (b"[1, 2]", "not an object"),
        (b'{"kind": "done", "ms": 1.0, "outputs": [[[[[[1]]]]]]}', "nested `span`"),
        (b"x" * (protocol.MAX_LINE + 1), "a line of"),
    ],
)
def test_hostile_lines_are_faults(line, fragment):
    result = protocol.decode(line)
    assert isinstance(result, protocol.Fault)
    assert fragment in result.reason, result.reason


def test_expected_kind_only():
    line = protocol.dumps(protocol.Done(ms=1.0))
    assert isinstance(protocol.decode(line, protocol.Done), protocol.Done)
    fault = protocol.decode(line, protocol.Ready)
    assert isinstance(fault, protocol.Fault) and "`ready` was due" in fault.reason


# -- the parent's state machine against a fake worker --------------------------------------


class _FakeProc:
    pid = 2**22 + 12345  # no such process: the parent finds no pid to read from


class FakeWorker:
    """Plays a candidate's worker: answers with the given lines, then closes the pipe."""

    def __init__(self, lines: list[bytes]) -> None:
        self.lines = list(lines)
        self.sent: list[object] = []
        self.proc = _FakeProc()

    def alive(self) -> bool:
        return True

    def restart_clock(self, deadline_s: float) -> None:
        pass

    def send(self, message: dict) -> None:
        self.sent.append(message)

    def send_line(self, line: bytes) -> None:
        self.sent.append(protocol.decode(line))

    def recv_line(self) -> bytes | None:
        return self.lines.pop(0) if self.lines else None

    def finish(self) -> Exit:
        return Exit(0, False, "", "")

    def __enter__(self) -> FakeWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


@pytest.fixture(autouse=True)
def _no_process_scan(monkeypatch):
    # the fake worker has no process: skip the /proc scan that finds a real worker's pid
    monkeypatch.setattr(candidate_run.observe, "worker_pid", lambda leader, module: None)


def _run(tmp_path: Path, lines: list[bytes]):
    cases = [Case(0, "trial 0", 1), Case(1, "trial 1", 2)]
    reference = ReferenceOutputs(cases, {}, {}, [])
    candidate = tmp_path / "candidate.py"
    if not candidate.exists():
        candidate.write_text("x = 1\n")
        (tmp_path / "problem.py").write_text("y = 1\n")
    worker = FakeWorker(lines)
    verdict = candidate_run.run_candidate(
        tmp_path / "problem.py",
        candidate,
        "cpu",
        reference,
        Tolerance(),
        tmp_path,
        60.0,
        worker=worker,  # type: ignore[arg-type]
        timer=FakeWorker([]),  # type: ignore[arg-type]
    )
    return verdict, worker


def _case_line(tmp_path: Path, index: int) -> bytes:
    path = str(tmp_path / "candidate" / f"cand_{index}.pt")
    return protocol.dumps(protocol.CaseOutput(index=index, path=path))


def test_out_of_order_and_forged_records_are_rejected(tmp_path):
    verdict, _ = _run(tmp_path, [protocol.dumps(protocol.TimingEnd())])
    assert verdict.status is Status.REJECTED and "out-of-order `timing_end`" in verdict.reason
    verdict, _ = _run(tmp_path, [_case_line(tmp_path, 1)])
    assert "another case or file" in verdict.reason
    verdict, _ = _run(tmp_path, [protocol.dumps(protocol.OutputsDone())])
    assert "before every case" in verdict.reason
    forged = json.dumps({"kind": "done", "ms": 0.001, "outputs": []}).encode()
    verdict, _ = _run(tmp_path, [forged])
    assert verdict.reason.startswith("rejected by result_channel: an out-of-order `done`")


def test_a_wrong_case_stops_the_worker_without_timing(tmp_path):
    # no reference file for case 0: the comparison says it is wrong
    lines = [
        _case_line(tmp_path, 0),
        _case_line(tmp_path, 1),
        protocol.dumps(protocol.OutputsDone()),
    ]
    verdict, worker = _run(tmp_path, lines)
    assert verdict.status is Status.INCORRECT
    assert isinstance(worker.sent[-1], protocol.Stop)
    assert not any(isinstance(m, protocol.Time) for m in worker.sent)


def _hostile_lines(rng: random.Random, tmp_path: Path) -> list[bytes]:
    valid = [
        protocol.dumps(protocol.Done(ms=0.0)),
        protocol.dumps(protocol.TimingEnd(environment={"a": 1})),
        protocol.dumps(protocol.OutputsDone()),
        protocol.dumps(protocol.RecheckOutput(index=0, path="x")),
        protocol.dumps(protocol.SpotOutput(index=0, path="y")),
        _case_line(tmp_path, 1),
    ]
    kinds = list(protocol.RECORDS)
    makers = [
        lambda: bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 300))),
        lambda: b"[" * rng.randrange(1000, 60_000),
        lambda: b'{"kind": "done", "ms": 1e' + str(rng.randrange(300, 99999)).encode() + b"}",
        lambda: b'{"kind": "case", "index": ' + b"9" * rng.randrange(18, 9000) + b"}",
        lambda: rng.choice(valid),
        lambda: rng.choice(valid)[: rng.randrange(1, 40)],
        lambda: json.dumps({"kind": rng.choice(kinds), "x": rng.random()}).encode(),
        lambda: b'{"kind": "done", "ms": ' + rng.choice([b"NaN", b"Infinity", b"-1e400"]) + b"}",
        lambda: json.dumps(
            {"kind": "case", "index": 0, "path": "p" * rng.randrange(10**5)}
        ).encode(),
    ]
    return [rng.choice(makers)() for _ in range(10_000)]


def test_ten_thousand_hostile_lines_never_raise(tmp_path):
    rng = random.Random(20261207)
    lines = _hostile_lines(rng, tmp_path)
    decoded = [protocol.decode(line) for line in lines]
    assert all(isinstance(r, protocol.Fault | protocol.Record) for r in decoded)
    assert sum(isinstance(r, protocol.Fault) for r in decoded) > 5000
    # each line, first of a conversation or after a case, is a verdict, never a raise
    statuses = set()
    for number, line in enumerate(lines):
        prefix = [_case_line(tmp_path, 0)] if number % 2 else []
        verdict, _ = _run(tmp_path, [*prefix, line])
        statuses.add(verdict.status)
        assert verdict.status in (Status.REJECTED, Status.RUNTIME_ERROR, Status.INCORRECT)
    assert Status.REJECTED in statuses


def test_an_output_that_is_a_fifo_or_a_link_is_refused_at_once(tmp_path):
    fifo = tmp_path / "cand_0.pt"
    os.mkfifo(fifo)
    start = time.monotonic()
    with pytest.raises(ValueError, match="not a regular file"):
        _read_output(fifo)  # no writer: a plain open would block forever
    assert time.monotonic() - start < 5
    real = tmp_path / "real.pt"
    torch.save(torch.ones(2), real)
    link = tmp_path / "cand_1.pt"
    link.symlink_to(real)
    with pytest.raises(OSError):
        _read_output(link)
    assert torch.equal(_read_output(real), torch.ones(2))
