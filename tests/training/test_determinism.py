"""Issue 21: the same command with the same seed (and thread count) gives the same model, bit for bit, on CPU; another
seed gives another one. A study that pairs methods by seed relies on it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from kdkit import api
from kdkit.config import DataConfig, DistillConfig, FinetuneConfig, TrainingConfig
from kdkit.plugins.manager import PluginManager


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "best" / "model.safetensors"))


def _identical(a: Path, b: Path) -> bool:
    first, second = _weights(a), _weights(b)
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def _training(seed: int) -> TrainingConfig:
    return TrainingConfig(epochs=2, batch_size=16, learning_rate=1e-3, seed=seed)


def test_finetune_twice_with_one_seed_gives_the_same_teacher(tiny_csv, tmp_path):
    # a base encoder without a head: the head is initialised afresh (from the global RNG, before the fix)
    from kdkit.testing.models import tiny_classifier, tiny_tokenizer

    base = tmp_path / "base"
    tokenizer = tiny_tokenizer(base)
    tiny_classifier("bert", vocab_size=len(tokenizer)).bert.save_pretrained(base)
    data = DataConfig(train_file=tiny_csv[0], validation_file=tiny_csv[1], max_length=32)
    runs = {}
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        config = FinetuneConfig(model=str(base), data=data, training=_training(seed), output=tmp_path / name)
        torch.manual_seed(1000 + len(runs))  # whatever the global RNG holds before the command
        api.finetune(config.model_copy(update={"quiet": True}), plugins=PluginManager(autoload=False))
        runs[name] = tmp_path / name
    assert _identical(runs["a"], runs["b"])
    assert not _identical(runs["a"], runs["c"])


@pytest.mark.parametrize("loss", ["kd", "adkd"])
def test_distill_twice_with_one_seed_gives_the_same_student(loss, tiny_csv, tiny_teacher, tmp_path):
    data = DataConfig(train_file=tiny_csv[0], validation_file=tiny_csv[1], max_length=32)  # length-grouped batches
    manager = PluginManager(autoload=False, enable=["adkd"])
    runs = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        config = DistillConfig(
            loss=loss,
            teacher=str(tiny_teacher),
            student="copy:1",
            data=data,
            training=_training(seed),
            output=tmp_path / name,
            quiet=True,
        )
        torch.manual_seed(2000 + len(runs))
        api.distill(config, plugins=manager)
        runs[name] = tmp_path / name
    assert _identical(runs["a"], runs["b"])
    assert not _identical(runs["a"], runs["c"])


def test_every_loss_sees_the_same_batches_in_the_same_order_within_a_seed(
    tiny_csv, tiny_teacher, tmp_path, monkeypatch
):
    """The GLUE studies pair methods by seed: CE, KD and AD-KD must draw the same batches, epoch after epoch (a
    loss that used the global RNG, e.g. dropout in an extra forward, must not shift the next epoch's order)."""
    from transformers.trainer_pt_utils import LengthGroupedSampler

    orders: list[tuple[int, list[int]]] = []  # (sampler, order): Trainer groups evaluation batches by length too
    original = LengthGroupedSampler.__iter__

    def recording(self: LengthGroupedSampler):  # type: ignore[no-untyped-def]
        order = list(original(self))
        orders.append((id(self), order))
        return iter(order)

    monkeypatch.setattr(LengthGroupedSampler, "__iter__", recording)
    data = DataConfig(train_file=tiny_csv[0], validation_file=tiny_csv[1], max_length=32)
    manager = PluginManager(autoload=False, enable=["adkd"])
    seen = {}
    for loss in ("ce", "kd", "adkd"):
        orders.clear()
        config = DistillConfig(
            loss=loss,
            teacher=str(tiny_teacher),
            student="copy:1",
            data=data,
            training=TrainingConfig(epochs=3, batch_size=16, learning_rate=1e-3, seed=5),
            output=tmp_path / loss,
            quiet=True,
        )
        api.distill(config, plugins=manager)
        training = orders[0][0]  # the first sampler iterated is the training one
        seen[loss] = [order for sampler, order in orders if sampler == training]
    assert len(seen["kd"]) == 3 and seen["kd"][0] != seen["kd"][1]  # a new order each epoch
    assert seen["ce"] == seen["kd"] == seen["adkd"]
