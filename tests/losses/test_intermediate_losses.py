"""Golden values and gradients of the ``hidden`` and ``attention`` losses on tiny models.

Each loss, run the way the trainer runs it (prepare, live teacher signals, the student's outputs in the
context), is compared with the formula written out here with plain loops over the pairs, examples, heads
and real tokens, on the models' own ``hidden_states`` / ``attentions``; values and gradients (student
parameters and the projection) must agree. Teachers are 6 layers deep, students 3 or 4 (uneven maps).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn

from kdkit.errors import ConfigError, ModelError, TrainingError
from kdkit.losses.attention import AttentionLoss, AttentionOptions
from kdkit.losses.base import Batch, DistillationLoss, LossContext
from kdkit.losses.hidden import HiddenOptions, HiddenStateLoss
from kdkit.testing import BINARY_TASK, check_loss, model_inputs, perturb_parameters, tiny_classifier
from kdkit.training.step import forward_with_outputs, student_step_forward

LENGTHS = (7, 4, 6, 2)


def models(
    student_layers: int, *, student_width: int = 32, attn: str | None = None, heads: int = 2, dropout: float = 0.0
) -> tuple[nn.Module, nn.Module]:
    """(teacher, student): a frozen 6-layer tiny BERT and a ``student_layers``-deep one, both eval mode."""
    teacher = perturb_parameters(tiny_classifier("bert", num_layers=6, seed=0, attn_implementation=attn))
    teacher.requires_grad_(False)
    student = tiny_classifier(
        "bert", num_layers=student_layers, hidden_size=student_width, num_heads=heads, seed=1, attn_implementation=attn
    )
    student.config.attention_probs_dropout_prob = dropout
    for module in student.modules():
        if type(module).__name__ == "BertSelfAttention":
            module.dropout.p = dropout
    return teacher.eval(), perturb_parameters(student, seed=1).eval()


def run_loss(loss: DistillationLoss, teacher: nn.Module, student: nn.Module, inputs: dict[str, Tensor]) -> Tensor:
    """The loss's single term, computed as kdkit's trainer does."""
    batch = Batch(inputs, torch.zeros(inputs["input_ids"].shape[0], dtype=torch.long))
    ctx = LossContext(task=BINARY_TASK, student=student, teacher=teacher)
    loss.prepare(ctx)
    with torch.no_grad():
        outputs = forward_with_outputs(teacher, inputs, loss.needs.teacher_outputs, "teacher")
        live = loss.live_teacher_signals(outputs, batch, ctx)
    logits = student_step_forward(student, batch, loss, ctx).logits
    [term] = loss(batch, logits, live, ctx).values()
    return term


def grads(value: Tensor, parameters: list[nn.Parameter]) -> list[Tensor]:
    return [
        g if g is not None else torch.zeros_like(p)
        for g, p in zip(torch.autograd.grad(value, parameters, allow_unused=True), parameters, strict=True)
    ]


def assert_same_value_and_gradients(term: Tensor, reference: Tensor, parameters: list[nn.Parameter]) -> None:
    assert float(term.detach()) > 0
    torch.testing.assert_close(term, reference.to(term.dtype), rtol=1e-5, atol=1e-7)
    got, expected = grads(term, parameters), grads(reference, parameters)
    assert any(bool((g != 0).any()) for g in expected)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-7)


# -- hidden ----------------------------------------------------------------------------------------------------


def reference_hidden(
    student_states: Any,
    teacher_states: Any,
    pairs: list[tuple[int, int]],
    mask: Tensor,
    project: nn.Module | None,
    weight: float,
) -> Tensor:
    """weight · 1/(P·N·D_t) Σ_k Σ_{b, i real} ‖W h^s_{k,b,i} + c − h^t_{t(k),b,i}‖², written out."""
    total = torch.zeros((), dtype=torch.float64)
    width = teacher_states[0].shape[-1]
    for k, t in pairs:
        for b in range(mask.shape[0]):
            for i in range(int(mask[b].sum())):
                s = student_states[k][b, i]
                s = project(s) if project is not None else s
                total = total + ((s - teacher_states[t][b, i]) ** 2).sum().double()
    return weight * total / (len(pairs) * int(mask.sum()) * width)


def reference_hidden_cls(
    student_states: Any, teacher_states: Any, pairs: list[tuple[int, int]], project: nn.Module | None, weight: float
) -> Tensor:
    """PKD: weight · 1/(P·B) Σ_k Σ_b ‖ŝ − t̂‖² on the [CLS] states, x̂ = x/‖x‖."""
    total = torch.zeros((), dtype=torch.float64)
    size = teacher_states[0].shape[0]
    for k, t in pairs:
        for b in range(size):
            s = student_states[k][b, 0]
            s = project(s) if project is not None else s
            x = teacher_states[t][b, 0]
            total = total + ((s / s.norm() - x / x.norm()) ** 2).sum().double()
    return weight * total / (len(pairs) * size)


@pytest.mark.parametrize(
    ("student_layers", "pairs"), [(4, [(1, 2), (2, 3), (3, 5), (4, 6)]), (3, [(1, 2), (2, 4), (3, 6)])]
)
@pytest.mark.parametrize("student_width", [24, 32])
def test_hidden_golden_tokens(student_layers: int, pairs: list[tuple[int, int]], student_width: int):
    teacher, student = models(student_layers, student_width=student_width)
    inputs = model_inputs(teacher, LENGTHS)
    loss = HiddenStateLoss(HiddenOptions(weight=0.7), BINARY_TASK)
    term = run_loss(loss, teacher, student, inputs)
    assert (loss.projection is not None) == (student_width != 32)
    with torch.no_grad():
        teacher_states = teacher(**inputs, output_hidden_states=True).hidden_states
    student_states = student(**inputs, output_hidden_states=True).hidden_states
    reference = reference_hidden(student_states, teacher_states, pairs, inputs["attention_mask"], loss.projection, 0.7)
    parameters = [*student.parameters(), *(loss.projection.parameters() if loss.projection is not None else [])]
    assert_same_value_and_gradients(term, reference, parameters)


def test_hidden_golden_cls_pkd():
    teacher, student = models(4, student_width=24)
    inputs = model_inputs(teacher, LENGTHS)
    loss = HiddenStateLoss(HiddenOptions(weight=2.0, target="cls"), BINARY_TASK)
    term = run_loss(loss, teacher, student, inputs)
    with torch.no_grad():
        teacher_states = teacher(**inputs, output_hidden_states=True).hidden_states
    student_states = student(**inputs, output_hidden_states=True).hidden_states
    pairs = [(1, 2), (2, 3), (3, 5), (4, 6)]
    reference = reference_hidden_cls(student_states, teacher_states, pairs, loss.projection, 2.0)
    assert_same_value_and_gradients(term, reference, [*student.parameters(), *loss.projection.parameters()])


def test_hidden_explicit_layer_map_with_the_embeddings():
    teacher, student = models(3)
    inputs = model_inputs(teacher, LENGTHS)
    loss = HiddenStateLoss(HiddenOptions(layers=[0, 1, 6]), BINARY_TASK)
    term = run_loss(loss, teacher, student, inputs)
    with torch.no_grad():
        teacher_states = teacher(**inputs, output_hidden_states=True).hidden_states
    student_states = student(**inputs, output_hidden_states=True).hidden_states
    reference = reference_hidden(
        student_states, teacher_states, [(1, 0), (2, 1), (3, 6)], inputs["attention_mask"], None, 1.0
    )
    assert_same_value_and_gradients(term, reference, list(student.parameters()))


def test_hidden_ignores_padding():
    """More padding columns (and garbage ids under them) change nothing."""
    teacher, student = models(3)
    inputs = model_inputs(teacher, LENGTHS)
    padded = {key: torch.cat([value, value[:, :3].clone()], dim=1) for key, value in inputs.items()}
    padded["attention_mask"][:, -3:] = 0
    padded["input_ids"][:, -3:] = 7
    loss = HiddenStateLoss(HiddenOptions(), BINARY_TASK)
    torch.testing.assert_close(run_loss(loss, teacher, student, padded), run_loss(loss, teacher, student, inputs))


def test_hidden_layer_map_is_checked_against_the_models():
    teacher, student = models(3)
    loss = HiddenStateLoss(HiddenOptions(layers=[2, 4]), BINARY_TASK)
    with pytest.raises(ConfigError, match="hidden.layers lists 2 teacher layers for a student with 3"):
        loss.prepare(LossContext(task=BINARY_TASK, student=student, teacher=teacher))


def test_hidden_projection_is_deterministic_and_only_for_different_widths():
    teacher, student = models(3, student_width=24)
    first, second = (HiddenStateLoss(HiddenOptions(), BINARY_TASK) for _ in range(2))
    for loss in (first, second):
        loss.prepare(LossContext(task=BINARY_TASK, student=student, teacher=teacher))
    assert first.projection is not None and second.projection is not None
    assert (first.projection.in_features, first.projection.out_features) == (24, 32)
    torch.testing.assert_close(first.projection.weight, second.projection.weight)
    assert set(first.trainable_modules()) == {"projection"}


# -- attention ---------------------------------------------------------------------------------------------


def reference_attention(
    student_att: Any,
    teacher_att: Any,
    pairs: list[tuple[int, int]],
    mask: Tensor,
    weight: float,
    mean_heads: bool = False,
) -> Tensor:
    """weight · 1/(P·H·N) Σ_k Σ_h Σ_{b, i real} Σ_{j real} t·(log t − log s), written out."""
    total = torch.zeros((), dtype=torch.float64)
    heads = 1 if mean_heads else student_att[0].shape[1]
    for k, t in pairs:
        s_layer, t_layer = student_att[k - 1], teacher_att[t - 1]
        if mean_heads:
            s_layer, t_layer = s_layer.mean(1, keepdim=True), t_layer.mean(1, keepdim=True)
        for b in range(mask.shape[0]):
            n = int(mask[b].sum())
            for h in range(heads):
                for i in range(n):
                    p, q = t_layer[b, h, i, :n], s_layer[b, h, i, :n]
                    total = total + (p * (p.log() - q.log())).sum().double()
    return weight * total / (len(pairs) * heads * int(mask.sum()))


@pytest.mark.parametrize(
    ("student_layers", "pairs"), [(3, [(1, 2), (2, 4), (3, 6)]), (4, [(1, 2), (2, 3), (3, 5), (4, 6)])]
)
def test_attention_golden(student_layers: int, pairs: list[tuple[int, int]]):
    teacher, student = models(student_layers, attn="eager")
    inputs = model_inputs(teacher, LENGTHS)
    loss = AttentionLoss(AttentionOptions(weight=0.5), BINARY_TASK)
    term = run_loss(loss, teacher, student, inputs)
    with torch.no_grad():
        teacher_att = teacher(**inputs, output_attentions=True).attentions
    student_att = student(**inputs, output_attentions=True).attentions
    reference = reference_attention(student_att, teacher_att, pairs, inputs["attention_mask"], 0.5)
    assert_same_value_and_gradients(term, reference, list(student.parameters()))


def test_attention_golden_head_mean_with_different_head_counts():
    teacher, student = models(3, attn="eager", heads=4)
    inputs = model_inputs(teacher, LENGTHS)
    with pytest.raises(ConfigError, match="the student has 4 attention heads, the teacher 2.*attention.heads=mean"):
        run_loss(AttentionLoss(AttentionOptions(), BINARY_TASK), teacher, student, inputs)
    term = run_loss(AttentionLoss(AttentionOptions(heads="mean"), BINARY_TASK), teacher, student, inputs)
    with torch.no_grad():
        teacher_att = teacher(**inputs, output_attentions=True).attentions
    student_att = student(**inputs, output_attentions=True).attentions
    pairs = [(1, 2), (2, 4), (3, 6)]
    reference = reference_attention(student_att, teacher_att, pairs, inputs["attention_mask"], 1.0, mean_heads=True)
    assert_same_value_and_gradients(term, reference, list(student.parameters()))


def test_attention_turns_off_the_students_attention_dropout():
    """In training mode transformers returns the weights after dropout: not distributions."""
    teacher, student = models(3, attn="eager", dropout=0.5)
    inputs = model_inputs(teacher, LENGTHS)
    batch = Batch(inputs, torch.zeros(len(LENGTHS), dtype=torch.long))
    loss = AttentionLoss(AttentionOptions(), BINARY_TASK)
    student.train()
    ctx = LossContext(task=BINARY_TASK, student=student, teacher=teacher)
    with torch.no_grad():
        live = loss.live_teacher_signals(teacher(**inputs, output_attentions=True), batch, ctx)
    logits = student_step_forward(student, batch, loss, ctx).logits
    with pytest.raises(TrainingError, match="attention rows do not sum to 1.*dropout"):
        loss(batch, logits, live, ctx)
    loss.prepare(ctx)
    logits = student_step_forward(student, batch, loss, ctx).logits
    assert torch.isfinite(loss(batch, logits, live, ctx)["attention"])
    assert student.bert.encoder.layer[0].attention.self.dropout.p == 0.0
    assert student.bert.encoder.layer[0].attention.output.dropout.p > 0  # hidden dropout stays


def test_sdpa_attention_returns_no_weights_and_says_so():
    teacher, _ = models(3, attn="sdpa")
    inputs = model_inputs(teacher, LENGTHS)
    with pytest.raises(ModelError, match="the teacher returned no attentions.*'sdpa' attention.*eager"):
        forward_with_outputs(teacher, inputs, frozenset({"attentions"}), "teacher")


@pytest.mark.parametrize(
    ("loss", "options"),
    [
        (HiddenStateLoss, {"weight": 0.5}),
        (HiddenStateLoss, {"target": "cls"}),
        (AttentionLoss, {}),
        (AttentionLoss, {"heads": "mean"}),
    ],
)
def test_intermediate_losses_conform(loss: type[DistillationLoss], options: dict[str, Any]):
    report = check_loss(loss, options)
    assert any("live teacher signals" in line for line in report.checks)
