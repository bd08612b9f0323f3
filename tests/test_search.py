"""The search policy (choose_parents), the best candidate, and the log tail the prompts see."""

from __future__ import annotations

import pytest
from kernelwright.search import (
    LOG_TAIL_CHARS,
    LOG_TAIL_LINES,
    MAX_REPAIR_CHAIN,
    Entry,
    best,
    choose_parents,
    log_tail,
)


def failed(id: str, round: int, parent: str | None = None, status: str = "compile_error") -> Entry:
    return Entry(id, round, [parent] if parent else [], f"# {id}\n", status=status, reason="x")


def correct(id: str, round: int, speedup: float, parent: str | None = None) -> Entry:
    return Entry(
        id,
        round,
        [parent] if parent else [],
        f"# {id}\n",
        status="correct",
        speedup=speedup,
        candidate_ms=1.0 / speedup,
        reference_ms=1.0,
    )


def no_code(id: str, round: int, parent: str | None) -> Entry:
    return Entry(id, round, [parent] if parent else [], "", status="no_code", reason="no block")


def pending(id: str, round: int, parent: str | None = None) -> Entry:
    return Entry(id, round, [parent] if parent else [], f"# {id}\n")


def ids(parents: list[Entry | None]) -> list[str | None]:
    return [p.id if p is not None else None for p in parents]


# -- choose_parents ----------------------------------------------------------------------------


@pytest.mark.parametrize("width", [1, 2, 4])
def test_first_round_starts_every_slot_from_the_reference(width: int) -> None:
    assert choose_parents([], width) == [None] * width


def test_failures_are_repaired_newest_first_then_the_reference() -> None:
    entries = [
        failed("old", 1),
        failed("mid", 2, status="runtime_error"),
        failed("new", 3, status="timeout"),
    ]
    assert ids(choose_parents(entries, 2)) == ["new", "mid"]
    assert ids(choose_parents(entries, 5)) == ["new", "mid", "old", None, None]


def test_failures_of_one_round_keep_their_order() -> None:
    entries = [failed("a", 1), failed("b", 1, status="incorrect"), failed("c", 2)]
    assert ids(choose_parents(entries, 3)) == ["c", "a", "b"]


@pytest.mark.parametrize(
    "status", ["compile_error", "runtime_error", "timeout", "incorrect", "rejected"]
)
def test_every_failure_status_is_repairable(status: str) -> None:
    assert ids(choose_parents([failed("f", 1, status=status)], 1)) == ["f"]


def test_a_failure_already_tried_is_not_repaired_again() -> None:
    entries = [failed("f1", 1), failed("f2", 2, parent="f1")]
    assert ids(choose_parents(entries, 2)) == ["f2", None]
    # a correct child also counts as a try
    entries = [failed("f1", 1), correct("c", 2, 1.5, parent="f1")]
    assert ids(choose_parents(entries, 2)) == ["c", "c"]


def test_a_pending_child_counts_as_a_try() -> None:
    entries = [failed("f1", 1), pending("p", 2, parent="f1")]
    assert ids(choose_parents(entries, 2)) == [None, None]


def test_a_failure_whose_only_child_was_no_code_is_still_repairable() -> None:
    entries = [failed("f1", 1), no_code("n", 2, parent="f1")]
    assert ids(choose_parents(entries, 2)) == ["f1", None]
    entries.append(no_code("n2", 3, parent="f1"))
    assert ids(choose_parents(entries, 1)) == ["f1"]


def test_a_failure_chain_at_the_limit_is_repaired() -> None:
    assert MAX_REPAIR_CHAIN == 2
    entries = [failed("f1", 1), failed("f2", 2, parent="f1")]
    assert ids(choose_parents(entries, 1)) == ["f2"]


def test_a_failure_chain_past_the_limit_is_abandoned_for_the_reference() -> None:
    entries = [failed("f1", 1), failed("f2", 2, parent="f1"), failed("f3", 3, parent="f2")]
    assert ids(choose_parents(entries, 2)) == [None, None]


def test_a_failure_chain_past_the_limit_is_abandoned_for_the_best() -> None:
    entries = [
        correct("slow", 1, 0.7),
        correct("fast", 1, 1.4),
        failed("f1", 2, parent="fast"),
        failed("f2", 3, parent="f1"),
        failed("f3", 4, parent="f2"),
    ]
    assert ids(choose_parents(entries, 2)) == ["fast", "slow"]


def test_the_chain_counts_only_consecutive_failures() -> None:
    # f3's chain is f2, f3: the correct c between f1 and f2 breaks it
    entries = [
        failed("f1", 1),
        correct("c", 2, 1.1, parent="f1"),
        failed("f2", 3, parent="c"),
        failed("f3", 4, parent="f2"),
    ]
    assert ids(choose_parents(entries, 2)) == ["f3", "c"]


def test_with_a_correct_candidate_repairs_take_at_most_half_the_slots_rounded_up() -> None:
    entries = [correct("c", 1, 1.2)] + [failed(f"f{i}", i) for i in range(2, 7)]
    assert ids(choose_parents(entries, 1)) == ["f6"]
    assert ids(choose_parents(entries, 2)) == ["f6", "c"]
    assert ids(choose_parents(entries, 3)) == ["f6", "f5", "c"]
    assert ids(choose_parents(entries, 4)) == ["f6", "f5", "c", "c"]
    assert ids(choose_parents(entries, 5)) == ["f6", "f5", "f4", "c", "c"]


