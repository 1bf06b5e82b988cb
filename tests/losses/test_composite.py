"""Composite losses (``--plugin kd --plugin hidden``): naming, needs, term rules, cache keys, config, presets."""

from __future__ import annotations

import types
from collections.abc import Mapping
from pathlib import Path

import pytest
import torch
from torch import Tensor

from kdkit import api
from kdkit.cli.flags import read_config_file
from kdkit.config import DistillConfig, build_config
from kdkit.data.tasks import get_task
from kdkit.errors import ConfigError, TrainingError
from kdkit.losses.attention import AttentionLoss
from kdkit.losses.base import Batch, DistillationLoss, LossContext
from kdkit.losses.composite import CompositeLoss, build_loss, composite_class, loss_parts
from kdkit.losses.formulas import task_loss
from kdkit.losses.hidden import HiddenStateLoss
from kdkit.losses.kd import VanillaKD
from kdkit.plugin_api import hookimpl
from kdkit.plugins.manager import PluginManager
from kdkit.plugins.options import resolve_options
from kdkit.testing import BINARY_TASK, REGRESSION_TASK, check_loss, tiny_classifier

#: AD-KD's cache key before composite losses existed (default options): existing caches must stay valid
ADKD_KEY = "logits+attr_map:adkd-v1:views=all:top_k=None:top_k_fraction=None:eps=1e-12:single=True:provider=ig"


class _LogitMSE(DistillationLoss):
    """A third-party loss with its own supervised term (which a composite drops when it comes second)."""

    name = "logit_mse"

    def __call__(
        self, batch: Batch, student_logits: Tensor, teacher_signals: Mapping[str, Tensor], ctx: LossContext
    ) -> dict[str, Tensor]:
        key = "mse" if self.task.is_regression else "ce"
        mse = (student_logits.float() - teacher_signals["logits"]).pow(2).mean()
        return {key: 10.0 * task_loss(self.task, student_logits, batch.labels), "logit_mse": mse}


def _manager() -> PluginManager:
    plugin = types.ModuleType("logit_mse_plugin")
    plugin.kdkit_losses = hookimpl(lambda: [_LogitMSE])  # type: ignore[attr-defined]
    return PluginManager(autoload=False, enable=["adkd"], extra_plugins={"logit_mse": plugin})


def test_a_plus_name_is_a_composite_whose_needs_are_the_union():
    manager = _manager()
    cls = manager.loss("adkd+hidden+attention")
    assert issubclass(cls, CompositeLoss) and cls.name == "adkd+hidden+attention"
    assert loss_parts(cls) == (manager.loss("adkd"), HiddenStateLoss, AttentionLoss)
    assert cls.needs.teacher and cls.needs.double_backward and cls.needs.student_embeddings
    assert cls.needs.token_signals == frozenset({"attr_map"})
    assert cls.needs.student_outputs == cls.needs.teacher_outputs == frozenset({"hidden_states", "attentions"})
    assert cls.presets is manager.loss("adkd").presets  # the primary loss's presets
    assert manager.loss("adkd+hidden+attention") is cls  # one class per combination
    assert set(cls.Options.model_fields) == {"adkd", "hidden", "attention"}
    assert manager.loss("kd") is VanillaKD and loss_parts(VanillaKD) == (VanillaKD,)


@pytest.mark.parametrize(("name", "error"), [("kd+kd", "loss 'kd' is named twice"), ("kd+", "cannot read the loss")])
def test_bad_composite_names(name: str, error: str):
    with pytest.raises(ConfigError, match=error):
        _manager().loss(name)


def test_cache_keys_of_single_losses_are_unchanged_and_composites_share_signals():
    manager = _manager()
    task = get_task("sst2")
    adkd = manager.loss("adkd")
    assert adkd(adkd.Options(), task).teacher_signal_key() == ADKD_KEY
    assert VanillaKD(VanillaKD.Options(), task).teacher_signal_key() == "logits"
    # kd and hidden both cache the teacher's logits only: the composite reads kd's cache file
    kd_hidden = manager.loss("kd+hidden")
    assert build_loss(kd_hidden, {}, task).teacher_signal_key() == "logits"
    assert build_loss(manager.loss("adkd+hidden"), {}, task).teacher_signal_key() == ADKD_KEY + "+logits"


