"""AD-KD with the teacher's maps from another provider (``adkd.teacher_provider``), e.g. one without
gradients: the student keeps the differentiable ``ig``."""

from __future__ import annotations

import types
from typing import Any

import pytest
import torch
from adkd_helpers import THREE_CLASSES, TWO_CLASSES, frozen, make_batch, make_model
from datasets import Dataset
from kdkit_adkd.ig import IntegratedGradients
from kdkit_adkd.loss import ADKDLoss, ADKDOptions
from torch import Tensor, nn

from kdkit.attribution.base import AttributionProvider, EmbeddingForward, capture_embedding_output
from kdkit.errors import PluginError
from kdkit.losses.base import LossContext
from kdkit.plugin_api import hookimpl
from kdkit.plugins.options import provider_factory
from kdkit.testing import check_attribution_provider, check_loss, run_distillation_steps


class EmbeddingValues(AttributionProvider):
    """A gradient-free stand-in for a teacher-only provider: the embedding output itself, (B, V, L, D)."""

    name = "embedding_values"
    description = "the embedding block's output (tests)"

    def attribute(
        self,
        model: nn.Module,
        inputs: dict[str, Tensor],
        targets: Tensor,
        *,
        create_graph: bool = False,
        forward: EmbeddingForward | None = None,
    ) -> Tensor:
        with torch.no_grad(), capture_embedding_output(model) as captured:
            model(**inputs)
        assert captured.tensor is not None
        values = captured.tensor.detach() * inputs["attention_mask"][:, :, None].to(captured.tensor.dtype)
        return values[:, None].expand(-1, targets.shape[1], -1, -1).clone()


PROVIDERS: dict[str, type[AttributionProvider]] = {"ig": IntegratedGradients, "embedding_values": EmbeddingValues}


def _context(teacher: nn.Module, student: nn.Module, task: Any = THREE_CLASSES) -> LossContext:
    return LossContext(task, student, teacher, provider_factory=provider_factory(PROVIDERS.__getitem__, {}))


def test_the_stand_in_provider_conforms() -> None:
    check_attribution_provider(EmbeddingValues)


def test_adkd_with_a_teacher_only_provider_conforms() -> None:
    report = check_loss(ADKDLoss, {"teacher_provider": "embedding_values", "top_k": 8}, plugins=PROVIDERS)
    assert "tiny3: the teacher-signal cache reproduces the live signals" in report.checks


def test_teacher_maps_come_from_the_teacher_provider() -> None:
    teacher = frozen(make_model("bert", eager=False))
    student = make_model("bert", seed=1, num_layers=1)
    batch = make_batch()
    ctx = _context(teacher, student)
    with torch.no_grad():
        own = ADKDLoss(ADKDOptions(teacher_provider="embedding_values"), THREE_CLASSES).teacher_signals(
            teacher, batch, ctx
        )
        default = ADKDLoss(ADKDOptions(), THREE_CLASSES).teacher_signals(teacher, batch, ctx)
    assert own["attr_map"].shape == default["attr_map"].shape == (3, 3, 7)
    assert torch.equal(own["logits"], default["logits"])
    assert not torch.allclose(own["attr_map"], default["attr_map"])
    with torch.no_grad(), capture_embedding_output(teacher) as captured:
        teacher(**batch.inputs)
    assert captured.tensor is not None
    expected = torch.linalg.vector_norm(captured.tensor, dim=-1) * batch.attention_mask
    expected = expected / torch.linalg.vector_norm(expected, dim=-1, keepdim=True)
    assert torch.allclose(own["attr_map"][:, 0], expected, atol=1e-6)


def test_providers_used_key_and_the_default() -> None:
    default = ADKDLoss(ADKDOptions(), THREE_CLASSES)
    same = ADKDLoss(ADKDOptions(teacher_provider="ig"), THREE_CLASSES)
    other = ADKDLoss(ADKDOptions(teacher_provider="embedding_values"), THREE_CLASSES)
    assert default.providers_used() == same.providers_used() == ["ig"]
    assert other.providers_used() == ["ig", "embedding_values"]
    assert default.teacher_signal_key() == same.teacher_signal_key()  # earlier caches stay valid
    assert default.teacher_signal_key() + ":teacher_provider=embedding_values" == other.teacher_signal_key()
    assert ADKDLoss(ADKDOptions(teacher_provider="embedding_values", beta=0), THREE_CLASSES).providers_used() == []

    from kdkit.training.teacher_cache import cache_key

    teacher = frozen(make_model("bert", eager=False))
    data = Dataset.from_dict({"input_ids": [[2, 10, 3]], "attention_mask": [[1, 1, 1]], "labels": [0]})
    ctx = _context(teacher, teacher)
    assert cache_key(teacher, data, default, ctx) == cache_key(teacher, data, same, ctx)
    assert cache_key(teacher, data, default, ctx) != cache_key(teacher, data, other, ctx)


def test_the_student_provider_must_be_differentiable_and_is_checked_first() -> None:
    teacher = frozen(make_model("bert", eager=False))
    student = make_model("bert", seed=1, num_layers=1)
    loss = ADKDLoss(ADKDOptions(provider="embedding_values"), THREE_CLASSES)
    with torch.no_grad(), pytest.raises(PluginError, match="not differentiable.*teacher_provider=embedding_values"):
        loss.teacher_signals(teacher, make_batch(), _context(teacher, student))


def test_two_classes_keep_both_views_when_one_side_has_unequal_views() -> None:
    teacher = frozen(make_model("bert", num_labels=2, eager=False))
    student = make_model("bert", num_labels=2, seed=1, num_layers=1)
    batch = make_batch(labels=(0, 1, 1))
    ctx = _context(teacher, student, TWO_CLASSES)
    mixed = ADKDLoss(ADKDOptions(teacher_provider="embedding_values"), TWO_CLASSES)
    with torch.no_grad():
        signals = mixed.teacher_signals(teacher, batch, ctx)
    assert signals["attr_map"].shape[1] == 2  # ig alone would give one view at m = 1
    logits = student(**batch.inputs).logits
    targets, weights = mixed.views(
        logits, batch.labels, signals["logits"], ctx.provider("ig"), other=ctx.provider("embedding_values")
    )
    assert targets.shape == (3, 2) and weights.tolist() == [0.5, 0.5]
    alone, _ = mixed.views(logits, batch.labels, signals["logits"], ctx.provider("ig"))
    assert alone.shape == (3, 1)  # unchanged behaviour when both sides use ig


def test_a_short_run_records_both_providers(tmp_path: Any) -> None:
    plugin = types.ModuleType("teacher_only_plugin")

    def kdkit_attribution_providers() -> list[type[AttributionProvider]]:
        return [EmbeddingValues]

    plugin.kdkit_attribution_providers = hookimpl(kdkit_attribution_providers)  # type: ignore[attr-defined]
    result = run_distillation_steps(
        plugin,
        loss="adkd",
        enable=["adkd"],
        options={"adkd": {"teacher_provider": "embedding_values"}},
        steps=2,
        directory=tmp_path,
    )
    summary = result.summary
    assert summary["options"]["adkd"]["teacher_provider"] == "embedding_values"
    assert set(summary["options"]) >= {"adkd", "ig", "embedding_values"}
    assert all("loss_attr" in entry for entry in summary["train_log"])
