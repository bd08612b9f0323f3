"""`kernelwright report`: the HTML page of a recorded run, its charts, and how a browser sees it.

Runs are recorded by hand (EvaluationResult records, profile rows) in a temporary SQLite history:
an optimize run with a lineage, a bench run of three problems (one never correct), an empty run.
The browser test loads the written file in headless Chromium; it skips where none is installed.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest
from kernelwright import report, report_svg
from kernelwright.errors import BadInput
from kernelwright.profiler import ncu, roofline
from kernelwright.profiler.sheets import gpu_sheet
from kernelwright.records import EvaluationResult, Status
from kernelwright.store import repo
from kernelwright.store.db import open_engine
from kernelwright.store.schema import Profile

SCRIPT = "<script>alert(1)</script>"
CODE = 'int main() { return a < b && c > d; }  // </pre><script>alert("code")</script>'


def _problem(name: str) -> dict[str, str]:
    return {
        "content_hash": name.ljust(64, "0")[:64],
        "name": name,
        "path": f"/p/{name}.py",
        "source": "class Model: ...",
    }


def _result(status: Status, speedup: float | None, log: str = "build ok\n") -> EvaluationResult:
    return EvaluationResult(
        status=status,
        reason="" if status == Status.CORRECT else f"{status.value}: see <log>",
        target="cpu",
        problem="/p/x.py",
        problem_hash="h",
        candidate="c",
        trials=3,
        speedup=speedup,
        candidate_ms=1.0 if speedup else None,
        reference_ms=speedup,
        compile_s=2.5,
        log=log,
        warnings=[{"check": "timer", "message": "<b>suspicious</b> timing"}],
    )


def _profiled(speedup: float) -> EvaluationResult:
    """A correct result carrying a profile, as the evaluation of a CUDA candidate returns it."""
    launches = ncu.parse_csv((Path(__file__).parent / "fixtures/ncu/raw_h100.csv").read_text())
    kernels = roofline.summarize(launches, ["reduce_rows"], gpu_sheet("NVIDIA H100 80GB HBM3"))
    reduce_rows = next(k for k in kernels if k["kernel"] == "reduce_rows")
    reduce_rows["judge"] = roofline.judge_block(reduce_rows)
    profile = {"status": "ok", "message": "", "kernels": [reduce_rows], "seconds": 5.0}
    return dataclasses.replace(_result(Status.CORRECT, speedup), profile=profile)


@pytest.fixture
def history(tmp_path):
    engine = open_engine(f"sqlite:///{tmp_path}/h.db")
    p = _problem("scale_add")
    opt = repo.start_run(engine, "optimize", "cpu", {"rounds": 3}, {"coder": "gpt-x"})
    c0 = repo.add_candidate(engine, opt, p, CODE, "a", _result(Status.COMPILE_ERROR, None, SCRIPT))
    c1 = repo.add_candidate(
        engine, opt, p, "v1", "b", _result(Status.CORRECT, 1.3), parents=[c0], round_index=1
    )
    c2 = repo.add_candidate(
        engine, opt, p, "v2", "c", _result(Status.INCORRECT, None), parents=[c1], round_index=2
    )
    c3 = repo.add_candidate(
        engine, opt, p, "v3", "d", _result(Status.CORRECT, 2.5), parents=[c1], round_index=2
    )
    repo.add_llm_call(
        engine,
        opt,
        role="coder",
        provider="replay",
        model="gpt-x",
        prompt="p",
        tokens_in=1200,
        tokens_out=340,
        cost_usd=0.0125,
    )
    repo.finish_run(engine, opt, stop_reason="budget <spent>")

    bench = repo.start_run(engine, "bench", "cpu", {})
    evil = "softmax<img src=x onerror=alert(2)>"
    b = [
        repo.add_candidate(engine, bench, _problem("relu"), "r", "1", _result(Status.CORRECT, 0.9)),
        repo.add_candidate(engine, bench, _problem("relu"), "r", "2", _profiled(1.5)),
        repo.add_candidate(engine, bench, _problem("gemm"), "g", "3", _result(Status.CORRECT, 0.7)),
        repo.add_candidate(engine, bench, _problem(evil), "s", "4", _result(Status.TIMEOUT, None)),
    ]
    with repo.session(engine) as s:
        s.add(
            Profile(
                candidate_id=b[2], dram_throughput_pct=12.0, sm_throughput_pct=75.0, bound="compute"
            )
        )
    repo.finish_run(engine, bench)
    empty = repo.start_run(engine, "optimize", "cpu", {})
    return {
        "engine": engine,
        "opt": opt,
        "opt_ids": [c0, c1, c2, c3],
        "bench": bench,
        "bench_ids": b,
        "empty": empty,
        "evil": evil,
    }


class _Lineage(HTMLParser):
    """Depth in nested <ul> of each link text inside the lineage section."""

    def __init__(self) -> None:
        super().__init__()
        self.depth, self.on, self.in_a, self.found = 0, False, False, {}

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "h2":
            self.on = dict(attrs).get("id") == "lineage"
        self.depth += tag == "ul"
        self.in_a = tag == "a"

    def handle_endtag(self, tag: str) -> None:
        self.depth -= tag == "ul"
        self.in_a = self.in_a and tag != "a"

    def handle_data(self, data: str) -> None:
        if self.on and self.in_a:
            self.found[data] = self.depth


class _Tags(HTMLParser):
    """Every tag name, and every URL-valued attribute, of a page as a browser parses it."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.names.add(tag)
        self.links += [v or "" for k, v in attrs if k in ("src", "href", "xlink:href", "action")]


