"""The forward passes of one training step, run the way the loss asks (:class:`~kdkit.losses.base.LossNeeds`).

- the student's forward, with the extra outputs of ``needs.student_outputs`` (handed to the loss as
  ``ctx.student_outputs``, in the graph) and its embedding output captured for ``needs.student_embeddings``;
- the teacher's signals: the cached ones (or ``loss.teacher_signals`` when nothing is cached), plus
  ``loss.live_teacher_signals`` of a teacher forward with ``needs.teacher_outputs`` (no grad, never cached).

The names are those of transformers' ``output_*`` flags: ``hidden_states`` (a tuple of L + 1 tensors
(B, L_tok, D), the embedding output first, then each layer's output) and ``attentions`` (L tensors
(B, H, L_tok, L_tok), softmax over the last dimension). Only the flags some loss needs are set, so a plain KD
step costs what it did.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import Tensor, nn

from kdkit.attribution.base import EmbeddingForward, capture_embedding_output
from kdkit.errors import ModelError, TrainingError
from kdkit.losses.base import Batch, DistillationLoss, LossContext


def forward_with_outputs(model: nn.Module, inputs: Mapping[str, Tensor], outputs: AbstractSet[str], role: str) -> Any:
    """``model(**inputs)`` with ``output_<name>=True`` for each name in ``outputs``; checks they came back."""
    flags = {f"output_{name}": True for name in sorted(outputs)}
    result = model(**inputs, **flags)
    for name in sorted(outputs):
        if not getattr(result, name, None):
            kernel = getattr(getattr(model, "config", None), "_attn_implementation", "?")
            fix = (
                f"the {role} runs '{kernel}' attention, which returns no weights: kdkit switches it to eager when a "
                "loss declares 'attentions'; set it with model.set_attn_implementation('eager')"
                if name == "attentions"
                else f"use a transformers model that supports output_{name}"
            )
            raise ModelError(f"the {role} returned no {name}", fix)
    return result


def student_step_forward(model: nn.Module, batch: Batch, loss: DistillationLoss, ctx: LossContext) -> Any:
    """The student's forward of a training step: the outputs ``loss`` needs, its embedding output captured
    when it asks (``ctx.student_forward``); sets ``ctx.student_outputs`` and returns it."""
    needs = loss.needs.student_outputs
    if loss.needs.student_embeddings:
        with capture_embedding_output(ctx.student) as captured:
            outputs = forward_with_outputs(model, batch.inputs, needs, "student")
        assert captured.tensor is not None
        ctx.student_forward = EmbeddingForward(captured.tensor, outputs.logits)
    else:
        outputs = forward_with_outputs(model, batch.inputs, needs, "student")
    ctx.student_outputs = outputs
    return outputs


def step_teacher_signals(
    loss: DistillationLoss,
    teacher: nn.Module | None,
    batch: Batch,
    cached: Mapping[str, Tensor],
    ctx: LossContext,
    autocast: Callable[[], AbstractContextManager[Any]] = nullcontext,
) -> dict[str, Tensor]:
    """The teacher signals of a step: the cached ones (or ``loss.teacher_signals`` when nothing is cached),
    plus ``loss.live_teacher_signals`` of a teacher forward with the outputs the loss needs."""
    signals = dict(cached)
    compute_cacheable = loss.needs.teacher and not signals
    live = loss.needs.teacher_outputs
    if not (compute_cacheable or live):
        return signals
    if teacher is None:
        raise TrainingError("the loss needs teacher signals but there is no teacher", "give --teacher")
    with torch.no_grad(), autocast():
        if compute_cacheable:
            signals = dict(loss.teacher_signals(teacher, batch, ctx))
        if live:
            outputs = forward_with_outputs(teacher, batch.inputs, live, "teacher")
            signals.update(loss.live_teacher_signals(outputs, batch, ctx))
    return signals
