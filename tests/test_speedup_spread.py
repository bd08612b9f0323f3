"""Every speedup carries its spread: p20-p80 of the timing's per-round ratios, and "within noise"
where that range holds 1.0. In the records, the history (migration 0004 fills old rows), `runs
list` / `show` / `tree` / `compare`, `candidates show`, and tables that fit 80 columns.
In-process (typer's CliRunner)."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from kernelwright import spread
from kernelwright.cli import app, out
from kernelwright.records import EvaluationResult, SampleStats, Status, TimingReport
from kernelwright.store import migrations, repo
from kernelwright.store.db import open_engine
from typer.testing import CliRunner

PROBLEM = {"content_hash": "h" * 64, "name": "scale_add", "path": "scale_add.py", "source": "x"}
NOISY = [1.0, 0.97, 1.09, 1.31, 1.57]  # median 1.09, p20-p80 0.994-1.36: holds 1.0
CLEAR = [25.0, 24.1, 26.0, 25.3, 25.5]  # median 25.3, p20-p80 24.8-25.6


def _stats(ms: float) -> SampleStats:
    return SampleStats(ms, ms, ms, ms, ms, ms, 10)


def _timed(ratios: list[float] | None, status: Status = Status.CORRECT) -> EvaluationResult:
    timing = None
    speedup = None
    if ratios:
        speedup = sorted(ratios)[len(ratios) // 2]
        timing = TimingReport(
            "perf", _stats(1.0), _stats(1 / speedup), speedup, ratios, 1, 1, 0, {}
        )
    return EvaluationResult(
        status=status,
        reason="" if ratios else "wrong",
        target="cpu",
        problem="scale_add.py",
        problem_hash="h",
        candidate="c",
        trials=3,
        speedup=speedup,
        candidate_ms=1 / speedup if speedup else None,
        reference_ms=1.0 if speedup else None,
        timing=timing,
    )


def test_the_spread_is_p20_to_p80_of_the_round_ratios():
    assert spread.interval([1.0, 1.57, 1.09, 1.05, 1.2]) == pytest.approx((1.04, 1.274))
    assert spread.interval([]) is None and spread.interval(None) is None
    assert spread.within_noise(0.99, 1.2) and not spread.within_noise(1.01, 1.2)
    assert spread.within_noise(None, 1.2) is None
    assert spread.text(1.09, 0.994, 1.36) == "1.09x (p20-p80 0.994-1.36, within noise)"
    assert (
        spread.text(25.3, 24.8, 25.6, rounds=5) == "25.3x (median of 5 rounds, p20-p80 24.8-25.6)"
    )
    assert spread.text(None) == "-" and spread.text(2.0) == "2x"
    assert spread.cell(1.09, 0.994, 1.36) == "1.09x~" and spread.cell(25.3, 24.8, 25.6) == "25.3x"


def test_an_evaluation_result_carries_its_spread():
    noisy = _timed(NOISY)
    assert noisy.speedup == 1.09
    assert (noisy.speedup_p20, noisy.speedup_p80) == pytest.approx((0.994, 1.362))
    assert noisy.within_noise is True
    data = noisy.to_dict()
    assert data["within_noise"] is True and data["speedup_p20"] == pytest.approx(0.994)
    clear = _timed(CLEAR)
    assert clear.within_noise is False
    untimed = _timed(None, Status.INCORRECT)
    assert (untimed.speedup_p20, untimed.speedup_p80, untimed.within_noise) == (None, None, None)


@pytest.fixture
def history(tmp_path):
    db = f"sqlite:///{tmp_path / 'h.db'}"
    engine = open_engine(db)
    noisy_run = repo.start_run(engine, "optimize", "cpu", {})
    failed = repo.add_candidate(
        engine, noisy_run, PROBLEM, "a", "a", _timed(None, Status.COMPILE_ERROR)
    )
    noisy = repo.add_candidate(
        engine, noisy_run, PROBLEM, "b", "b", _timed(NOISY), parents=[failed], round_index=1
    )
    repo.finish_run(engine, noisy_run, stop_reason="all 1 rounds done")
    clear_run = repo.start_run(engine, "optimize", "cpu", {})
    problems = [
        {**PROBLEM, "name": f"{n:02d}_a_problem_with_a_long_name", "content_hash": f"{n}" * 64}
        for n in range(1, 4)
    ]
    for problem in problems:
        clear = repo.add_candidate(engine, clear_run, problem, "c", "c", _timed(CLEAR))
    repo.finish_run(engine, clear_run)
    return {
        "db": db,
        "noisy_run": noisy_run,
        "noisy": noisy,
        "clear_run": clear_run,
        "clear": clear,
    }


@pytest.fixture
def kw(monkeypatch):
    monkeypatch.setattr(out, "width", 80)
    runner = CliRunner()

    def invoke(*args: str):
        result = runner.invoke(app, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.stdout

    return invoke


def test_the_history_keeps_the_spread(history):
    engine = open_engine(history["db"])
    shown = repo.show_run(engine, history["noisy_run"])
    assert shown["best"]["speedup_p20"] == pytest.approx(0.994)
    assert shown["best"]["within_noise"] is True
    assert [r["within_noise"] for r in shown["rounds"]] == [None, True]
    assert shown["rounds"][0]["statuses"] == {"compile_error": 1}
    listed = {r["id"]: r for r in repo.list_runs(engine)}
    assert listed[history["clear_run"]]["within_noise"] is False
    assert listed[history["clear_run"]]["speedup_p80"] == pytest.approx(25.6)


def test_an_empty_history_says_so(tmp_path, kw):
    listed = kw("runs", "list", "--db", f"sqlite:///{tmp_path / 'empty.db'}")
    assert listed.startswith("no runs in this history yet")


def test_runs_show_and_tree_say_within_noise(history, kw):
    shown = kw("runs", "show", history["noisy_run"], "--db", history["db"])
    assert "best: 1.09x (p20-p80 0.994-1.36, within noise)" in shown
    assert "1.09x~" in shown and "within noise (the p20-p80" in shown
    assert "1 compile_error" in shown
    tree = kw("runs", "tree", history["noisy_run"], "--db", history["db"])
    assert "correct 1.09x (p20-p80 0.994-1.36, within noise)" in tree
    clear = kw("runs", "show", history["clear_run"], "--db", history["db"])
    assert "25.3x (p20-p80 24.8-25.6)" in clear and "within noise" not in clear
    data = json.loads(kw("runs", "show", history["noisy_run"], "--db", history["db"], "--json"))
    assert data["best"]["within_noise"] is True


def test_candidates_show_and_compare_carry_the_spread(history, kw):
    shown = kw("candidates", "show", history["noisy"], "--db", history["db"])
    assert "speedup: 1.09x (median of 5 rounds, p20-p80 0.994-1.36, within noise)" in shown
    table = kw("runs", "compare", history["noisy_run"], history["clear_run"], "--db", history["db"])
    assert "1.09x~ (0.994-1.36)" in table and "25.3x (24.8-25.6)" in table
    rows = json.loads(
        kw(
            "runs",
            "compare",
            history["noisy_run"],
            history["clear_run"],
            "--db",
            history["db"],
            "--json",
        )  # fmt: skip
    )
    noisy = next(r for r in rows if r["problem"] == "scale_add")
    assert noisy["spread"][history["noisy_run"]]["within_noise"] is True


def test_runs_list_fits_80_columns_and_wide_has_everything(history, kw):
    table = kw("runs", "list", "--db", history["db"])
    lines = table.splitlines()
    assert max(len(line) for line in lines) <= 80, table
    assert history["noisy_run"] in table and history["clear_run"] in table  # ids never cut
    assert "1.09x~" in table and "~: within noise" in table
    assert "…" in table  # the long problem list gives way
    out.width = 50  # narrower still: the other columns give way, never an id
    narrow = kw("runs", "list", "--db", history["db"])
    assert history["noisy_run"] in narrow and history["clear_run"] in narrow, narrow
    out.width = 80
    wide = kw("runs", "list", "--db", history["db"], "--wide")
    assert "0.994-1.36" in wide and "01_a_problem_with_a_long_name" in wide


def test_migration_0004_fills_the_spread_of_stored_evaluations(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    migrations.upgrade(engine, until="0003_loop_columns")
    timing = json.dumps({"round_ratios": NOISY})
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO runs (id, kind, status, target, models, config, environment, "
                "harness_version, started_at, tokens_in, tokens_out, cost_usd, stop_reason) "
                "VALUES ('old1', 'optimize', 'finished', 'cpu', '{}', '{}', '{}', '0.0.1', "
                "'2026-01-01 00:00:00', 0, 0, 0.0, '')"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO problems (id, content_hash, name, path, source) "
                "VALUES (1, 'h', 'scale_add', 'p.py', 'x')"
            )
        )
        for cid, timing_json, speedup in (("c1", timing, 1.09), ("c2", "{}", None)):
            conn.execute(
                sa.text(
                    "INSERT INTO candidates (id, run_id, problem_id, parents, round, source, "
                    "source_hash, status, reason, build, warnings, created_at) VALUES "
                    f"('{cid}', 'old1', 1, '[]', 0, 's', 'h', 'correct', '', '{{}}', '[]', "
                    "'2026-01-01 00:00:00')"
                )
            )
            conn.execute(
                sa.text(
                    "INSERT INTO evaluations (candidate_id, status, reason, speedup, cached, "
                    "trials, cases, timing, environment, log, created_at) VALUES "
                    "(:cid, 'correct', '', :speedup, 0, 3, '[]', :timing, '{}', '', "
                    "'2026-01-01 00:00:00')"
                ),
                {"cid": cid, "speedup": speedup, "timing": timing_json},
            )
    engine.dispose()
    engine = open_engine(url)
    assert "0004_speedup_spread" in migrations.applied(engine)
    evaluation = repo.get_candidate(engine, "c1")["evaluation"]
    assert (evaluation["speedup_p20"], evaluation["speedup_p80"]) == pytest.approx((0.994, 1.362))
    assert evaluation["within_noise"] is True
    assert repo.get_candidate(engine, "c2")["evaluation"]["speedup_p20"] is None


def test_the_report_draws_error_bars_and_says_within_noise(history):
    from kernelwright.report import render_report

    page = render_report(open_engine(history["db"]), history["noisy_run"])
    assert 'class="bar"' in page  # the p20-p80 bar on the per-round chart
    assert "bars: p20-p80 of the per-round ratios" in page
    assert "1.09x (p20-p80 0.994-1.36, within noise)" in page
    assert '<span class="noise">within noise</span></td>' in page  # in the tables
    clear = render_report(open_engine(history["db"]), history["clear_run"])
    assert "24.8-25.6" in clear and '<span class="noise">within noise</span></td>' not in clear


def test_the_export_docstring_states_the_spread(history):
    from kernelwright.export import render

    engine = open_engine(history["db"])
    noisy = render({**repo.get_candidate(engine, history["noisy"]), "source": "x = 1\n"})
    assert "Measured: 1.090x over PyTorch eager\n(the median of 5 timing rounds' ratios" in noisy
    assert "p20-p80 0.994-1.362" in noisy and "Within noise" in noisy
    clear = render({**repo.get_candidate(engine, history["clear"]), "source": "x = 1\n"})
    assert "p20-p80 24.820-25.600" in clear and "Within noise" not in clear
