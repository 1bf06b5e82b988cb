"""Hook specifications: the contract between kdkit and its plugins.

kdkit is a pluggy project named ``kdkit``. A plugin is any module or object with functions marked
``@kdkit.hookimpl`` whose names match the specs below. Built-in plugins are registered directly; external
ones are found through the ``kdkit`` entry-point group (see :mod:`kdkit.plugins`).

Each hook is called once per plugin manager, with no arguments, and returns component *classes*; kdkit
instantiates them with their validated options. Component names (losses and attribution providers
together) must be unique: they are also the keys of ``--set NAME.OPTION=VALUE``.

docs/plugins.md documents every hook with an example; a test checks that it does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from kdkit.attribution import AttributionProvider
    from kdkit.losses import DistillationLoss

PROJECT_NAME = "kdkit"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def kdkit_losses() -> list[type[DistillationLoss]]:  # type: ignore[empty-body]
    """Contribute distillation losses.

    Returns:
        A list of :class:`kdkit.losses.DistillationLoss` subclasses. Each class sets

        - ``name``: the name users select with ``kdkit distill --plugin NAME``;
        - ``Options``: a pydantic model of its options (``--set NAME.OPTION=VALUE``);
        - ``requires_teacher`` / ``needs_double_backward`` / ``token_signals``: what the trainer must
          provide (a frozen teacher; a student whose attention supports a second-order backward; which
          teacher signals are per token and get padded with the batch);
        - ``needs_student_outputs`` / ``needs_teacher_outputs``: the extra model outputs it needs,
          ``"hidden_states"`` and/or ``"attentions"``; the trainer sets those ``output_*`` flags only (eager
          attention where weights are asked for), hands the student's outputs over as
          ``ctx.student_outputs`` and runs the teacher live for ``live_teacher_signals``;

        and implements ``__call__(batch, student_logits, teacher_signals, ctx) -> dict[str, Tensor]``,
        returning named, already-weighted scalar loss terms that the trainer sums, backpropagates and
        logs one by one. What the teacher contributes comes in two kinds: ``teacher_signals(teacher, batch,
        ctx)``, small per example (logits by default, attribution maps), computed once and cached on disk
        (or on the fly); and ``live_teacher_signals(teacher_outputs, batch, ctx)``, computed in every step from
        a teacher forward with ``needs_teacher_outputs`` (per-layer hidden states and attentions: too large
        to cache for a whole data set). ``prepare(ctx)`` runs once with both models before training, and
        ``trainable_modules()`` names modules (a projection) that kdkit trains and checkpoints with the
        student but never saves with it. Several losses can share a run (``--plugin adkd --plugin hidden``,
        :mod:`kdkit.composite`).

    Called once when the plugin manager collects components (at CLI start, or on first use from Python).
    """


@hookspec
def kdkit_attribution_providers() -> list[type[AttributionProvider]]:  # type: ignore[empty-body]
    """Contribute attribution providers.

    Returns:
        A list of :class:`kdkit.attribution.AttributionProvider` subclasses. Each class sets ``name``,
        ``Options`` (a pydantic model) and ``differentiable`` (True when it can build a graph for a
        second-order backward, so a loss may differentiate through the student's attributions), and
        implements::

            attribute(model, inputs, targets, *, create_graph=False, forward=None) -> Tensor

        where ``inputs`` are the model inputs of a batch (``input_ids``/``attention_mask``: (B, L)),
        ``targets`` is a (B, V) long tensor of the classes to explain (V views; ignored for regression,
        where V = 1), and the result is a (B, V, L, D) tensor of attributions at the output of the model's
        embedding block, with D the hidden size (or D = 1 for providers that score whole tokens).
        Padding positions must be exactly zero. A provider with a ``layer`` option (``embeddings`` or N)
        attributes at transformer layer N's output instead (``layer``, ``at_layer()``).

    Called once when the plugin manager collects components.
    """
