"""Training curves as an SVG picture written by kdkit itself (no plotting library).

    from kdkit.records.curves import write_training_curves
    write_training_curves(run_dir / "best" / "training_curves.svg", summary)   # summary = run.json

Two panels: the loss terms the Trainer logged every ``logging_steps`` (``loss`` = their sum, ``loss_ce``,
``loss_kd``, ``loss_attr``, ...: one line each, x = optimiser step) and the dev metric at each evaluation (the
task's main metric, one line per validation split). The plotted numbers are also embedded as JSON in the
SVG's ``<metadata id="kdkit-curves">``, so the picture can be checked or re-plotted.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

#: file name of the picture, next to the model card
CURVES_FILE = "training_curves.svg"
WIDTH, HEIGHT = 960, 380
#: plot area of a panel: left margin, top, width, height (panels side by side)
_LEFT, _TOP, _PLOT_W, _PLOT_H, _GAP = 64, 48, 380, 230, 100
_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")

Series = dict[str, list[tuple[float, float]]]


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def loss_series(train_log: Sequence[dict[str, Any]]) -> Series:
    """``{"loss": [(step, value), ...], "loss_ce": [...], ...}`` from run.json's ``train_log``."""
    series: Series = {}
    for entry in train_log:
        step = entry.get("step")
        if not _finite(step):
            continue
        for key, value in entry.items():
            if (key == "loss" or key.startswith("loss_")) and _finite(value):
                series.setdefault(key, []).append((float(step), float(value)))  # type: ignore[arg-type]
    return dict(sorted(series.items(), key=lambda item: (item[0] != "loss", item[0])))


