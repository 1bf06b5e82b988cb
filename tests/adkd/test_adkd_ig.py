"""The ``ig`` provider: Integrated Gradients at the embedding block's output, on several architectures."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from adkd_helpers import ARCHITECTURES, make_batch, make_model
from kdkit_adkd.ig import IGOptions, IntegratedGradients
from torch import Tensor, nn

from kdkit.attribution.base import EmbeddingForward, capture_embedding_output, class_scores, embedding_block


def _width(model: nn.Module) -> int:
    """D of the embedding block's output: the embedding size before ALBERT's (and ELECTRA's) projection."""
    config = model.config
    return int(getattr(config, "embedding_size", None) or getattr(config, "hidden_size", None) or config.dim)


def _embedding_output(model: nn.Module, **inputs: Tensor) -> Tensor:
    with torch.no_grad(), capture_embedding_output(model) as captured:
        model(**inputs)
    assert captured.tensor is not None
    return captured.tensor


def _pad_baseline_by_hand(model: nn.Module, ids: Tensor, mask: Tensor) -> Tensor:
    """E' from a forward of all-[PAD] ids with the real positions passed explicitly."""
    pad = int(model.config.pad_token_id)
    positions = torch.arange(ids.shape[1]).expand_as(ids)
    if model.config.model_type == "roberta":  # RoBERTa numbers positions from padding_idx + 1
        positions = positions + pad + 1
    return _embedding_output(model, input_ids=torch.full_like(ids, pad), attention_mask=mask, position_ids=positions)


def _sequential_ig(model: nn.Module, ids: Tensor, mask: Tensor, targets: Tensor, steps: int, baseline: str) -> Tensor:
    """IG one example, one class and one path point at a time, each example without padding."""
    batch, length = ids.shape
    out = torch.zeros(
        batch,
        targets.shape[1],
        length,
        _width(model),
        dtype=torch.float64,
    )
    for b in range(batch):
        n = int(mask[b].sum())
        x, m = ids[b : b + 1, :n], mask[b : b + 1, :n]
        e = _embedding_output(model, input_ids=x, attention_mask=m)
        e0 = torch.zeros_like(e) if baseline == "zero" else _pad_baseline_by_hand(model, x, m)
        for v, c in enumerate(targets[b].tolist()):
            total = torch.zeros_like(e)
            for k in range(1, steps + 1):
                point = (e0 + (k / steps) * (e - e0)).detach().requires_grad_(True)
                handle = embedding_block(model).register_forward_hook(lambda _m, _a, _o, p=point: p)
                try:
                    logits = model(input_ids=x, attention_mask=m).logits
                finally:
                    handle.remove()
                (grad,) = torch.autograd.grad(torch.log_softmax(logits.double(), -1)[0, c], point)
                total = total + grad
            out[b, v, :n] = ((e - e0) * total / steps)[0].double()
    return out


@pytest.mark.parametrize(
    ("architecture", "baseline"),
    [
        ("bert", "zero"),
        ("bert", "pad"),
        ("roberta", "pad"),
        ("distilbert", "pad"),
        ("electra", "zero"),
        ("deberta-v2", "pad"),
        ("albert", "pad"),
        ("modernbert", "pad"),
    ],
)
def test_batched_ig_equals_the_sequential_definition(architecture: str, baseline: str) -> None:
    model = make_model(architecture, double=True)
    batch = make_batch(int(model.config.pad_token_id))
    targets = torch.tensor([[0, 1, 2], [2, 0, 1], [1, 1, 0]])
    # 3 path points x 3 examples = 9 rows in chunks of 4: chunks cut across path points and examples
    provider = IntegratedGradients(IGOptions(steps=3, baseline=baseline, batch_size=4))  # type: ignore[arg-type]
    got = provider.attribute(model, batch.inputs, targets)
    ids, mask = batch.inputs["input_ids"], batch.attention_mask
    assert got.shape == (3, 3, ids.shape[1], _width(model))
    assert not got.requires_grad
    assert torch.all(got.transpose(1, 2)[mask == 0] == 0), "padding positions must be exactly zero"
    expected = _sequential_ig(model, ids, mask, targets, 3, baseline)
    torch.testing.assert_close(got, expected, rtol=1e-7, atol=1e-10)


def test_embedding_block_is_found_without_attribute_paths() -> None:
    for architecture in ARCHITECTURES:
        model = make_model(architecture)
        block = embedding_block(model)
        assert any(child is model.get_input_embeddings() for child in block.children())


@pytest.mark.parametrize("architecture", ["bert", "electra"])
def test_completeness_at_64_steps(architecture: str) -> None:
    """Σ_{i,j} IG_c = F_c(E) - F_c(E') within 1% (the right Riemann sum's error is O(1/m))."""
    model = make_model(architecture, double=True, perturb=False)
    batch = make_batch(int(model.config.pad_token_id))
    targets = torch.tensor([[0, 1, 2]] * 3)
    provider = IntegratedGradients(IGOptions(steps=64, baseline="pad", batch_size=256))
    attributions = provider.attribute(model, batch.inputs, targets)
    with torch.no_grad():
        scores = class_scores(model(**batch.inputs).logits.double(), targets)
        from kdkit_adkd.ig import pad_baseline

        from kdkit.attribution.base import replace_embedding_output

        base = pad_baseline(model, batch.inputs)
        with replace_embedding_output(model, lambda _e: base):
            base_scores = class_scores(model(**batch.inputs).logits.double(), targets)
    difference = (scores - base_scores).double()
    total = attributions.sum(dim=(2, 3))
    assert difference.abs().min() > 1e-4  # a non-trivial difference to explain
    assert torch.all((total - difference).abs() <= 0.01 * difference.abs())


def test_completeness_error_shrinks_like_one_over_m() -> None:
    model = make_model("bert", double=True)
    batch = make_batch()
    targets = torch.tensor([[0], [1], [2]])
    with torch.no_grad():
        scores = class_scores(model(**batch.inputs).logits.double(), targets)
        from kdkit.attribution.base import replace_embedding_output

        with replace_embedding_output(model, torch.zeros_like):
            base_scores = class_scores(model(**batch.inputs).logits.double(), targets)
    errors = []
    for steps in (8, 64):
        attributions = IntegratedGradients(IGOptions(steps=steps)).attribute(model, batch.inputs, targets)
        errors.append(float((attributions.sum(dim=(2, 3)) - (scores - base_scores)).abs().max()))
    assert errors[1] < errors[0] / 4


@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("baseline", ["zero", "pad"])
def test_reusing_the_step_forward_changes_nothing(steps: int, baseline: str) -> None:
    model = make_model("bert", double=True)
    batch = make_batch()
    targets = torch.tensor([[0, 1, 2]] * 3)
    provider = IntegratedGradients(IGOptions(steps=steps, baseline=baseline))  # type: ignore[arg-type]
    with capture_embedding_output(model) as captured:
        logits = model(**batch.inputs).logits
    assert captured.tensor is not None
    forward = EmbeddingForward(captured.tensor, logits)
    with_forward = provider.attribute(model, batch.inputs, targets, create_graph=True, forward=forward)
    without = provider.attribute(model, batch.inputs, targets, create_graph=True)
    torch.testing.assert_close(with_forward, without)
    assert with_forward.requires_grad and with_forward.grad_fn is not None


def test_create_graph_makes_attributions_differentiable_in_the_parameters() -> None:
    model = make_model("roberta")
    batch = make_batch(int(model.config.pad_token_id))
    provider = IntegratedGradients(IGOptions(steps=2, baseline="pad"))
    attributions = provider.attribute(model, batch.inputs, torch.tensor([[0], [1], [2]]), create_graph=True)
    grads = torch.autograd.grad(attributions.pow(2).sum(), list(model.parameters()), allow_unused=True)
    layer_grads = [g for (name, _), g in zip(model.named_parameters(), grads) if "layer" in name and g is not None]
    assert layer_grads and any(float(g.abs().sum()) > 0 for g in layer_grads)


def test_regression_explains_the_single_output() -> None:
    model = make_model("bert", num_labels=1, double=True)
    batch = make_batch()
    provider = IntegratedGradients(IGOptions())
    attributions = provider.attribute(model, batch.inputs, torch.zeros(3, 1, dtype=torch.long))
    e = _embedding_output(model, **batch.inputs)
    e_leaf = e.clone().requires_grad_(True)
    handle = embedding_block(model).register_forward_hook(lambda *_: e_leaf)
    try:
        output = model(**batch.inputs).logits
    finally:
        handle.remove()
    (grad,) = torch.autograd.grad(output.sum(), e_leaf)
    expected = (e * grad * batch.attention_mask[..., None]).unsqueeze(1)
    torch.testing.assert_close(attributions, expected.to(attributions.dtype))


def test_options_are_validated() -> None:
    from pydantic import ValidationError

    bad: list[dict[str, Any]] = [{"steps": 0}, {"baseline": "mean"}, {"batch_size": 0}, {"unknown": 1}]
    for options in bad:
        with pytest.raises(ValidationError):
            IGOptions(**options)
    assert IntegratedGradients(IGOptions(batch_size=8)).cache_key() == IntegratedGradients().cache_key()
    assert IntegratedGradients(IGOptions(steps=2)).cache_key() != IntegratedGradients().cache_key()
