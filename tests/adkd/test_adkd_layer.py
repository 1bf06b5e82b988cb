"""Attribution at an intermediate layer (the paper's Table 3): ``ig.layer=N`` for the student, the teacher's
layer from a layer map (``adkd.teacher_layer``), cache keys, and the default left as it was."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from adkd_helpers import THREE_CLASSES, frozen, make_batch, make_model, provider_factory
from kdkit_adkd.ig import IGOptions, IntegratedGradients
from kdkit_adkd.loss import ADKDLoss, ADKDOptions
from torch import Tensor, nn

from kdkit.attribution.base import (
    AttributionProvider,
    EmbeddingForward,
    capture_embedding_output,
    class_scores,
    token_maps,
)
from kdkit.errors import ConfigError, PluginError
from kdkit.losses.base import LossContext
from kdkit.models.layers import layer_list
from kdkit.testing import check_loss, run_distillation_steps

TARGETS = torch.tensor([[0, 2], [1, 1], [2, 0]])


def reference_ig(model: nn.Module, inputs: dict[str, Tensor], layer: int, steps: int) -> Tensor:
    """IG at layer N's output with a zero baseline, written out: H · (1/m) Σ_k ∂F(α_k H)/∂(α_k H), one path point
    at a time (H from transformers' own ``hidden_states``, the path by a hook on the layer written here)."""
    with torch.no_grad():
        hidden = model(**inputs, output_hidden_states=True).hidden_states[layer]
    block = layer_list(model)[1][layer - 1]
    total = torch.zeros(hidden.shape[0], TARGETS.shape[1], *hidden.shape[1:])
    for k in range(1, steps + 1):
        point = (k / steps * hidden).requires_grad_(True)
        handle = block.register_forward_hook(lambda _m, _a, out, p=point: p if not isinstance(out, tuple) else (p,))
        try:
            scores = class_scores(model(**inputs).logits, TARGETS)
        finally:
            handle.remove()
        for v in range(TARGETS.shape[1]):
            (grad,) = torch.autograd.grad(scores[:, v].sum(), point, retain_graph=True)
            total[:, v] += grad
    return hidden.unsqueeze(1) * total / steps * inputs["attention_mask"][:, None, :, None]


@pytest.mark.parametrize("architecture", ["bert", "distilbert", "roberta"])
@pytest.mark.parametrize(("layer", "steps"), [(1, 1), (2, 1), (2, 3)])
def test_ig_at_a_layer_equals_the_definition(architecture: str, layer: int, steps: int):
    model = frozen(make_model(architecture, num_layers=3))
    inputs = make_batch().inputs
    provider = IntegratedGradients(IGOptions(steps=steps, layer=layer))
    got = provider.attribute(model, inputs, TARGETS)
    torch.testing.assert_close(got, reference_ig(model, inputs, layer, steps), rtol=1e-4, atol=1e-6)
    assert float(got.abs().sum()) > 0


def test_ig_at_a_layer_ignores_a_forward_captured_at_the_embeddings_and_is_differentiable():
    model = make_model(num_layers=3)
    inputs = make_batch().inputs
    provider = IntegratedGradients(IGOptions(layer=2))
    with capture_embedding_output(model) as captured:
        logits = model(**inputs).logits
    assert captured.tensor is not None
    forward = EmbeddingForward(captured.tensor, logits)  # layer None: not reusable at layer 2
    with_forward = provider.attribute(model, inputs, TARGETS, create_graph=True, forward=forward)
    alone = provider.attribute(model, inputs, TARGETS, create_graph=True)
    torch.testing.assert_close(with_forward, alone)
    grads = torch.autograd.grad(with_forward.pow(2).sum(), list(model.parameters()), allow_unused=True)
    assert any(g is not None and bool((g != 0).any()) for g in grads)


def test_ig_cache_key_names_the_layer_only_when_not_the_embeddings():
    assert IntegratedGradients(IGOptions()).cache_key() == "ig:steps=1:baseline=zero"
    assert IntegratedGradients(IGOptions(layer="embeddings")).layer is None
    assert IntegratedGradients(IGOptions(layer=2)).cache_key() == "ig:steps=1:baseline=zero:layer=2"


def test_ig_layer_is_validated_and_pad_baseline_needs_the_embeddings():
    with pytest.raises(ValueError):
        IGOptions(layer=0)
    model = frozen(make_model(num_layers=3))
    with pytest.raises(PluginError, match="baseline=pad.*not defined at layer 2"):
        IntegratedGradients(IGOptions(layer=2, baseline="pad")).attribute(model, make_batch().inputs, TARGETS)


class _NoLayer(AttributionProvider):
    """A provider without a ``layer`` option: it attributes at the embeddings only."""

    name = "no_layer"

    def attribute(self, model, inputs, targets, *, create_graph=False, forward=None):  # type: ignore[no-untyped-def]
        return inputs["attention_mask"][:, None, :, None].float().expand(-1, targets.shape[1], -1, 1)


def test_at_layer_copies_a_provider_and_refuses_providers_without_layers():
    provider = IntegratedGradients(IGOptions(steps=2))
    moved = provider.at_layer(4)
    assert moved.layer == 4 and provider.layer is None and moved.options.steps == 2
    assert provider.at_layer(None) is provider and moved.at_layer(None).layer is None
    plain = _NoLayer()
    assert plain.layer is None and plain.at_layer(None) is plain
    with pytest.raises(PluginError, match="'no_layer' cannot attribute at layer 3"):
        plain.at_layer(3)


# -- AD-KD: the teacher's layer -------------------------------------------------------------------------------


def _adkd(options: ADKDOptions, student_layers: int, layer: int | str) -> tuple[ADKDLoss, LossContext]:
    loss = ADKDLoss(options, THREE_CLASSES)
    teacher, student = frozen(make_model(num_layers=6, seed=0)), make_model(num_layers=student_layers, seed=1)
    ctx = LossContext(THREE_CLASSES, student, teacher, provider_factory=provider_factory(layer=layer))
    loss.prepare(ctx)
    return loss, ctx


@pytest.mark.parametrize(("student_layers", "layer", "teacher_layer"), [(3, 2, 4), (3, 1, 2), (4, 3, 5), (4, 1, 2)])
def test_adkd_maps_the_students_layer_to_the_teachers_uniformly(student_layers, layer, teacher_layer):
    loss, ctx = _adkd(ADKDOptions(), student_layers, layer)
    assert loss.teacher_layer == teacher_layer
    assert loss.teacher_signal_key().endswith(f":provider=ig:teacher_layer={teacher_layer}")
    batch = make_batch()
    with torch.no_grad():
        maps = loss.teacher_signals(ctx.teacher, batch, ctx)["attr_map"]
    every_class = torch.arange(3).expand(3, 3)  # views=all: one map per class
    expected = IntegratedGradients(IGOptions(layer=teacher_layer)).attribute(ctx.teacher, batch.inputs, every_class)
    torch.testing.assert_close(maps, token_maps(expected, batch.attention_mask))
    assert not torch.allclose(maps, loss_at_embeddings_maps(ctx, batch))


def test_adkd_teacher_layer_can_be_explicit_and_is_checked():
    loss, _ = _adkd(ADKDOptions(teacher_layer=3), 3, 2)
    assert loss.teacher_layer == 3
    with pytest.raises(ConfigError, match="adkd.teacher_layer=7, but the teacher has 6 layers"):
        _adkd(ADKDOptions(teacher_layer=7), 3, 2)
    with pytest.raises(ConfigError, match="ig.layer=4, but the student has 3 layers"):
        _adkd(ADKDOptions(), 3, 4)


def loss_at_embeddings_maps(ctx: LossContext, batch) -> Tensor:  # type: ignore[no-untyped-def]
    expected = IntegratedGradients(IGOptions()).attribute(ctx.teacher, batch.inputs, torch.arange(3).expand(3, 3))
    return token_maps(expected, batch.attention_mask)


def test_adkd_at_the_embeddings_keeps_its_cache_key():
    loss, _ = _adkd(ADKDOptions(), 3, layer="embeddings")
    assert loss.teacher_layer is None
    assert loss.teacher_signal_key() == ADKDLoss(ADKDOptions(), THREE_CLASSES).teacher_signal_key()
    assert loss.teacher_signal_key().endswith(":provider=ig")


def test_adkd_at_a_layer_conforms_and_trains(tmp_path: Path):
    check_loss(ADKDLoss, provider_options={"ig": {"layer": 1}})
    result = run_distillation_steps(
        loss="adkd", options={"ig": {"layer": 1}}, enable=["adkd"], steps=2, directory=tmp_path
    )
    assert result.summary["options"]["ig"]["layer"] == 1
    assert all("loss_attr" in entry for entry in result.summary["train_log"] if "loss" in entry)
