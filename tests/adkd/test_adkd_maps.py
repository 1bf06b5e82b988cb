"""Attribution maps: top-K, normalisation, padding, the distance's reduction."""

from __future__ import annotations

import math

import pytest
import torch
from adkd_helpers import THREE_CLASSES, frozen, make_batch, make_model, provider_factory
from kdkit_adkd.ig import IGOptions, IntegratedGradients
from kdkit_adkd.loss import ADKDLoss, ADKDOptions
from kdkit_adkd.maps import map_distance, resolve_top_k

from kdkit.attribution.base import token_maps
from kdkit.losses.base import Batch, LossContext


def test_top_k_keeps_exactly_k_dimensions() -> None:
    torch.manual_seed(0)
    attributions = torch.randn(2, 3, 5, 16, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    maps = token_maps(attributions, mask, top_k=4)
    for b, v, i in [(0, 0, 0), (0, 2, 4), (1, 1, 2)]:
        (grad,) = torch.autograd.grad(maps[b, v, i], attributions, retain_graph=True)
        # the map of token i depends on exactly K of its D values (and, through the normalisation, on the
        # K kept values of the other tokens)
        assert int((grad[b, v, i] != 0).sum()) == 4
        assert all(int((grad[b, v, j] != 0).sum()) in (0, 4) for j in range(5))
    # a_i = ‖4 largest |A_i|‖₂, then normalised over the real tokens
    raw = [
        [
            [
                math.sqrt(sum(x * x for x in sorted(attributions[b, v, i].abs().tolist(), reverse=True)[:4]))
                * int(mask[b, i])
                for i in range(5)
            ]
            for v in range(3)
        ]
        for b in range(2)
    ]
    expected = torch.tensor(raw, dtype=torch.float64)
    expected = expected / expected.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(maps.detach(), expected)


def test_dimensions_outside_the_top_k_do_not_matter() -> None:
    torch.manual_seed(1)
    attributions = torch.randn(1, 1, 4, 10)
    mask = torch.ones(1, 4, dtype=torch.long)
    kept = attributions.abs().topk(3, dim=-1).indices
    shrunk = attributions * 0.5
    shrunk.scatter_(-1, kept, attributions.gather(-1, kept))  # only the top 3 keep their values
    torch.testing.assert_close(token_maps(shrunk, mask, top_k=3), token_maps(attributions, mask, top_k=3))
    assert not torch.allclose(token_maps(shrunk, mask), token_maps(attributions, mask))


def test_k_at_least_the_hidden_size_keeps_all_dimensions() -> None:
    attributions = torch.randn(2, 1, 3, 8)
    mask = torch.ones(2, 3, dtype=torch.long)
    torch.testing.assert_close(token_maps(attributions, mask, top_k=8), token_maps(attributions, mask))
    assert resolve_top_k(384) is None
    assert resolve_top_k(384, top_k=768) is None
    assert resolve_top_k(768, top_k=700) == 700
    assert resolve_top_k(384, top_k_fraction=640 / 768) == 320
    assert resolve_top_k(384, top_k_fraction=1.0) is None
    assert resolve_top_k(384, top_k=100, top_k_fraction=640 / 768) == 100  # an explicit K beats a preset's share


def test_maps_have_unit_norm_over_real_tokens_and_zero_padding() -> None:
    attributions = torch.randn(2, 2, 6, 4)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]])
    maps = token_maps(attributions, mask, top_k=2)
    torch.testing.assert_close(maps.norm(dim=-1), torch.ones(2, 2))
    assert torch.all(maps[1, :, 3:] == 0)
    assert torch.all(maps >= 0)


def test_distance_sums_views_and_averages_real_tokens() -> None:
    teacher = torch.tensor([[[0.6, 0.8, 0.0], [1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0], [0.8, 0.6, 0.0]]])
    student = torch.tensor([[[0.8, 0.6, 0.0], [0.0, 1.0, 0.0]], [[1.0, 0.0, 0.0], [0.6, 0.8, 0.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 0]])
    d = teacher - student
    tokens = 4.0
    assert float(map_distance(teacher, student, mask)) == pytest.approx(float(d.pow(2).sum()) / tokens)
    assert float(map_distance(teacher, student, mask, distance="l1")) == pytest.approx(float(d.abs().sum()) / tokens)
    smooth = torch.where(d.abs() < 1, 0.5 * d.pow(2), d.abs() - 0.5)
    assert float(map_distance(teacher, student, mask, distance="smooth_l1")) == pytest.approx(
        float(smooth.sum()) / tokens
    )
    weights = torch.tensor([1.0, 0.0])
    assert float(map_distance(teacher, student, mask, view_weights=weights)) == pytest.approx(
        float(d[:, 0].pow(2).sum()) / tokens
    )
    assert float(map_distance(teacher, student, mask, token_count=torch.tensor(8.0))) == pytest.approx(
        float(d.pow(2).sum()) / 8.0
    )


@pytest.mark.parametrize(("architecture", "baseline"), [("bert", "zero"), ("roberta", "pad"), ("distilbert", "pad")])
def test_padding_an_example_does_not_change_its_maps(architecture: str, baseline: str) -> None:
    teacher = frozen(make_model(architecture, eager=False))
    student = make_model(architecture, seed=1, num_layers=1)
    pad = int(teacher.config.pad_token_id)
    batch = make_batch(pad, labels=(0, 2))
    length = batch.inputs["input_ids"].shape[1]
    padded = Batch(
        inputs={
            "input_ids": torch.nn.functional.pad(batch.inputs["input_ids"], (0, 5), value=pad),
            "attention_mask": torch.nn.functional.pad(batch.attention_mask, (0, 5)),
        },
        labels=batch.labels,
    )
    loss = ADKDLoss(ADKDOptions(top_k=20), THREE_CLASSES)
    ctx = LossContext(
        task=THREE_CLASSES,
        student=student,
        teacher=teacher,
        provider_factory=provider_factory(steps=2, baseline=baseline),
    )
    with torch.no_grad():
        short = loss.teacher_signals(teacher, batch, ctx)["attr_map"]
        long = loss.teacher_signals(teacher, padded, ctx)["attr_map"]
    torch.testing.assert_close(long[..., :length], short)
    assert torch.all(long[..., length:] == 0)
    # the student's maps (differentiable path)
    provider = IntegratedGradients(IGOptions(steps=2, baseline=baseline))  # type: ignore[arg-type]
    targets = torch.tensor([[0, 1, 2]] * 2)
    short_s = token_maps(provider.attribute(student, batch.inputs, targets, create_graph=True), batch.attention_mask)
    long_s = token_maps(provider.attribute(student, padded.inputs, targets, create_graph=True), padded.attention_mask)
    torch.testing.assert_close(long_s[..., :length], short_s)
    assert torch.all(long_s[..., length:] == 0)