def _terms(loss: DistillationLoss, task=BINARY_TASK) -> dict[str, Tensor]:
    torch.manual_seed(0)
    logits = torch.randn(4, task.num_labels)
    labels = torch.tensor([0.1, 0.5, -0.2, 0.3]) if task.is_regression else torch.tensor([0, 1, 1, 0])
    batch = Batch({"attention_mask": torch.ones(4, 3, dtype=torch.long)}, labels)
    signals = {"logits": torch.randn(4, task.num_labels)}
    ctx = LossContext(task=task, student=tiny_classifier(num_labels=task.num_labels))
    return loss(batch, logits, signals, ctx)


@pytest.mark.parametrize("task", [BINARY_TASK, REGRESSION_TASK])
def test_only_the_primary_loss_keeps_the_supervised_term(task):
    manager = _manager()
    composite = build_loss(manager.loss("kd+logit_mse"), {}, task)
    kd = _terms(VanillaKD(VanillaKD.Options(), task), task)
    mse = _terms(_LogitMSE(_LogitMSE.Options(), task), task)
    terms = _terms(composite, task)
    supervised = "mse" if task.is_regression else "ce"
    assert set(terms) == {supervised, "kd", "logit_mse"}
    torch.testing.assert_close(terms[supervised], kd[supervised])  # kd's (1-alpha)*CE, not logit_mse's 10*CE
    torch.testing.assert_close(terms["logit_mse"], mse["logit_mse"])
    # the other way round, logit_mse's supervised term counts
    reverse = _terms(build_loss(manager.loss("logit_mse+kd"), {}, task), task)
    torch.testing.assert_close(reverse[supervised], mse[supervised])


def test_two_losses_returning_the_same_term_is_an_error():
    composite = build_loss(_manager().loss("kd+adkd"), {"adkd": {"ablation": "no_attr"}}, BINARY_TASK)
    with pytest.raises(TrainingError, match="losses 'kd' and 'adkd' both return a term 'kd'"):
        _terms(composite)


def test_build_loss_passes_each_part_its_options():
    manager = _manager()
    options = {"kd": VanillaKD.Options(alpha=0.9), "hidden": HiddenStateLoss.Options(weight=3.0)}
    loss = build_loss(manager.loss("kd+hidden"), options, BINARY_TASK)
    assert isinstance(loss, CompositeLoss)
    assert [part.options for part in loss.parts] == [options["kd"], options["hidden"]]
    assert build_loss(VanillaKD, options, BINARY_TASK).options is options["kd"]


def test_composites_conform():
    manager = _manager()
    for name in ("kd+hidden", "adkd+hidden", "kd+attention"):
        check_loss(manager.loss(name), plugins=manager)


def test_composite_class_needs_two_losses():
    with pytest.raises(ConfigError, match="two losses or more"):
        composite_class((VanillaKD,))


# -- configuration ----------------------------------------------------------------------------------------


def test_a_list_of_losses_in_a_config_is_a_composite_name(tmp_path: Path):
    assert DistillConfig(loss=["adkd", "hidden"]).loss == "adkd+hidden"  # type: ignore[arg-type]
    assert DistillConfig(loss=["kd"]).loss == "kd"  # type: ignore[arg-type]
    assert DistillConfig().loss == "kd"
    path = tmp_path / "run.yaml"
    path.write_text("loss: [kd, hidden]\noptions:\n  hidden:\n    weight: 2\n")
    config = build_config(DistillConfig, read_config_file(path))
    assert config.loss == "kd+hidden"
    assert config.model_dump(mode="json")["loss"] == "kd+hidden"  # what config.yaml of the run says


def test_the_preset_is_the_primary_losss(tmp_path: Path):
    manager = _manager()
    raw = {
        "loss": ["adkd", "hidden"],
        "preset": "paper",
        "data": {"task": "mrpc"},
        "options": {"hidden": {"weight": 2}},
    }
    config = api.resolve_distill_config(raw, manager)
    assert config.loss == "adkd+hidden"
    assert config.options["adkd"]["beta"] == 10.0 and config.options["hidden"] == {"weight": 2}
    assert config.training.batch_size == 16
    with pytest.raises(ConfigError, match="loss 'hidden' has no preset 'paper'"):
        api.resolve_distill_config({**raw, "loss": ["hidden", "adkd"]}, manager)
    options = resolve_options(manager, config)
    assert set(options) >= {"adkd", "hidden", "ig"} and "adkd+hidden" not in options
