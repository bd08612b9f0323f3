"""Inline SVG charts for the run report, as pure functions from numbers to SVG text.

Guarantees: the output is a complete `<svg>` element with a `viewBox`, no external references
(no `href` outside the page, no fonts or images), and the same bytes for the same input. Every
piece of text that came from the history (candidate ids, labels) is HTML-escaped here, so the
result can be placed into the page as it is. Empty input gives a chart that says so; a single
point or a range of zero width gets a padded axis instead of a division by zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

STATUS_COLORS = {
    "correct": "#2e7d32",
    "incorrect": "#ef6c00",
    "compile_error": "#c62828",
    "runtime_error": "#8e24aa",
    "timeout": "#6d4c41",
    "rejected": "#37474f",
    "no_code": "#9e9e9e",
    "pending": "#bdbdbd",
}
BOUND_COLORS = {"memory": "#1565c0", "compute": "#c62828", "latency": "#f9a825"}
OTHER_COLOR = "#757575"
# Presentation attributes, so a chart looks the same inside the page and on its own.
_STYLE = {
    "grid": 'class="grid" stroke="#eeeeee"',
    "axis": 'class="axis" stroke="#555555"',
    "tick": 'class="tick" fill="#555555"',
    "legend": 'class="legend" fill="#555555"',
    "label": 'class="label" fill="#333333" font-size="12"',
    "empty": 'class="empty" fill="#757575" font-size="14"',
    "dot": 'class="dot" stroke="#ffffff" stroke-width="1"',
    "curve": 'class="curve" fill="none" stroke="#1565c0" stroke-width="2"',
    "ref": 'class="ref" fill="none" stroke="#9e9e9e" stroke-dasharray="4 3"',
    "bar": 'class="bar" stroke="#424242" stroke-width="1.2"',
}
WIDTH, HEIGHT = 560, 300
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 30, 44


@dataclass(frozen=True)
class Dot:
    """One marker: position, color key (a status or a bound), tooltip and optional anchor."""

    x: float
    y: float
    key: str
    label: str
    anchor: str = ""
    # an error bar from `low` to `high` (the speedup's p20-p80), where known
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class Frame:
    """A plot area mapping data ranges onto the fixed canvas."""

    x0: float
    x1: float
    y0: float
    y1: float

    def px(self, x: float) -> float:
        return LEFT + (x - self.x0) / (self.x1 - self.x0) * (WIDTH - LEFT - RIGHT)

    def py(self, y: float) -> float:
        return HEIGHT - BOTTOM - (y - self.y0) / (self.y1 - self.y0) * (HEIGHT - TOP - BOTTOM)


def span(lo: float, hi: float) -> tuple[float, float]:
    """A drawable range: widened when empty or of zero width."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi < lo:
        return 0.0, 1.0
    if hi - lo < 1e-9:
        pad = abs(lo) * 0.1 or 1.0
        return lo - pad, hi + pad
    return lo, hi


def ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (1, 2 or 5 times a power of ten apart)."""
    lo, hi = span(lo, hi)
    raw = (hi - lo) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    out = []
    value = first
    while value <= hi + step * 1e-6:
        out.append(round(value, 10))
        value += step
    return out


def _clamp(value: float) -> float:
    return min(max(value, 0.0), 100.0)


def _n(value: float) -> str:
    return f"{value:.1f}"


def _tick_label(value: float) -> str:
    return f"{value:g}"


def _open(title: str) -> list[str]:
    return [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        'font-family="sans-serif" font-size="11" '
        f'role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]


def _axes(frame: Frame, x_label: str, y_label: str, x_ticks: list[float]) -> list[str]:
    parts = []
    bottom, top = HEIGHT - BOTTOM, TOP
    for y in ticks(frame.y0, frame.y1):
        if frame.y0 - 1e-9 <= y <= frame.y1 + 1e-9:
            py = _n(frame.py(y))
            parts.append(
                f'<line {_STYLE["grid"]} x1="{LEFT}" y1="{py}" x2="{WIDTH - RIGHT}" y2="{py}"/>'
                f'<text {_STYLE["tick"]} x="{LEFT - 6}" y="{py}" text-anchor="end" '
                f'dominant-baseline="middle">{_tick_label(y)}</text>'
            )
    for x in x_ticks:
        if frame.x0 - 1e-9 <= x <= frame.x1 + 1e-9:
            px = _n(frame.px(x))
            parts.append(
                f'<line {_STYLE["grid"]} x1="{px}" y1="{top}" x2="{px}" y2="{bottom}"/>'
                f'<text {_STYLE["tick"]} x="{px}" y="{bottom + 16}" text-anchor="middle">'
                f"{_tick_label(x)}</text>"
            )
    parts.append(
        f'<line {_STYLE["axis"]} x1="{LEFT}" y1="{bottom}" x2="{WIDTH - RIGHT}" y2="{bottom}"/>'
        f'<line {_STYLE["axis"]} x1="{LEFT}" y1="{top}" x2="{LEFT}" y2="{bottom}"/>'
        f'<text {_STYLE["label"]} x="{(LEFT + WIDTH - RIGHT) // 2}" y="{HEIGHT - 6}" '
        f'text-anchor="middle">{escape(x_label)}</text>'
        f'<text {_STYLE["label"]} x="14" y="{(TOP + HEIGHT - BOTTOM) // 2}" text-anchor="middle" '
        f'transform="rotate(-90 14 {(TOP + HEIGHT - BOTTOM) // 2})">{escape(y_label)}</text>'
    )
    return parts


def _empty(title: str, message: str) -> str:
    return "".join(
        [
            *_open(title),
            f'<text {_STYLE["empty"]} x="{WIDTH // 2}" y="{HEIGHT // 2}" text-anchor="middle">'
            f"{escape(message)}</text></svg>",
        ]
    )


def _polyline(frame: Frame, points: Sequence[tuple[float, float]], css: str) -> str:
    coords = " ".join(f"{_n(frame.px(x))},{_n(frame.py(y))}" for x, y in points)
    return f'<polyline {_STYLE[css]} points="{coords}"/>'


def _dots(frame: Frame, dots: Sequence[Dot], colors: dict[str, str]) -> list[str]:
    parts = []
    for d in dots:
        fill = colors.get(d.key, OTHER_COLOR)
        circle = (
            f'<circle {_STYLE["dot"]} cx="{_n(frame.px(d.x))}" cy="{_n(frame.py(d.y))}" r="4.5" '
            f'fill="{fill}"><title>{escape(d.label)}</title></circle>'
        )
        if d.anchor:
            circle = f'<a href="#{escape(d.anchor)}">{circle}</a>'
        parts.append(circle)
    return parts


def _bars(frame: Frame, dots: Sequence[Dot]) -> list[str]:
    """A vertical error bar with caps per dot that has a range (drawn under the dots)."""
    parts = []
    for d in dots:
        if d.low is None or d.high is None:
            continue
        if not (math.isfinite(d.low) and math.isfinite(d.high)):
            continue
        x, y0, y1 = _n(frame.px(d.x)), _n(frame.py(d.low)), _n(frame.py(d.high))
        left, right = _n(frame.px(d.x) - 4), _n(frame.px(d.x) + 4)
        parts.append(
            f'<path {_STYLE["bar"]} d="M{x},{y0}V{y1}M{left},{y0}H{right}M{left},{y1}H{right}">'
            f"<title>{escape(d.label)}</title></path>"
        )
    return parts


def _legend(keys: Sequence[str], colors: dict[str, str]) -> list[str]:
    """One colored marker per key along the top margin, wrapping onto a second row."""
    parts = []
    x, y = LEFT + 8, 9
    for key in keys:
        width = 18 + 6 * len(key)
        if x + width > WIDTH - RIGHT and x > LEFT + 8:
            x, y = LEFT + 8, y + 12
        fill = colors.get(key, OTHER_COLOR)
        parts.append(
            f'<circle cx="{x}" cy="{y}" r="4" fill="{fill}"/>'
            f'<text {_STYLE["legend"]} x="{x + 7}" y="{y}" dominant-baseline="middle">'
            f"{escape(key)}</text>"
        )
        x += width
    return parts


def fast_p_steps(best: Sequence[float | None], x_max: float) -> list[tuple[float, float]]:
    """The fast_p curve as a step polyline: at p, the share of problems with speedup > p.

    Starts at p = 0, drops at each distinct best speedup up to `x_max`, ends at `x_max`."""
    n = len(best) or 1
    solved = [s for s in best if s is not None]

    def above(p: float) -> float:
        return sum(1 for s in solved if s > p) / n

    def at_least(p: float) -> float:
        return sum(1 for s in solved if s >= p) / n

    points = [(0.0, above(0.0))]
    for s in sorted(set(solved)):
        if 0.0 < s <= x_max:
            points += [(s, at_least(s)), (s, above(s))]
    if points[-1][0] < x_max:
        points.append((x_max, above(x_max)))
    return points


def fast_p_chart(best: Sequence[float | None]) -> str:
    """Line chart of fast_p against p, for p from 0 to max(2, best speedup)."""
    title = "fast_p: share of problems correct and faster than p times the reference"
    if not best:
        return _empty(title, "no problems in this run")
    best = [None if s is None or math.isnan(s) else s for s in best]
    x_max = max([2.0, *(s for s in best if s is not None and math.isfinite(s))])
    frame = Frame(0.0, x_max, 0.0, 1.0)
    parts = _open(title) + _axes(
        frame, "p (speedup threshold)", "share of problems", ticks(0, x_max)
    )
    parts.append(_polyline(frame, [(1.0, 0.0), (1.0, 1.0)], "ref"))
    parts.append(_polyline(frame, fast_p_steps(best, x_max), "curve"))
    parts.append("</svg>")
    return "".join(parts)


def best_so_far(points: Sequence[tuple[int, float | None]]) -> list[tuple[float, float]]:
    """(round, correct speedup or None) -> the best-so-far step line, from the first success."""
    by_round: dict[int, float] = {}
    for rnd, s in points:
        if s is not None:
            by_round[rnd] = max(by_round.get(rnd, s), s)
    if not by_round:
        return []
    last = max(r for r, _ in points)
    line: list[tuple[float, float]] = []
    best: float | None = None
    for rnd in range(min(by_round), last + 1):
        if rnd in by_round and (best is None or by_round[rnd] > best):
            if best is not None:
                line.append((float(rnd), best))
            best = by_round[rnd]
        assert best is not None
        line.append((float(rnd), best))
    return line


def rounds_chart(dots: Sequence[Dot]) -> str:
    """Speedup per round: every candidate as a dot colored by status (those without a speedup
    sit on 0), with an error bar over its p20-p80 where it has one, and the best-so-far correct
    speedup as a line. The dashed line is 1x: a bar across it is within noise."""
    title = "speedup per round (bars: p20-p80 of the per-round ratios; line: best correct so far)"
    if not dots:
        return _empty(title, "no candidates")
    dots = [d for d in dots if math.isfinite(d.x) and math.isfinite(d.y)]
    if not dots:
        return _empty(title, "no candidates")
    rounds = [int(d.x) for d in dots]
    highs = [d.high for d in dots if d.high is not None and math.isfinite(d.high)]
    y_top = max([1.0, *(d.y for d in dots), *highs]) * 1.1
    frame = Frame(*span(min(rounds) - 0.5, max(rounds) + 0.5), 0.0, y_top)
    x_ticks = [float(r) for r in range(min(rounds), max(rounds) + 1)]
    if len(x_ticks) > 12:
        x_ticks = [t for t in ticks(min(rounds), max(rounds)) if t == int(t)]
    parts = _open(title) + _axes(frame, "round", "speedup (x)", x_ticks)
    parts.append(_polyline(frame, [(frame.x0, 1.0), (frame.x1, 1.0)], "ref"))
    correct = [(int(d.x), d.y if d.key == "correct" else None) for d in dots]
    line = best_so_far(correct)
    if line:
        parts.append(_polyline(frame, line, "curve"))
    parts += _bars(frame, dots)
    parts += _dots(frame, dots, STATUS_COLORS)
    parts += _legend(sorted({d.key for d in dots}), STATUS_COLORS)
    parts.append("</svg>")
    return "".join(parts)


def roofline_chart(dots: Sequence[Dot]) -> str:
    """DRAM throughput (x) against SM throughput (y), both in % of peak, colored by bound."""
    title = "DRAM vs SM throughput (% of peak), by bound"
    if not dots:
        return _empty(title, "no profiles")
    frame = Frame(0.0, 100.0, 0.0, 100.0)
    parts = _open(title) + _axes(frame, "DRAM throughput %", "SM throughput %", ticks(0, 100))
    clamped = [Dot(_clamp(d.x), _clamp(d.y), d.key, d.label, d.anchor) for d in dots]
    parts += _dots(frame, clamped, BOUND_COLORS)
    parts += _legend(sorted({d.key for d in dots}), BOUND_COLORS)
    parts.append("</svg>")
    return "".join(parts)