def test_fewer_repairs_than_half_leave_the_rest_to_correct_ones() -> None:
    entries = [correct("c", 1, 1.2), failed("f", 1)]
    assert ids(choose_parents(entries, 4)) == ["f", "c", "c", "c"]


def test_without_a_correct_candidate_repairs_may_take_every_slot() -> None:
    entries = [failed(f"f{i}", i) for i in range(1, 5)]
    assert ids(choose_parents(entries, 3)) == ["f4", "f3", "f2"]


def test_correct_candidates_fastest_first_cycling() -> None:
    entries = [correct("a", 1, 1.2), correct("b", 2, 2.5), correct("c", 3, 0.8)]
    assert ids(choose_parents(entries, 2)) == ["b", "a"]
    assert ids(choose_parents(entries, 5)) == ["b", "a", "c", "b", "a"]


def test_the_best_is_chosen_over_the_latest() -> None:
    entries = [correct("best", 1, 2.0), correct("latest", 2, 1.1, parent="best")]
    assert ids(choose_parents(entries, 1)) == ["best"]


def test_pending_and_no_code_entries_are_never_parents() -> None:
    entries = [pending("p1", 1), no_code("n1", 1, None)]
    assert choose_parents(entries, 3) == [None, None, None]
    entries.append(correct("c", 1, 1.3))
    assert ids(choose_parents(entries, 3)) == ["c", "c", "c"]


def test_a_failure_without_source_is_not_repaired() -> None:
    empty = failed("f", 1)
    empty.source = ""
    assert choose_parents([empty], 2) == [None, None]


def test_a_correct_status_without_a_speedup_is_neither_repaired_nor_continued() -> None:
    odd = Entry("odd", 1, [], "# odd\n", status="correct")
    assert not odd.correct
    assert choose_parents([odd], 2) == [None, None]


def test_the_result_always_has_width_slots() -> None:
    entries = [correct("c", 1, 1.0), failed("f1", 1), failed("f2", 2, parent="c")]
    for width in range(1, 8):
        assert len(choose_parents(entries, width)) == width


# -- best --------------------------------------------------------------------------------------


def test_best_is_the_fastest_correct_candidate() -> None:
    assert best([]) is None
    assert best([failed("f", 1), pending("p", 1), no_code("n", 1, None)]) is None
    entries = [correct("a", 1, 1.2), failed("f", 2), correct("b", 2, 3.0), correct("c", 3, 2.9)]
    assert best(entries).id == "b"


def test_best_ignores_correct_status_without_speedup_and_keeps_the_first_of_a_tie() -> None:
    entries = [
        Entry("odd", 1, [], "# odd\n", status="correct"),
        correct("first", 1, 1.5),
        correct("second", 2, 1.5),
    ]
    assert best(entries).id == "first"


# -- log_tail and the views --------------------------------------------------------------------


def test_log_tail_keeps_a_short_log_without_trailing_whitespace() -> None:
    assert log_tail("") == ""
    assert log_tail("a\nb\n\n  \n") == "a\nb"


def test_log_tail_keeps_the_last_lines() -> None:
    assert LOG_TAIL_LINES == 150
    log = "".join(f"line {i}\n" for i in range(400))
    tail = log_tail(log)
    lines = tail.splitlines()
    assert len(lines) == LOG_TAIL_LINES
    assert lines[0] == "line 250" and lines[-1] == "line 399"


def test_log_tail_keeps_at_most_the_last_chars() -> None:
    assert LOG_TAIL_CHARS == 12_000
    log = "".join(f"{i:04d} " + "x" * 195 + "\n" for i in range(100))  # 20,000 chars
    tail = log_tail(log)
    assert len(tail) == LOG_TAIL_CHARS
    assert tail.endswith("0099 " + "x" * 195)
    assert log.rstrip().endswith(tail)


def test_log_tail_applies_both_limits() -> None:
    log = "\n".join("y" * 99 for _ in range(300))  # 150 lines are 14,999 chars
    tail = log_tail(log)
    assert len(tail) == LOG_TAIL_CHARS and len(tail.splitlines()) <= LOG_TAIL_LINES


def test_view_and_history_row() -> None:
    long_log = "".join(f"e{i}\n" for i in range(500))
    bad = failed("f", 2, parent="c")
    bad.log, bad.summary = long_log, "Tried tiling."
    view = bad.view()
    assert view["log"] == log_tail(long_log) and view["log"].startswith("e350\n")
    assert set(view) == {
        "id",
        "round",
        "status",
        "reason",
        "source",
        "log",
        "speedup",
        "candidate_ms",
        "reference_ms",
        "metrics",
    }
    assert bad.history_row() == {
        "id": "f",
        "round": 2,
        "parent": "c",
        "status": "compile_error",
        "speedup": None,
        "tried": "Tried tiling.",
    }
    good = correct("c", 1, 1.75)
    assert good.history_row()["speedup"] == 1.75 and good.history_row()["parent"] is None
