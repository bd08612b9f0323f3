"""benchmarks/throughput.py: its phase aggregation and per-hour arithmetic on made-up records.

Nothing is built or run: the samples below stand for stored evaluations. The real figures come
from running the script (`python benchmarks/throughput.py --target cpu`).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "throughput.py"


@pytest.fixture(scope="module")
def tp():
    spec = importlib.util.spec_from_file_location("kw_throughput", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fig(tp):
    """benchmarks/throughput_figures.py, which the script put on sys.path and imported."""
    return sys.modules["throughput_figures"]


def _sample(fig, name, phases, compile_s, wall, store=0.1, llm=0.0, status="correct"):
    return fig.Sample(
        candidate=name,
        problem="01_gelu",
        status=status,
        cached=False,
        phases_s=phases,
        compile_s=compile_s,
        evaluation_wall_s=wall,
        store_s=store,
        llm_s=llm,
    )


def test_spread_and_per_hour(fig):
    s = fig.spread([1.0, 2.0, 3.0, 4.0, 5.0])
    assert (s.median, s.p20, s.p80, s.n) == (3.0, 1.8, 4.2, 5)
    assert s.text(1) == "3.0 (1.8-4.2)"
    assert fig.spread([]) is None
    assert fig.spread([7.0]).text(0) == "7"
    assert fig.per_hour(10, 180.0) == pytest.approx(200.0)  # 18 s a candidate
    assert fig.per_hour(3, 0.0) is None


def test_phases_of_splits_device_from_overlap(fig):
    sample = _sample(
        fig,
        "a",
        {"reference_s": 2.0, "build_wait_s": 3.0, "candidate_s": 5.0, "profile_s": 4.0},
        compile_s=4.0,
        wall=14.5,
        store=0.2,
        llm=0.3,
    )
    phases = fig.phases_of(sample)
    assert phases["reference"] == 2.0
    assert phases["verify + time"] == 5.0
    assert phases["build worker start"] == pytest.approx(1.0)  # 2 + 3 - 4
    assert phases["evaluation, other"] == pytest.approx(0.5)  # 14.5 - 14
    # device: reference, verify + time, profile; the build and its worker's start run inside
    # `build wait` and the reference, so they count once
    assert fig.device_seconds(phases) == pytest.approx(11.0)
    assert fig.candidate_seconds(phases) == pytest.approx(15.0)  # 14.5 + store + llm
    # an unknown key of a changed harness keeps its name and counts as device time
    assert fig.phases_of(_sample(fig, "b", {"spot_check_s": 1.5}, None, None))["spot check"] == 1.5
    # a failed build (no seconds reported) gives no worker start
    failed = _sample(fig, "c", {"reference_s": 0.0, "build_wait_s": 9.0}, 0.0, 9.1)
    assert "build worker start" not in fig.phases_of(failed)


def test_aggregate_pass(tp, fig):
    samples = [
        _sample(
            tp, f"c{i}", {"reference_s": 0.0, "build_wait_s": 2.0, "candidate_s": c}, 1.0, 2.0 + c
        )
        for i, c in enumerate([4.0, 6.0, 8.0])
    ]
    samples[2].status = "incorrect"
    figures = fig.aggregate(samples, wall_s=36.0, reference_checks=[3.0])
    assert figures["candidates"] == 3
    assert figures["statuses"] == {"correct": 2, "incorrect": 1}
    assert figures["per_hour"] == pytest.approx(300.0)  # 3 in 36 s
    assert figures["seconds_per_candidate"] == pytest.approx(12.0)
    assert figures["phases"]["verify + time"] == {"median": 6.0, "p20": 4.8, "p80": 7.2, "n": 3}
    # device: verify + time plus a third of the reference check
    assert figures["device_s"]["median"] == pytest.approx(7.0)
    assert figures["device_bound_per_hour"] == pytest.approx(3600 / 7.0)
    # each: build wait 2 + candidate + store 0.1 + the check's share 1; the rest is the loop's
    assert figures["loop_other_s"] == pytest.approx((36.0 - 3 * 3.1 - 18.0) / 3)
    assert figures["device_share"] == pytest.approx(21.0 / 36.0)
    text = fig.render(
        {
            "target": "cuda",
            "candidates": 3,
            "layout": "fast",
            "profile": True,
            "machine": "test",
            "process_start": {"median": 2.0, "p20": 1.9, "p80": 2.1, "n": 3},
            "passes": {"variant": figures, "warm": figures},
        }
    )
    assert "300 candidates per GPU-hour end to end" in text
    line = fig.goal_line({"target": "cuda", "passes": {"variant": figures, "warm": figures}})
    assert "300 per GPU-hour" in line and "(met)" in line and "12.0 s" in line


def test_plan_and_replies(tp):
    order = tp.plan(["01_gelu", "02_row_sum"], 3)
    assert order == [("01_gelu", 0), ("02_row_sum", 0), ("01_gelu", 1)]
    text = tp.replies([("01_gelu", "A\n"), ("02_row_sum", "B\n"), ("01_gelu", "C\n")])
    roles = [line.split('"role": "')[1][:5] for line in text.splitlines()]
    assert roles == ["coder", "coder", "judge", "coder"]  # a verdict before a problem's 2nd


def test_bad_arguments_exit_2(tp):
    for argv in (["--candidates", "0"], ["--passes", "warm"], ["--target", "tpu"]):
        with pytest.raises(SystemExit) as exc:
            tp.parse(argv)
        assert exc.value.code == 2


def test_compare_arms_pairs_candidates_and_reports_the_ratio(fig):
    def arm(walls):
        samples = [
            _sample(fig, f"c{i}", {"candidate_s": w}, compile_s=None, wall=w, store=0.0)
            for i, w in enumerate(walls)
        ]
        figures = fig.aggregate(samples, sum(walls))
        figures["samples"] = [fig.asdict(s) for s in samples]
        return figures

    out = fig.compare_arms(arm([10.0, 8.0, 12.0]), arm([5.0, 6.0, 6.0]))
    assert out["ratio"]["median"] == pytest.approx(0.5)  # pairs: 0.5, 0.75, 0.5
    assert out["ratio"]["p80"] == pytest.approx(0.65)
    assert out["before"]["candidate_s"]["median"] == pytest.approx(10.0)
    assert out["after"]["per_hour"] == pytest.approx(3600 * 3 / 17.0)
    text = "\n".join(fig.render_comparison({"warm": out}, "device"))
    assert "[warm] before 10.00 (8.80-11.20) s" in text and "after/before 0.50" in text
