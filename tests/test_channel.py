"""The candidate worker's result channel: only the harness's messages, in the harness's order."""

from __future__ import annotations

import os
import time

import pytest
import torch
from kernelwright.verifier.cases import Case
from kernelwright.verifier.session import _Protocol, _read_output

NONCE = "n" * 32


def _protocol(tmp_path):
    cases = [Case(0, "trial 0", 1), Case(1, "trial 1", 2), Case(2, "re-check", 1, {}, 9, True)]
    return _Protocol(tmp_path, [c for c in cases if not c.after_timing], cases)


def _case(tmp_path, kind, index):
    path = str(tmp_path / f"cand_{index}.pt")
    return {"kind": kind, "index": index, "path": path, "nonce": NONCE}


def test_the_harness_sequence_is_admitted(tmp_path):
    protocol = _protocol(tmp_path)
    assert protocol.admit(_case(tmp_path, "case", 0), NONCE) == ""
    assert protocol.admit(_case(tmp_path, "case", 1), NONCE) == ""
    assert protocol.admit({"kind": "outputs_done", "nonce": NONCE}, NONCE) == ""
    protocol.timing_asked = True
    assert protocol.admit(_case(tmp_path, "recheck", 2), NONCE) == ""
    assert protocol.admit({"kind": "timing", "report": {}, "nonce": NONCE}, NONCE) == ""


@pytest.mark.parametrize(
    ("messages", "fragment"),
    [
        ([{"kind": "timing", "report": {}}], "did not come from the harness"),  # no nonce
        ([{"kind": "garbled", "text": "{", "nonce": NONCE}], "did not come from the harness"),
        ([{"kind": "timing", "report": {}, "nonce": NONCE}], "out-of-order `timing`"),
        ([{"kind": "outputs_done", "nonce": NONCE}], "out-of-order `outputs_done`"),
        ([{"kind": "case", "index": 1, "path": "x", "nonce": NONCE}], "another case or file"),
        ([{"kind": "surprise", "nonce": NONCE}], "out-of-order `surprise`"),
    ],
)
def test_anything_else_is_named_as_a_forgery(tmp_path, messages, fragment):
    protocol = _protocol(tmp_path)
    problems = [protocol.admit(m, NONCE) for m in messages]
    assert fragment in problems[-1]


def test_a_timing_before_the_recheck_is_refused(tmp_path):
    protocol = _protocol(tmp_path)
    for index in (0, 1):
        protocol.admit(_case(tmp_path, "case", index), NONCE)
    protocol.admit({"kind": "outputs_done", "nonce": NONCE}, NONCE)
    protocol.timing_asked = True
    timing = {"kind": "timing", "report": {}, "nonce": NONCE}
    assert "out-of-order `timing`" in protocol.admit(timing, NONCE)


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


def test_spot_outputs_come_after_the_rechecks_with_their_seeds_and_no_more_than_asked(tmp_path):
    from kernelwright.verifier.session import SPOT_CHECKS

    protocol = _protocol(tmp_path)
    for index in (0, 1):
        protocol.admit(_case(tmp_path, "case", index), NONCE)
    protocol.admit({"kind": "outputs_done", "nonce": NONCE}, NONCE)
    protocol.timing_asked = True

    def spot(number, seed=123):
        path = str(tmp_path / f"spot_{number}.pt")
        return {"kind": "spot", "index": number, "seed": seed, "path": path, "nonce": NONCE}

    assert "out-of-order `spot`" in protocol.admit(spot(0), NONCE)  # the re-check comes first
    protocol.admit(_case(tmp_path, "recheck", 2), NONCE)
    assert "without its seed" in protocol.admit(spot(0, seed="7"), NONCE)
    assert "another call or file" in protocol.admit(spot(1), NONCE)
    for number in range(SPOT_CHECKS):
        assert protocol.admit(spot(number, seed=number), NONCE) == ""
    assert "out-of-order `spot`" in protocol.admit(spot(SPOT_CHECKS), NONCE)
    assert [seed for seed, _ in protocol.spots] == list(range(SPOT_CHECKS))
    assert protocol.admit({"kind": "timing", "report": {}, "nonce": NONCE}, NONCE) == ""
