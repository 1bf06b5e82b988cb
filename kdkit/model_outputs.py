"""What a loss asks of the models' forward passes, and running them that way.

A loss declares the extra outputs it needs (:class:`kdkit.losses.DistillationLoss`):

- ``needs_student_outputs``: of the student's forward of each training step, handed to the loss as
  ``ctx.student_outputs`` (in the graph);
- ``needs_teacher_outputs``: of a teacher forward run in every step under ``torch.no_grad()``, handed to
  ``loss.live_teacher_signals`` (never cached).

The names are those of transformers' ``output_*`` flags: ``hidden_states`` (a tuple of L + 1 tensors
(B, L_tok, D), the embedding output first, then each layer's output) and ``attentions`` (L tensors
(B, H, L_tok, L_tok), softmax over the last dimension). Only the flags some loss needs are set, so a plain KD
step costs what it did. Attention weights need the eager kernel (SDPA returns none): :func:`attention_kernel`
says which model must run it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import Tensor, nn

from kdkit.attribution import EmbeddingForward, capture_embedding_output
from kdkit.errors import ModelError, PluginError, TrainingError
from kdkit.losses import Batch, DistillationLoss, LossContext

#: the outputs a loss may ask for
OUTPUTS = frozenset({"hidden_states", "attentions"})


def check_needs(loss: type[DistillationLoss] | DistillationLoss) -> None:
    """A :class:`PluginError` when a loss asks for outputs kdkit cannot provide."""
    for attribute in ("needs_student_outputs", "needs_teacher_outputs"):
        unknown = sorted(set(getattr(loss, attribute)) - OUTPUTS)
        if unknown:
            raise PluginError(
                f"loss '{loss.name}' asks for unknown {attribute} {unknown}",
                f"use a subset of {sorted(OUTPUTS)}",
            )


def attention_kernel(loss: type[DistillationLoss], role: str) -> str | None:
    """``"eager"`` when the ``role`` ("student" or "teacher") must run eager attention for ``loss``: its
    attention weights are asked for (SDPA returns none) or, for the student, a double backward (CPU SDPA
    kernels have none); else ``None`` (the model keeps its default kernel)."""
    if role == "student":
        needs = "attentions" in loss.needs_student_outputs or loss.needs_double_backward
    else:
        needs = "attentions" in loss.needs_teacher_outputs
    return "eager" if needs else None


def forward_with_outputs(model: nn.Module, inputs: Mapping[str, Tensor], outputs: frozenset[str], role: str) -> Any:
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
    needs = loss.needs_student_outputs
    if loss.captures_student_embeddings:
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
    compute_cacheable = loss.requires_teacher and not signals
    live = loss.needs_teacher_outputs
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


def num_layers(model: nn.Module) -> int:
    """The number of transformer layers of a transformers model (``config.num_hidden_layers``)."""
    count = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    if not isinstance(count, int) or count < 1:
        raise ModelError(f"{type(model).__name__} has no config.num_hidden_layers", "use a transformers encoder")
    return count


def hidden_size(model: nn.Module) -> int:
    """The width of a transformers model's hidden states (``config.hidden_size``)."""
    size = getattr(getattr(model, "config", None), "hidden_size", None)
    if not isinstance(size, int) or size < 1:
        raise ModelError(f"{type(model).__name__} has no config.hidden_size", "use a transformers encoder")
    return size
