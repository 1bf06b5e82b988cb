"""Attribution heatmaps: which tokens a model's prediction rests on (``kdkit explain``).

A model's normalised token map for a class c is computed with an attribution provider (``ig`` from the
adkd plugin by default) exactly as AD-KD computes the maps it distils:
a_i = ‖A_{c,i,:}‖₂ over the hidden dimensions, normalised to unit L2 norm over the real tokens
(:func:`kdkit.attribution.base.token_maps`). Rendered as a rich heatmap in the terminal or as an HTML page.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from kdkit.attribution.base import AttributionProvider, token_maps
from kdkit.config import DataConfig
from kdkit.data.tasks import TaskSpec
from kdkit.data.texts import check_text_encoding
from kdkit.errors import ConfigError, DataError, TruncationWarning
from kdkit.models.loading import freeze, load_classifier, load_tokenizer, quiet_libraries
from kdkit.records.provenance import of_model, task_for

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
    given, else the recorded one: :mod:`kdkit.records.provenance`) and max length."""
    quiet_libraries()
    saved = of_model(model, hub_id_ok=task is not None)
    task = task_for(saved, task)
    assert saved.model is not None
    classifier = load_classifier(saved.model, task, attn_implementation="eager")
    freeze(classifier)
    return classifier, load_tokenizer(saved.model), task, saved.max_length or DataConfig().max_length


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
