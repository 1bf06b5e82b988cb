"""The frontier picture: dev score against p95 latency, drawn as SVG by kdkit itself (no plotting library).

Every finished trial is a grey dot, the Pareto frontier a blue line through its trials, the teacher a red
diamond, the chosen student a green ring, and the budget dashed lines (the latency limit, vertical; the lowest
score the accuracy budget accepts, horizontal). ``references`` adds named point sets (the benchmark's
hand-made ``copy:N`` students). The plotted numbers are embedded as JSON in ``<metadata id="kdkit-frontier">``.
"""

from __future__ import annotations

import json
from typing import Any
from xml.sax.saxutils import escape

from kdkit.records.curves import nice_ticks

WIDTH, HEIGHT = 760, 480
_LEFT, _TOP, _W, _H = 70, 40, 600, 360
#: a point: (p95 ms, score in %, label)
Point = tuple[float, float, str]
_REFERENCE_COLOURS = ("#ff7f0e", "#9467bd", "#8c564b", "#17becf")


class _Axes:
    def __init__(self, xs: list[float], ys: list[float]) -> None:
        self.xticks = nice_ticks(0.0, max(xs) * 1.05)
        self.yticks = nice_ticks(min(ys) - 0.5, max(ys) + 0.5)

    def x(self, value: float) -> float:
        return _LEFT + (value - self.xticks[0]) / (self.xticks[-1] - self.xticks[0]) * _W

    def y(self, value: float) -> float:
        return _TOP + _H - (value - self.yticks[0]) / (self.yticks[-1] - self.yticks[0]) * _H

    def frame(self, main_metric: str) -> list[str]:
        out = [f'<rect x="{_LEFT}" y="{_TOP}" width="{_W}" height="{_H}" class="frame"/>']
        for tick in self.yticks:
            out.append(
                f'<line x1="{_LEFT}" y1="{self.y(tick):.2f}" x2="{_LEFT + _W}" y2="{self.y(tick):.2f}" class="grid"/>'
            )
            out.append(f'<text x="{_LEFT - 6}" y="{self.y(tick) + 4:.2f}" class="ytick">{tick:.4g}</text>')
        for tick in self.xticks:
            out.append(f'<text x="{self.x(tick):.2f}" y="{_TOP + _H + 16}" class="xtick">{tick:.4g}</text>')
        out.append(f'<text x="{_LEFT + _W / 2}" y="{_TOP + _H + 36}" class="label">p95 latency, ms (batch 1)</text>')
        out.append(f'<text x="16" y="{_TOP + _H / 2}" class="label" transform="rotate(-90 16 {_TOP + _H / 2})">'
                   f"dev {escape(main_metric)} (%)</text>")  # fmt: skip
        return out

    def point(self, p: Point, shape: str, colour: str) -> str:
        x, y, tip = self.x(p[0]), self.y(p[1]), f"<title>{escape(p[2])}: {p[1]:.2f} at {p[0]:.2f} ms</title>"
        if shape == "diamond":
            return f'<path d="M{x:.1f},{y - 7:.1f} l7,7 l-7,7 l-7,-7 z" fill="{colour}">{tip}</path>'
        if shape == "ring":
            return (
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="8" fill="none" stroke="{colour}" stroke-width="2">{tip}</circle>'
            )
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}">{tip}</circle>'


def frontier_svg(
    trials: list[Point],
    frontier: list[Point],
    teacher: Point,
    *,
    main_metric: str,
    budget: dict[str, float | None],
    chosen: Point | None = None,
    references: dict[str, list[Point]] | None = None,
) -> str:
    """The SVG document; ``budget``: ``latency_ms`` and ``min_score`` (in %), either None."""
    references = references or {}
    every = [*trials, teacher, *[p for ps in references.values() for p in ps]]
    limit_x, limit_y = budget.get("latency_ms"), budget.get("min_score")
    axes = _Axes(
        [p[0] for p in every] + ([limit_x] if limit_x else []), [p[1] for p in every] + ([limit_y] if limit_y else [])
    )
    body = axes.frame(main_metric)
    if limit_x:
        body.append(
            f'<line x1="{axes.x(limit_x):.1f}" y1="{_TOP}" x2="{axes.x(limit_x):.1f}" y2="{_TOP + _H}" class="budget"/>'
        )
    if limit_y:
        body.append(
            f'<line x1="{_LEFT}" y1="{axes.y(limit_y):.1f}" x2="{_LEFT + _W}" y2="{axes.y(limit_y):.1f}" '
            'class="budget"/>'
        )
    body.extend(axes.point(p, "dot", "#bbbbbb") for p in trials)
    line = " ".join(f"{axes.x(p[0]):.1f},{axes.y(p[1]):.1f}" for p in sorted(frontier))
    body.append(f'<polyline points="{line}" class="front"><title>Pareto frontier</title></polyline>')
    body.extend(axes.point(p, "dot", "#1f77b4") for p in frontier)
    for index, (name, points) in enumerate(references.items()):
        colour = _REFERENCE_COLOURS[index % len(_REFERENCE_COLOURS)]
        body.extend(axes.point((p[0], p[1], f"{name} {p[2]}"), "dot", colour) for p in points)
    body.append(axes.point(teacher, "diamond", "#d62728"))
    if chosen is not None:
        body.append(axes.point(chosen, "ring", "#2ca02c"))
    legend = [("#bbbbbb", "trial"), ("#1f77b4", "frontier"), ("#d62728", "teacher"), ("#2ca02c", "chosen"),
              *[(_REFERENCE_COLOURS[i % 4], name) for i, name in enumerate(references)]]  # fmt: skip
    for index, (colour, name) in enumerate(legend):
        x = _LEFT + 8 + index * 110
        body.append(
            f'<circle cx="{x}" cy="{_TOP - 16}" r="4" fill="{colour}"/>'
            f'<text x="{x + 8}" y="{_TOP - 12}">{escape(name)}</text>'
        )
    data = {"trials": trials, "frontier": frontier, "teacher": teacher, "chosen": chosen, "references": references,
            "budget": budget}  # fmt: skip
    style = (
        "text{font-family:sans-serif;font-size:11px;fill:#333}.label{text-anchor:middle}.ytick{text-anchor:end}"
        ".xtick{text-anchor:middle}.frame{fill:none;stroke:#999}.grid{stroke:#eee}"
        ".budget{stroke:#d62728;stroke-dasharray:6 4}.front{fill:none;stroke:#1f77b4;stroke-width:1.8}"
    )
    return "\n".join([
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}">',
        "<title>accuracy against latency: the Pareto frontier</title>",
        f'<metadata id="kdkit-frontier">{escape(json.dumps(data))}</metadata>',
        f"<style>{style}</style>", f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>', *body, "</svg>",
    ]) + "\n"  # fmt: skip


def as_point(measured: dict[str, Any], label: str) -> Point:
    """A trial's (p95 ms, score %, label)."""
    return (float(measured["p95_ms"]), 100.0 * float(measured["score"]), label)
