"""Attribution heatmaps: which tokens a model's prediction rests on (``kdkit explain``).

A model's normalised token map for a class c is computed with an attribution provider (``ig`` from the
adkd plugin by default) exactly as AD-KD computes the maps it distils:
a_i = ‖A_{c,i,:}‖₂ over the hidden dimensions, normalised to unit L2 norm over the real tokens
(:func:`kdkit.attribution.token_maps`). Rendered as a rich heatmap in the terminal or as an HTML page.
"""

from __future__ import annotations

import html
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from rich.console import Console
from rich.text import Text
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from kdkit import models, provenance
from kdkit.attribution import AttributionProvider, token_maps
from kdkit.config import DataConfig, build_config, check_finite, parse_set_options
from kdkit.errors import ConfigError, DataError, TruncationWarning, disk_full_error, is_disk_full
from kdkit.plugins import PluginManager, get_plugin_manager
from kdkit.progress import quiet_libraries
from kdkit.tasks import TaskSpec
from kdkit.text_checks import check_text_encoding

Views = Literal["pred", "all"]


@dataclass
class Explanation:
    """One input explained by one model.

    Attributes:
        tokens: the input's tokens (special tokens included, no padding), length L.
        views: what each map explains (a class name, or ``output`` for regression), length V.
        maps: (V, L) normalised token maps (each row has unit L2 norm).
        prediction: the predicted class name (or the regression output as text).
        probabilities: class name -> probability (empty for regression).
    """

    tokens: list[str]
    views: list[str]
    maps: list[list[float]]
    prediction: str
    probabilities: dict[str, float] = field(default_factory=dict)


def load_for_explain(
    model: str | Path, task: TaskSpec | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, TaskSpec, int]:
    """A saved classifier (run or model directory, or a hub id with ``task``), its tokenizer, task (the one
    given, else the recorded one: :mod:`kdkit.provenance`) and max length."""
    quiet_libraries()
    saved = provenance.of_model(model, hub_id_ok=task is not None)
    task = provenance.task_for(saved, task)
    assert saved.model is not None
    classifier = models.load_classifier(saved.model, task, attn_implementation="eager")
    models.freeze(classifier)
    return classifier, models.load_tokenizer(saved.model), task, saved.max_length or DataConfig().max_length


def explain_batch(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    task: TaskSpec,
    provider: AttributionProvider,
    texts: list[str],
    pairs: list[str] | None = None,
    *,
    views: Views = "pred",
    max_length: int = 128,
) -> list[Explanation]:
    """Explain each text (or text pair) with ``provider``; returns one :class:`Explanation` per input.

    An empty text is a :class:`~kdkit.errors.DataError`; texts longer than ``max_length`` tokens are cut there
    with a :class:`~kdkit.errors.TruncationWarning` (as ``kdkit predict`` does)."""
    _check_texts(tokenizer, texts, pairs, max_length)
    encoded = tokenizer(texts, pairs, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    inputs = {k: v for k, v in encoded.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        logits = model(**inputs).logits.float()
    count = logits.shape[0]
    if task.is_regression:
        targets = torch.zeros(count, 1, dtype=torch.long)
        names = [["output"]] * count
    elif views == "all":
        targets = torch.arange(task.num_labels).expand(count, -1)
        names = [list(task.label_names or ())] * count
    else:
        targets = logits.argmax(-1, keepdim=True)
        names = [[(task.label_names or ())[int(t)]] for t in targets[:, 0]]
    attributions = provider.attribute(model, inputs, targets)
    maps = token_maps(attributions.detach(), inputs["attention_mask"])
    out = []
    for i in range(count):
        length = int(inputs["attention_mask"][i].sum())
        tokens = tokenizer.convert_ids_to_tokens(inputs["input_ids"][i, :length].tolist())
        if task.is_regression:
            prediction, probabilities = f"{float(logits[i, 0]):.3f}", {}
        else:
            probs = torch.softmax(logits[i], -1)
            labels = task.label_names or ()
            prediction = labels[int(probs.argmax())]
            probabilities = {labels[c]: round(float(probs[c]), 4) for c in range(len(labels))}
        out.append(
            Explanation(
                tokens=list(tokens),
                views=names[i],
                maps=[[round(float(v), 5) for v in maps[i, view, :length]] for view in range(maps.shape[1])],
                prediction=prediction,
                probabilities=probabilities,
            )
        )
    return out


def explain_text(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    task: TaskSpec,
    provider: AttributionProvider,
    text: str,
    text_pair: str | None = None,
    *,
    views: Views = "pred",
    max_length: int = 128,
) -> Explanation:
    """Explain one text (or text pair, for a sentence-pair task) with ``provider``."""
    if (text_pair is not None) != (len(task.text_fields) == 2):
        raise ConfigError(
            f"task '{task.name}' takes {len(task.text_fields)} text(s)",
            "give a text pair for sentence-pair tasks and one text otherwise",
        )
    pairs = [text_pair] if text_pair is not None else None
    [explanation] = explain_batch(model, tokenizer, task, provider, [text], pairs, views=views, max_length=max_length)
    return explanation


def _check_texts(
    tokenizer: PreTrainedTokenizerBase, texts: list[str], pairs: list[str] | None, max_length: int
) -> None:
    if not texts:
        raise DataError("no text to explain", "give at least one text")
    if pairs is not None and len(pairs) != len(texts):
        raise DataError(f"{len(texts)} texts but {len(pairs)} second texts", "give one second text per text")
    for number, text in enumerate([*texts, *(pairs or [])], start=1):
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"text {number} is empty", "give non-empty text")
    check_text_encoding(texts, pairs)
    lengths = [len(ids) for ids in tokenizer(texts, pairs, truncation=False)["input_ids"]]
    cut = sum(length > max_length for length in lengths)
    if cut:
        warnings.warn(
            f"{cut} of {len(texts)} text(s) are longer than {max_length} tokens and were truncated "
            "(max length from the model's kdkit_task.json)",
            TruncationWarning,
            stacklevel=3,
        )


def get_provider(
    name: str, plugins: PluginManager | None = None, options: dict[str, object] | None = None
) -> AttributionProvider:
    """An attribution provider by name, e.g. ``ig`` (from the adkd plugin), its options validated (one line
    naming a bad option)."""
    plugins = plugins or get_plugin_manager()
    cls = plugins.provider(name)
    check_finite(options or {}, name)
    validated = build_config(cls.Options, options or {}, where=f"{name}.")
    check_finite(validated.model_dump(), name)
    return cls(validated)


def provider_from_set(name: str, assignments: list[str], plugins: PluginManager | None = None) -> AttributionProvider:
    """The provider ``name`` with the options of ``--set NAME.OPTION=VALUE`` assignments (all must name it)."""
    options = parse_set_options(assignments)
    unknown = [component for component in options if component != name]
    if unknown:
        raise ConfigError(f"--set {unknown[0]}.* does not name the provider '{name}'", f"use --set {name}.OPTION=V")
    return get_provider(name, plugins, options.get(name))


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