def _svgs(html: str) -> list[str]:
    return re.findall(r"<svg\b.*?</svg>", html, flags=re.S)


def test_optimize_run_page(history):
    html = report.render_report(history["engine"], history["opt"])
    c0, c1, c2, c3 = history["opt_ids"]
    for cid in history["opt_ids"]:
        assert f'id="c-{cid}"' in html and f'href="#c-{cid}"' in html
    assert "optimize" in html and "budget &lt;spent&gt;" in html and "gpt-x" in html
    assert "1200 / 340" in html and "$0.0125" in html
    assert re.search(r"<td>fast_1</td><td[^>]*>1/1</td><td[^>]*>1.000</td>", html)
    assert "2.5x" in html and "compile_error" in html and "incorrect" in html
    assert "no hardware profiles recorded for this run" in html
    depth = _Lineage()
    depth.feed(html)
    assert depth.found[c1] == depth.found[c0] + 1
    assert depth.found[c2] == depth.found[c3] == depth.found[c0] + 2
    assert len(_svgs(html)) == 2  # fast_p curve and the speedup-per-round chart


def test_bench_run_page(history):
    html = report.render_report(history["engine"], history["bench"])
    for cid in history["bench_ids"]:
        assert f'id="c-{cid}"' in html
    want = {"0": "2/3", "0.5": "2/3", "0.8": "1/3", "1": "1/3", "1.5": "0/3", "2": "0/3"}
    for p, count in want.items():
        assert re.search(rf"<td>fast_{re.escape(p)}</td><td[^>]*>{count}</td>", html), p
    assert re.search(r"<td>fast_1</td><td[^>]*>1/3</td><td[^>]*>0.333</td>", html)
    assert re.search(r"geometric mean speedup</td><td[^>]*>2/3</td><td[^>]*>1.02x</td>", html)
    assert html.count("none correct") == 1
    assert "no hardware profiles" not in html
    svgs = _svgs(html)
    assert len(svgs) == 1 + 3 + 1  # fast_p, one per problem, roofline
    chart = next(s for s in svgs if "DRAM" in s)
    assert chart.count('<circle class="dot"') == 2 and "memory" in chart
    # The profiled kernel, recorded through the evaluation's own path, is named on its candidate.
    assert "reduce_rows: DRAM 90.4%, SM 5.9%, occupancy 83.8%, memory-bound" in html


def test_empty_run_page(history):
    html = report.render_report(history["engine"], history["empty"])
    assert "This run recorded no candidates." in html and "running" in html
    assert re.search(r"<td>fast_0</td><td[^>]*>0/0</td>", html)
    assert "no problems in this run" in html and "no hardware profiles" in html


