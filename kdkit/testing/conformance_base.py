"""What the conformance checks share: the report, the error, tolerant comparison and the tiny test batch.

The checks themselves: :mod:`kdkit.testing.conformance_provider` (attribution providers) and
:mod:`kdkit.testing.conformance_loss` (losses); :mod:`kdkit.testing` names them.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from kdkit.data.batching import MODEL_INPUTS
from kdkit.data.tasks import TaskSpec
from kdkit.losses.base import Batch
from kdkit.models.checks import position_limit
from kdkit.testing.models import (
    TINY_CLS_ID,
    TINY_SEP_ID,
)

#: real-token lengths of the examples of the test batch (right-padded to the longest)
BATCH_LENGTHS: tuple[int, ...] = (7, 4, 5, 2)


@dataclass
class ConformanceReport:
    """What a conformance check verified.

    Attributes:
        component: the component's name.
        checks: one line per rule that held (architecture or task included).
    """

    component: str
    checks: list[str] = field(default_factory=list)

    def passed(self, rule: str) -> None:
        self.checks.append(rule)


class ConformanceError(AssertionError):
    """A component broke a rule of its interface (an :class:`AssertionError`, so pytest shows it plainly)."""


def fail(component: str, where: str, message: str) -> ConformanceError:
    """The error to raise: ``component [where]: message``."""
    return ConformanceError(f"{component} [{where}]: {message}")


def difference(actual: Tensor, expected: Tensor, *, atol: float, rtol: float) -> str | None:
    """None when close, else a description of the largest difference (atol scales with |expected|)."""
    if actual.shape != expected.shape:
        return f"shape {tuple(actual.shape)} instead of {tuple(expected.shape)}"
    a = actual.detach().double()
    b = expected.detach().double()
    scale = max(1.0, float(b.abs().max())) if b.numel() else 1.0
    gap = (a - b).abs()
    allowed = atol * scale + rtol * b.abs()
    if bool((gap <= allowed).all()):
        return None
    return f"max |difference| {float(gap.max()):.3g} (values up to {float(b.abs().max()):.3g})"


# -- inputs ---------------------------------------------------------------------------------------------


def _accepts_token_type_ids(model: nn.Module) -> bool:
    return "token_type_ids" in inspect.signature(model.forward).parameters


def pad_id(model: nn.Module) -> int:
    """The model's ``config.pad_token_id`` (0 when it has none)."""
    pad = getattr(getattr(model, "config", None), "pad_token_id", None)
    return int(pad) if pad is not None else 0


def token_rows(lengths: Sequence[int], vocab_size: int, pad: int, seed: int = 0) -> list[list[int]]:
    """[CLS] w ... w [SEP] rows of the given lengths, words drawn from the non-special ids."""
    rng = random.Random(seed)
    words = [i for i in range(5, vocab_size) if i != pad]
    rows = []
    for length in lengths:
        if length < 2:
            rows.append([rng.choice(words) for _ in range(length)])
        else:
            rows.append([TINY_CLS_ID, *(rng.choice(words) for _ in range(length - 2)), TINY_SEP_ID])
    return rows


def model_inputs(model: nn.Module, lengths: Sequence[int], *, seed: int = 0) -> dict[str, Tensor]:
    """A right-padded batch for ``model``: ``input_ids``, ``attention_mask`` (and ``token_type_ids`` when the
    model takes them), each (B, L) with L = max(lengths)."""
    pad = pad_id(model)
    config: Any = model.config
    vocab = int(config.vocab_size)
    rows = token_rows(lengths, vocab, pad, seed)
    width = max(lengths)
    inputs = {
        "input_ids": torch.tensor([r + [pad] * (width - len(r)) for r in rows]),
        "attention_mask": torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows]),
    }
    if _accepts_token_type_ids(model):
        inputs["token_type_ids"] = torch.zeros_like(inputs["input_ids"])
    return inputs


def longest_length(model: nn.Module) -> int:
    """The longest input ``model`` accepts (:func:`kdkit.export.hf_layout.position_limit`: its position embeddings, two
    fewer for RoBERTa-style models; for relative positions only, ``max_position_embeddings`` still)."""
    config: Any = model.config
    limit = position_limit(config)
    return int(config.max_position_embeddings) if limit is None else limit


def batch_features(task: TaskSpec, lengths: Sequence[int], vocab_size: int, pad: int) -> list[dict[str, Any]]:
    """Unpadded features (``input_ids``, ``attention_mask``, ``token_type_ids``, ``labels``) of the given lengths."""
    rows = token_rows(lengths, vocab_size, pad, seed=3)
    features = []
    for index, row in enumerate(rows):
        label: Any = 0.25 * index - 0.3 if task.is_regression else index % task.num_labels
        features.append(
            {"input_ids": row, "attention_mask": [1] * len(row), "token_type_ids": [0] * len(row), "labels": label}
        )
    return features


def as_batch(collated: Mapping[str, Tensor]) -> Batch:
    """The :class:`~kdkit.losses.base.Batch` of a collated batch."""
    return Batch(inputs={k: collated[k] for k in MODEL_INPUTS if k in collated}, labels=collated["labels"])