def dev_series(history: Sequence[dict[str, Any]], main_metric: str) -> Series:
    """``{"eval_accuracy": [(step, value), ...]}`` (one key per validation split) from run.json's ``history``."""
    series: Series = {}
    for entry in history:
        step = entry.get("step")
        if not _finite(step):
            continue
        for key, value in entry.items():
            wanted = key == f"eval_{main_metric}" or (key.startswith("eval_") and key.endswith(f"_{main_metric}"))
            if wanted and _finite(value):
                series.setdefault(key, []).append((float(step), float(value)))  # type: ignore[arg-type]
    return series


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering [low, high] (1, 2, 2.5 or 5 times a power of ten apart)."""
    if not high > low:
        pad = abs(low) * 0.1 or 0.5
        low, high = low - pad, high + pad
    raw = (high - low) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.floor(low / step) * step
    ticks = [first]
    while ticks[-1] < high - 1e-12 * step:
        ticks.append(ticks[-1] + step)
    return [round(t, 12) for t in ticks]


class _Panel:
    """One plot: a title, axes with ticks, a polyline per series, a legend."""

    def __init__(self, x0: float, title: str, series: Series, empty: str, last_step: float) -> None:
        self.x0, self.title, self.series, self.empty = x0, title, series, empty
        points = [p for values in series.values() for p in values]
        ys = [p[1] for p in points] or [0.0, 1.0]
        self.xticks = nice_ticks(0.0, max(last_step, 1.0))
        self.yticks = nice_ticks(min(ys), max(ys))

    def x(self, value: float) -> float:
        low, high = self.xticks[0], self.xticks[-1]
        return self.x0 + (value - low) / (high - low) * _PLOT_W

    def y(self, value: float) -> float:
        low, high = self.yticks[0], self.yticks[-1]
        return _TOP + _PLOT_H - (value - low) / (high - low) * _PLOT_H

    def svg(self) -> list[str]:
        bottom = _TOP + _PLOT_H
        out = [f'<g class="panel" data-title={quoteattr(self.title)}>']
        out.append(f'<text x="{self.x0 + _PLOT_W / 2:.1f}" y="{_TOP - 18}" class="title">{escape(self.title)}</text>')
        out.append(f'<rect x="{self.x0}" y="{_TOP}" width="{_PLOT_W}" height="{_PLOT_H}" class="frame"/>')
        for tick in self.yticks:
            y = self.y(tick)
            out.append(f'<line x1="{self.x0}" y1="{y:.2f}" x2="{self.x0 + _PLOT_W}" y2="{y:.2f}" class="grid"/>')
            out.append(f'<text x="{self.x0 - 6}" y="{y + 4:.2f}" class="ytick">{tick:.4g}</text>')
        for tick in self.xticks:
            x = self.x(tick)
            out.append(f'<line x1="{x:.2f}" y1="{bottom}" x2="{x:.2f}" y2="{bottom + 5}" class="axis"/>')
            out.append(f'<text x="{x:.2f}" y="{bottom + 18}" class="xtick">{tick:.6g}</text>')
        out.append(f'<text x="{self.x0 + _PLOT_W / 2:.1f}" y="{bottom + 38}" class="label">step</text>')
        if not self.series:
            out.append(f'<text x="{self.x0 + _PLOT_W / 2:.1f}" y="{_TOP + _PLOT_H / 2}" class="label">')
            out.append(f"{escape(self.empty)}</text>")
        for index, (name, points) in enumerate(self.series.items()):
            colour = _COLOURS[index % len(_COLOURS)]
            coords = " ".join(f"{self.x(px):.2f},{self.y(py):.2f}" for px, py in points)
            dash = ' stroke-dasharray="6 3"' if name == "loss" else ""
            out.append(
                f'<polyline data-series={quoteattr(name)} points="{coords}" stroke="{colour}"{dash} class="line">'
            )
            out.append(f"<title>{escape(name)}</title></polyline>")
            if len(points) <= 40:
                for px, py in points:
                    out.append(
                        f'<circle cx="{self.x(px):.2f}" cy="{self.y(py):.2f}" r="2.5" fill="{colour}">'
                        f"<title>{escape(name)} at step {px:g}: {py:.6g}</title></circle>"
                    )
            legend_x = self.x0 + (index % 3) * (_PLOT_W / 3)
            legend_y = bottom + 58 + (index // 3) * 16
            out.append(f'<rect x="{legend_x:.1f}" y="{legend_y - 9}" width="12" height="3" fill="{colour}"/>')
            out.append(f'<text x="{legend_x + 16:.1f}" y="{legend_y - 4}" class="legend">{escape(name)}</text>')
        out.append("</g>")
        return out


def training_curves_svg(summary: dict[str, Any], title: str = "") -> str:
    """The SVG document for a run summary (run.json): loss terms per logged step, dev metric per evaluation."""
    main = str(summary.get("main_metric") or "accuracy")
    losses = loss_series(summary.get("train_log") or [])
    dev = dev_series(summary.get("history") or [], main)
    every = ((summary.get("config") or {}).get("training") or {}).get("logging_steps")
    total = int((summary.get("train") or {}).get("steps") or 0)
    steps = [p[0] for series in (*losses.values(), *dev.values()) for p in series]
    last = max([*steps, float(total)])
    empty = f"no loss logged: {total} steps, logging every {every or '?'}"
    if total:
        empty += f" (try --logging-steps {max(1, total // 10)})"
    panels = [
        _Panel(_LEFT, "training loss terms", losses, empty, last),
        _Panel(_LEFT + _PLOT_W + _GAP, f"dev {main}", dev, "no evaluation recorded", last),
    ]
    data = {
        "main_metric": main,
        "loss": {name: [list(p) for p in points] for name, points in losses.items()},
        "dev": {name: [list(p) for p in points] for name, points in dev.items()},
    }
    style = (
        "text{font-family:sans-serif;font-size:11px;fill:#333}.title{font-size:13px;font-weight:bold;"
        "text-anchor:middle}.label{text-anchor:middle}.ytick{text-anchor:end}.xtick{text-anchor:middle}"
        ".frame{fill:none;stroke:#999}.grid{stroke:#e5e5e5}.axis{stroke:#999}"
        ".line{fill:none;stroke-width:1.8}"
    )
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}">',
        f"<title>{escape(title or 'training curves')}</title>",
        f'<metadata id="kdkit-curves">{escape(json.dumps(data))}</metadata>',
        f"<style>{style}</style>",
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
    ]
    for panel in panels:
        lines.extend(panel.svg())
    lines.append("</svg>")
    return "\n".join(lines) + "\n"


def write_training_curves(path: Path, summary: dict[str, Any], title: str = "") -> Path:
    """Write :func:`training_curves_svg` to ``path``; returns ``path``."""
    path.write_text(training_curves_svg(summary, title), encoding="utf-8")
    return path