def test_recorded_text_is_escaped_and_page_is_self_contained(history):
    for run in ("opt", "bench", "empty"):
        html = report.render_report(history["engine"], history[run])
        assert "<script" not in html.lower() and "<img" not in html.lower()
        assert "<link" not in html.lower() and "url(" not in html and "@import" not in html
        tags = _Tags()
        tags.feed(html)
        assert {"script", "img", "link", "iframe", "object", "embed"}.isdisjoint(tags.names)
        assert tags.links or run == "empty"
        assert all(link.startswith("#") for link in tags.links), tags.links
        assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html)
        for svg in _svgs(html):
            ET.fromstring(svg)  # well-formed: nothing unescaped broke the markup
    html = report.render_report(history["engine"], history["opt"])
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;/pre&gt;&lt;script&gt;alert(&#34;code&#34;)&lt;/script&gt;" in html
    assert "&lt;b&gt;suspicious&lt;/b&gt; timing" in html
    html = report.render_report(history["engine"], history["bench"])
    assert "softmax&lt;img src=x onerror=alert(2)&gt;" in html


def test_write_report_is_atomic(history, tmp_path, monkeypatch):
    out = tmp_path / "out" / "report.html"
    with pytest.raises(BadInput, match="does not exist"):
        report.write_report(history["engine"], history["opt"], out)
    out.parent.mkdir()
    assert report.write_report(history["engine"], history["opt"], out) == out
    assert out.read_text() == report.render_report(history["engine"], history["opt"])
    before = out.read_text()

    def broken(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(BadInput, match="cannot write .*report.html: disk full"):
        report.write_report(history["engine"], history["bench"], out)
    assert out.read_text() == before and os.listdir(out.parent) == ["report.html"]
    with pytest.raises(repo.NotFound):
        report.render_report(history["engine"], "nope")


def test_fast_p_steps_and_ticks():
    assert report_svg.fast_p_steps([1.5, None, 0.7], 2.0) == [
        (0.0, 2 / 3),
        (0.7, 2 / 3),
        (0.7, 1 / 3),
        (1.5, 1 / 3),
        (1.5, 0.0),
        (2.0, 0.0),
    ]
    assert report_svg.fast_p_steps([3.0], 3.0) == [(0.0, 1.0), (3.0, 1.0), (3.0, 0.0)]
    assert report_svg.fast_p_steps([None], 2.0) == [(0.0, 0.0), (2.0, 0.0)]
    assert report_svg.ticks(0, 2) == [0, 0.5, 1, 1.5, 2]
    assert report_svg.ticks(0, 100) == [0, 20, 40, 60, 80, 100]
    assert report_svg.span(3, 3) == (2.7, 3.3) and report_svg.span(0, 0) == (-1, 1)


def test_best_so_far_line():
    assert report_svg.best_so_far([(0, None), (1, None)]) == []
    assert report_svg.best_so_far([(0, None), (1, 1.2), (2, 1.1), (3, 1.5)]) == [
        (1, 1.2),
        (2, 1.2),
        (3, 1.2),
        (3, 1.5),
    ]


def test_charts_handle_empty_single_and_odd_input():
    Dot = report_svg.Dot
    charts = [
        report_svg.fast_p_chart([]),
        report_svg.fast_p_chart([None]),
        report_svg.fast_p_chart([1.7]),
        report_svg.fast_p_chart([float("inf"), float("nan"), 1.0]),
        report_svg.rounds_chart([]),
        report_svg.rounds_chart([Dot(0, 0.0, "compile_error", "a")]),
        report_svg.rounds_chart([Dot(4, 3.0, "correct", "<x> & y", anchor="c-1")]),
        report_svg.rounds_chart([Dot(r, 1.0 + r / 10, "correct", "z") for r in range(40)]),
        report_svg.roofline_chart([]),
        report_svg.roofline_chart([Dot(150.0, -3.0, "weird", "p")]),
    ]
    for svg in charts:
        root = ET.fromstring(svg)
        assert root.tag == "svg" and root.get("viewBox")
        assert not re.search(r"\b(nan|inf)\b", svg, flags=re.I)
    assert "no problems in this run" in charts[0] and "no candidates" in charts[4]
    assert "&lt;x&gt; &amp; y" in charts[6] and 'href="#c-1"' in charts[6]
    assert charts[2] == report_svg.fast_p_chart([1.7])  # deterministic


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if found := shutil.which(name):
            return found
    return None


def _load(browser: str, page: Path, profile: Path, shot: Path) -> tuple[int, str, str]:
    """Load a file:// page headlessly: exit code, rendered DOM, and the stderr log."""
    proc = subprocess.run(
        [
            browser,
            "--headless=new",
            "--no-sandbox",  # CI runs as root
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",  # the page's console messages come out as "...:CONSOLE:..." lines
            "--window-size=1280,2000",
            f"--screenshot={shot}",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=page.parent,
    )
    return proc.returncode, proc.stdout, proc.stderr


def _console(log: str) -> list[str]:
    return [line for line in log.splitlines() if ":CONSOLE" in line]


def test_page_in_headless_chromium(history, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip(
            "no Chromium on PATH (chromium, chromium-browser, google-chrome); CI installs it"
        )
    page = report.write_report(history["engine"], history["bench"], tmp_path / "bench.html")
    # the console capture works: the page's own CSP blocks an injected remote image, loudly
    canary = tmp_path / "canary.html"
    canary.write_text(page.read_text().replace("</body>", '<img src="https://x.invalid/a.png">'))
    rc, _, log = _load(browser, canary, tmp_path / "profile0", tmp_path / "canary.png")
    if rc != 0:
        pytest.skip(f"{browser} is installed but cannot run headless here: {log[-500:]}")
    assert any("Content Security Policy" in line for line in _console(log)), log[-3000:]
    for run, charts in (("bench", 5), ("opt", 2), ("empty", 1)):
        page = report.write_report(history["engine"], history[run], tmp_path / f"{run}.html")
        shot = tmp_path / f"{run}.png"
        rc, dom, log = _load(browser, page, tmp_path / f"profile-{run}", shot)
        assert rc == 0, log[-3000:]
        assert _console(log) == []  # no errors, warnings or logs from the page
        assert dom.count("<svg") == charts and dom.count("</svg>") == charts
        assert "kernelwright run" in dom and (run == "empty" or "<polyline" in dom)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


def test_a_destination_that_cannot_be_written_is_bad_input_and_leaves_nothing(history, tmp_path):
    with pytest.raises(BadInput, match="is a folder"):
        report.write_report(history["engine"], history["opt"], tmp_path)
    with pytest.raises(BadInput, match=r"cannot write /proc/kw-report\.html"):
        report.write_report(history["engine"], history["opt"], Path("/proc/kw-report.html"))
    left = [p.name for p in tmp_path.iterdir() if not p.name.startswith("h.db")]
    assert left == []  # no temp file, no <dir>.tmp
    assert not Path("/proc/kw-report.html").exists()


def test_bench_fast_p_counts_every_selected_problem_as_bench_does(tmp_path):
    """A selected problem with no candidate at all counts against fast_p, in the report as in
    `bench --json` and `runs show` (bench_summary)."""
    from kernelwright.bench import bench_summary

    engine = open_engine(f"sqlite:///{tmp_path}/h.db")
    selected = ["/suite/01_gelu.py", "/suite/02_row_sum.py", "/suite/03_softmax.py"]
    run = repo.start_run(engine, "bench", "cpu", {"problems": selected})
    repo.add_candidate(engine, run, _problem("01_gelu"), "g", "1", _result(Status.CORRECT, 1.2))
    repo.add_candidate(engine, run, _problem("03_softmax"), "s", "2", _result(Status.CORRECT, 0.4))
    repo.finish_run(engine, run)
    summary = bench_summary(engine, run)
    assert summary["fast_p"]["fast_0"] == pytest.approx(2 / 3)
    context = report.build_context(engine, run)
    assert context["n_problems"] == 3
    assert [p.name for p in context["problems"]] == ["01_gelu", "02_row_sum", "03_softmax"]
    assert {f["name"]: f["share"] for f in context["fast"]} == pytest.approx(summary["fast_p"])
    assert context["geomean"] == pytest.approx(summary["geomean_speedup"])
    html = report.render_report(engine, run)
    assert re.search(r"<td>fast_0</td><td[^>]*>2/3</td><td[^>]*>0.667</td>", html)
    assert re.search(r"<td>fast_1</td><td[^>]*>1/3</td>", html)
