"""Token heatmaps of an :class:`~kdkit.attribution.explain.Explanation`: on a terminal (a rich heatmap, or token
scores as text in a log), as an HTML page and as an SVG picture (``kdkit explain --html/--svg``)."""

from __future__ import annotations

import html
import os
from pathlib import Path

from rich.console import Console
from rich.text import Text

from kdkit.attribution.explain import Explanation
from kdkit.errors import ConfigError, disk_full_error, is_disk_full


def _display_token(token: str) -> tuple[str, bool]:
    """(text, joins the previous token) for WordPiece/BPE pieces."""
    if token.startswith("##"):
        return token[2:], True
    return token.replace("Ġ", "").replace("▁", ""), False


def render_terminal(explanation: Explanation, console: Console, title: str = "") -> None:
    """Print each view as a line of tokens whose background is their share of the attribution; where the
    console shows no colours (a file, a pipe, ``NO_COLOR``), as text: each token with its score."""
    header = f"{title}  " if title else ""
    probs = "  ".join(f"{k}={v:.3f}" for k, v in explanation.probabilities.items())
    console.print(f"{header}prediction: {explanation.prediction}  {probs}", style="bold", markup=False)
    coloured = console.is_terminal and console.color_system is not None
    for view, scores in zip(explanation.views, explanation.maps, strict=True):
        console.print(
            _heat_line(view, explanation.tokens, scores) if coloured else _score_line(view, explanation, scores)
        )


def _heat_line(view: str, tokens: list[str], scores: list[float]) -> Text:
    peak = max(scores) or 1.0
    line = Text(f"{view:>12}: ")
    for token, score in zip(tokens, scores, strict=True):
        text, joined = _display_token(token)
        other = int(255 - 200 * score / peak)
        line.append(("" if joined else " ") + text, style=f"black on rgb(255,{other},{other})")
    return line


def _score_line(view: str, explanation: Explanation, scores: list[float]) -> Text:
    """``view: token(score) token(score) ...`` and the three tokens with the highest scores."""
    words = " ".join(f"{token}({score:.3f})" for token, score in zip(explanation.tokens, scores, strict=True))
    ranked = sorted(zip(scores, explanation.tokens, strict=True), reverse=True)[:3]
    top = ", ".join(f"{token} {score:.3f}" for score, token in ranked)
    return Text(f"{view}: {words}\n{' ' * len(view)}  highest: {top}")


def html_rows(rows: list[tuple[str, Explanation]]) -> str:
    """An HTML table fragment: one row per (label, explanation) and view, tokens shaded by their score."""
    cells = []
    for label, explanation in rows:
        for view, scores in zip(explanation.views, explanation.maps, strict=True):
            peak = max(scores) or 1.0
            spans = []
            for token, score in zip(explanation.tokens, scores, strict=True):
                text, joined = _display_token(token)
                alpha = round(score / peak, 3)
                spans.append(
                    f'<span title="{score:.4f}" style="background: rgba(220, 40, 40, {alpha}); '
                    f'padding: 1px 2px; margin-left: {0 if joined else 3}px">{html.escape(text)}</span>'
                )
            cells.append(
                f"<tr><td><b>{html.escape(label)}</b><br><small>pred: {html.escape(explanation.prediction)}; "
                f"view: {html.escape(view)}</small></td><td style='font-family: monospace'>{''.join(spans)}</td></tr>"
            )
    return "<table style='border-collapse: collapse'>" + "".join(cells) + "</table>"


def write_html(
    path: Path, sections: list[tuple[str, list[tuple[str, Explanation]]]], title: str = "kdkit explain"
) -> Path:
    """Write a self-contained HTML page with one heatmap table per section."""
    body = "".join(f"<h3>{html.escape(heading)}</h3>{html_rows(rows)}" for heading, rows in sections)
    _write(
        path,
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
        f"<body style='font-family: sans-serif'><h2>{html.escape(title)}</h2>"
        "<p>Darker red: a larger share of the prediction's attribution (per-token L2 norm of Integrated "
        "Gradients at the embedding output, normalised over the sentence).</p>"
        f"{body}</body></html>\n",
    )
    return path


def write_svg(path: Path, sections: list[tuple[str, list[tuple[str, Explanation]]]], width: int = 980) -> Path:
    """Write the heatmaps as one SVG image (renders inside markdown pages, unlike HTML).

    One block per section (an input), one line per (label, explanation) view; each token is a box whose
    red intensity is its score divided by the line's largest score. Long lines wrap at ``width`` pixels.
    """
    char_width, line_height, label_width = 7.2, 22, 240
    parts: list[str] = []
    y = 10
    for heading, rows in sections:
        y += 18
        parts.append(f'<text x="4" y="{y}" font-weight="bold">{html.escape(heading[:130])}</text>')
        y += 8
        for label, explanation in rows:
            for view, scores in zip(explanation.views, explanation.maps, strict=True):
                peak = max(scores) or 1.0
                shown = "" if view in (explanation.prediction, "output") else f" [{view}]"
                caption = f"{label}{shown} → {explanation.prediction}"
                parts.append(f'<text x="4" y="{y + 15}" font-size="11">{html.escape(caption[:40])}</text>')
                x = float(label_width)
                for token, score in zip(explanation.tokens, scores, strict=True):
                    text, joined = _display_token(token)
                    box = len(text) * char_width + 6
                    if x + box > width:
                        x, y = float(label_width), y + line_height
                    alpha = round(score / peak, 3)
                    parts.append(
                        f'<rect x="{x:.1f}" y="{y + 2}" width="{box:.1f}" height="{line_height - 4}" '
                        f'fill="rgb(220,40,40)" fill-opacity="{alpha}"><title>{score:.4f}</title></rect>'
                        f'<text x="{x + 3:.1f}" y="{y + 15}" font-family="monospace" font-size="12">'
                        f"{html.escape(text)}</text>"
                    )
                    x += box + (0 if joined else 3)
                y += line_height
        y += 6
    _write(
        path,
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y + 10}" '
        f'font-family="sans-serif" font-size="13"><rect width="100%" height="100%" fill="white"/>'
        + "".join(parts)
        + "</svg>\n",
    )
    return path


def check_output_file(path: Path, flag: str) -> None:
    """Fail before any work if ``path`` (given to ``flag``) cannot be written as a file: a directory, a folder
    under a file, a folder that cannot be written."""
    if path.is_dir():
        example = path / ("heatmap." + flag.removeprefix("--"))
        raise ConfigError(f"{flag} {path} is a directory", f"give a file name, e.g. {flag} {example}")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ConfigError(
            f"{flag} {path} cannot be written: {folder} is a file, not a folder", f"choose another {flag}"
        )
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"{flag} {path} cannot be written: {folder} is not writable", f"choose another {flag}")


def _write(path: Path, text: str) -> None:
    """Write a heatmap file; a location that cannot be written (or a full disk) is one line."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full_error(exc, str(path), "free some space, or write it elsewhere") from None
        raise ConfigError(f"cannot write {path} ({exc.strerror or exc})", "choose another file") from None
