"""Tests of the occlusion provider, written with kdkit's plugin test kit (kdkit.testing)."""

from __future__ import annotations

from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import pytest
import torch
from kdkit_occlusion import plugin
from kdkit_occlusion.provider import Occlusion, OcclusionOptions
from transformers import AutoModelForSequenceClassification, PreTrainedModel

from kdkit.plugin_api import ModelError, PluginError, PluginManager, class_scores
from kdkit.testing import TINY_MASK_ID, check_attribution_provider, check_loss, model_inputs, run_distillation_steps


@pytest.mark.parametrize("options", [{"token_id": TINY_MASK_ID}, {"replacement": "pad", "batch_size": 5}])
def test_occlusion_conforms(options: dict[str, object]) -> None:
    provider = Occlusion(OcclusionOptions(**options))  # type: ignore[arg-type]
    check_attribution_provider(provider, architectures=("bert", "roberta", "distilbert"))


def test_a_score_is_the_drop_in_log_probability(kdkit_tiny_classifier: Callable[..., PreTrainedModel]) -> None:
    model = kdkit_tiny_classifier("bert", num_labels=3)
    inputs = model_inputs(model, (6, 4))
    targets = torch.tensor([[2, 0], [1, 1]])
    scores = Occlusion(OcclusionOptions(token_id=TINY_MASK_ID)).attribute(model, inputs, targets)
    assert scores.shape == (2, 2, 6, 1)
    example, token = 1, 2
    alone = {key: value[example : example + 1, :4] for key, value in inputs.items()}
    occluded = {**alone, "input_ids": alone["input_ids"].clone()}
    occluded["input_ids"][0, token] = TINY_MASK_ID
    with torch.no_grad():
        before = class_scores(model(**alone).logits, targets[example : example + 1])
        after = class_scores(model(**occluded).logits, targets[example : example + 1])
    assert torch.allclose(scores[example, :, token, 0], (before - after)[0], atol=1e-5)
    assert torch.all(scores[1, :, 4:] == 0)  # padding


def test_chunk_size_does_not_change_the_scores(kdkit_tiny_classifier: Callable[..., PreTrainedModel]) -> None:
    model = kdkit_tiny_classifier("bert", num_labels=2)
    inputs = model_inputs(model, (9, 3, 6))
    targets = torch.tensor([[0], [1], [0]])
    one_by_one = Occlusion(OcclusionOptions(token_id=TINY_MASK_ID, batch_size=1)).attribute(model, inputs, targets)
    all_at_once = Occlusion(OcclusionOptions(token_id=TINY_MASK_ID)).attribute(model, inputs, targets)
    assert torch.allclose(one_by_one, all_at_once, atol=1e-5)


def test_the_mask_id_comes_from_the_tokenizer_saved_with_the_model(kdkit_tiny_teacher: Path) -> None:
    teacher = AutoModelForSequenceClassification.from_pretrained(kdkit_tiny_teacher)
    assert Occlusion().replacement_id(teacher) == TINY_MASK_ID
    assert Occlusion(OcclusionOptions(replacement="pad")).replacement_id(teacher) == teacher.config.pad_token_id


def test_missing_mask_id_and_create_graph_are_one_line_errors(
    kdkit_tiny_classifier: Callable[..., PreTrainedModel],
) -> None:
    model = kdkit_tiny_classifier("bert")  # built in memory: no tokenizer to ask
    with pytest.raises(ModelError, match="occlusion.token_id=ID"):
        Occlusion().replacement_id(model)
    inputs = model_inputs(model, (4,))
    with pytest.raises(PluginError, match="not differentiable"):
        Occlusion(OcclusionOptions(token_id=4)).attribute(model, inputs, torch.zeros(1, 1).long(), create_graph=True)


def test_the_plugin_provides_occlusion(kdkit_plugin_manager: Callable[..., PluginManager]) -> None:
    manager = kdkit_plugin_manager(plugin)
    assert manager.provider("occlusion") is Occlusion
    assert not Occlusion.differentiable


def test_the_entry_point_is_installed() -> None:
    entry_points = {ep.name: ep for ep in metadata.entry_points(group="kdkit")}
    assert "occlusion" in entry_points, "install the plugin first: pip install -e examples/kdkit-occlusion"
    assert entry_points["occlusion"].value == "kdkit_occlusion.plugin"
    assert entry_points["occlusion"].dist is not None and entry_points["occlusion"].dist.name == "kdkit-occlusion"


def test_adkd_distils_with_occlusion_for_the_teacher(tmp_path: Path) -> None:
    pytest.importorskip("kdkit_adkd", reason="the AD-KD plugin is not installed")
    from kdkit_adkd.ig import IntegratedGradients
    from kdkit_adkd.loss import ADKDLoss

    check_loss(
        ADKDLoss,
        {"teacher_provider": "occlusion"},
        plugins={"ig": IntegratedGradients, "occlusion": Occlusion},
        provider_options={"occlusion": {"token_id": TINY_MASK_ID}},
    )
    result = run_distillation_steps(
        plugin, loss="adkd", enable=["adkd"], options={"adkd": {"teacher_provider": "occlusion"}}, directory=tmp_path
    )
    assert result.summary["options"]["occlusion"] == {"replacement": "mask", "token_id": None, "batch_size": 256}
    assert all(entry["loss_attr"] > 0 for entry in result.summary["train_log"])
