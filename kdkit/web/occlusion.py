"""Occlusion with an export's ONNX model: how much of a prediction each token carries (no torch).

The web page (``kdkit web``, :mod:`kdkit.web`) computes these scores in the browser; this module is the same
computation in Python, on the same ONNX file, and the reference the page is tested against. Definition:

1. ``x`` = the input's token ids as the export's tokenizer gives them (special tokens included, truncated to
   the manifest's ``max_length``), length L; it is run alone (batch 1, as ``kdkit predict --batch-size 1``).
   ``c`` = its predicted class, ``p_c(x)`` that class's softmax probability (regression: the output value).
2. Every position ``i`` whose token is not one of the tokenizer's special tokens ([CLS], [SEP], [PAD], [MASK]
   ...: its added tokens flagged ``special``) is occluded in turn: ``x⁽ⁱ⁾`` is ``x`` with ``x_i`` replaced by
   the occlusion token (the tokenizer's mask token, ``[MASK]``; without one its unknown token); the attention
   mask and token type ids stay as they are, so the length does not change.
3. The ``x⁽ⁱ⁾`` are run in position order, in batches of at most :data:`OCCLUSION_BATCH` (the int8 model
   quantises activations over a whole batch, so the batches are part of the definition).
4. ``score_i = p_c(x) - p_c(x⁽ⁱ⁾)``: positive where hiding the token lowers the predicted class's probability
   (regression: ``y(x) - y(x⁽ⁱ⁾)``). Special tokens are not occluded and score 0.

Imports nothing of torch or transformers (as :mod:`kdkit.export.inference`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from kdkit.errors import ModelError
from kdkit.export.inference import OnnxClassifier, softmax

#: occluded copies per model call, in the page and here
OCCLUSION_BATCH = 32
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
#: tokens tried, in order, when tokenizer_config.json names neither a mask nor an unknown token
_FALLBACK_TOKENS = ("[MASK]", "<mask>", "[UNK]", "<unk>")


@dataclass
class Occlusion:
    """The occlusion scores of one input.

    Attributes:
        tokens, ids: the input's tokens and ids (length L, special tokens included).
        occluded: which positions were occluded (False for special tokens).
        scores: ``p_c(x) - p_c(x⁽ⁱ⁾)`` per position (0 for special tokens).
        label: the predicted class ``c`` (None for regression); ``value``: ``p_c(x)`` (regression: ``y(x)``).
        probabilities: every class's probability for ``x`` (empty for regression); ``logits``: its raw outputs.
    """

    tokens: list[str]
    ids: list[int]
    occluded: list[bool]
    scores: list[float]
    label: str | None
    value: float
    probabilities: dict[str, float] = field(default_factory=dict)
    logits: list[float] = field(default_factory=list)


def _token_setting(settings: dict[str, Any], key: str) -> str | None:
    value = settings.get(key)
    if isinstance(value, dict):  # {"content": "[MASK]", ...} in some tokenizer_config.json files
        value = value.get("content")
    return value if isinstance(value, str) and value else None


def occlusion_token(directory: Path, tokenizer: Tokenizer) -> tuple[str, int]:
    """(token, id) put in place of an occluded token: the mask token of the export's tokenizer_config.json, else
    its unknown token, else the first of [MASK], <mask>, [UNK], <unk> in the vocabulary."""
    path = Path(directory) / TOKENIZER_CONFIG_FILE
    settings: dict[str, Any] = {}
    if path.is_file():
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            loaded = {}
        settings = loaded if isinstance(loaded, dict) else {}
    named = [_token_setting(settings, key) for key in ("mask_token", "unk_token")]
    for token in [*(t for t in named if t), *_FALLBACK_TOKENS]:
        token_id = tokenizer.token_to_id(token)
        if token_id is not None:
            return token, int(token_id)
    raise ModelError(
        f"the tokenizer of {directory} has no mask or unknown token to occlude tokens with",
        "export a model whose tokenizer has a [MASK] or [UNK] token",
    )


def special_ids(tokenizer: Tokenizer) -> list[int]:
    """The ids of the tokenizer's special tokens (its added tokens flagged ``special``), sorted."""
    return sorted(int(i) for i, token in tokenizer.get_added_tokens_decoder().items() if token.special)


def occlude(classifier: OnnxClassifier, text: str, pair: str | None = None) -> Occlusion:
    """The occlusion scores of ``text`` (and ``pair``) with ``classifier``'s model (see the module docstring)."""
    pairs = [pair] if pair is not None else None
    all_logits, _ = classifier.logits([text], pairs, batch_size=1, warn=False)  # checks the input too
    logits = all_logits[0]
    inputs, _ = classifier.encode([text], pairs)
    encoding = classifier.tokenizer.encode(text, pair) if pair is not None else classifier.tokenizer.encode(text)
    _, mask_id = occlusion_token(classifier.directory, classifier.tokenizer)
    special = set(special_ids(classifier.tokenizer))
    ids = [int(i) for i in inputs["input_ids"][0]]
    positions = [i for i, token_id in enumerate(ids) if token_id not in special]
    target = _target(classifier, logits)
    scores = np.zeros(len(ids), dtype=np.float64)
    original = _value(classifier, logits[None, :], target)[0]
    for start in range(0, len(positions), OCCLUSION_BATCH):
        chunk = positions[start : start + OCCLUSION_BATCH]
        batch = {name: np.repeat(array, len(chunk), axis=0) for name, array in inputs.items()}
        batch["input_ids"][np.arange(len(chunk)), chunk] = mask_id
        occluded = np.asarray(classifier.session.run(None, batch)[0], dtype=np.float32)
        scores[chunk] = original - _value(classifier, occluded, target)
    names = classifier.label_names or ()
    probabilities = dict(zip(names, softmax(logits.astype(np.float64)).tolist(), strict=False))
    return Occlusion(
        tokens=list(encoding.tokens[: len(ids)]),
        ids=ids,
        occluded=[token_id not in special for token_id in ids],
        scores=scores.tolist(),
        label=None if classifier.label_names is None else classifier.label_names[target],
        value=float(original),
        probabilities={name: float(p) for name, p in probabilities.items()},  # empty for regression
        logits=logits.tolist(),
    )


def _target(classifier: OnnxClassifier, logits: np.ndarray) -> int:
    return 0 if classifier.label_names is None else int(logits.argmax())


def _value(classifier: OnnxClassifier, logits: np.ndarray, target: int) -> np.ndarray:
    """``p_target`` of each row of (N, C) logits (regression: the output itself), in float64."""
    if classifier.label_names is None:
        return logits[:, 0].astype(np.float64)
    return softmax(logits.astype(np.float64))[:, target]
