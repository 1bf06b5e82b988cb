"""Temperature annealing (the AD-KD reference's ``kd_anneal``): the schedule, step by step in training, and
across ``--resume``."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import kdkit_adkd.loss
import pytest
from kdkit_adkd.presets import paper_preset

import kdkit.losses.kd
from kdkit import api
from kdkit.config import DataConfig, DistillConfig, TrainingConfig
from kdkit.losses.base import LossContext
from kdkit.losses.formulas import annealed_temperature
from kdkit.plugins.manager import PluginManager
from kdkit.training.trainer import DistillationTrainer

#: the tiny CSV (96 rows) in batches of 16: 6 optimiser steps per epoch
STEPS_PER_EPOCH = 6


def hand_schedule(start: float, epochs: int) -> list[float]:
    """T of every step, written out: the reference decays T by (T - 1)/(E - 1) at each epoch's start."""
    drop = (start - 1.0) / (epochs - 1)
    return [start - drop * (step // STEPS_PER_EPOCH) for step in range(epochs * STEPS_PER_EPOCH)]


def test_annealed_temperature_is_linear_from_t_to_one():
    assert [annealed_temperature(4.0, e, 4) for e in range(4)] == [4.0, 3.0, 2.0, 1.0]
    assert [annealed_temperature(3.0, e, 5) for e in range(5)] == [3.0, 2.5, 2.0, 1.5, 1.0]
    assert annealed_temperature(4.0, 0, 1) == 4.0  # one epoch: no room to decay (the reference divides by 0)
    assert annealed_temperature(0.5, 1, 2) == 1.0  # T below 1 rises to 1


def test_paper_preset_anneals_exactly_where_the_reference_does():
    annealed = {task for task in ("cola", "mnli", "sst2", "qnli", "mrpc", "qqp", "rte", "stsb")}
    annealed = {task for task in annealed if paper_preset(task)["options"]["adkd"]["anneal"]}
    assert annealed == {"mnli", "mrpc", "qqp"}


def _record_temperatures(monkeypatch: pytest.MonkeyPatch, module: Any) -> list[tuple[int, float]]:
    """Patch ``module.step_temperature`` to record (step, T) of each training step's KD term."""
    seen: list[tuple[int, float]] = []
    original = module.step_temperature

    def recording(start: float, anneal: bool, ctx: LossContext) -> float:
        value = original(start, anneal, ctx)
        seen.append((ctx.step, value))
        return value

    monkeypatch.setattr(module, "step_temperature", recording)
    return seen


def _config(tiny_csv: tuple[Path, Path], teacher: Path, output: Path, loss: str, **extra: Any) -> DistillConfig:
    options = {loss: {"temperature": 3.0, "anneal": True}}
    if loss == "adkd":
        options["adkd"]["ablation"] = "no_attr"  # the schedule is the KD term's; no double backward needed
    return DistillConfig(
        loss=loss,
        teacher=str(teacher),
        student="copy:1",
        data=DataConfig(train_file=tiny_csv[0], validation_file=tiny_csv[1], max_length=32, group_by_length=False),
        training=TrainingConfig(epochs=3, batch_size=16, learning_rate=1e-3, **extra),
        options=options,
        output=output,
        quiet=True,
    )


@pytest.mark.parametrize("loss, module", [("kd", kdkit.losses.kd), ("adkd", kdkit_adkd.loss)])
def test_the_schedule_step_by_step_in_training(loss, module, tiny_csv, tiny_teacher, tmp_path, monkeypatch):
    seen = _record_temperatures(monkeypatch, module)
    manager = PluginManager(autoload=False, enable=["adkd"])
    result = api.distill(_config(tiny_csv, tiny_teacher, tmp_path / "run", loss), plugins=manager)
    assert result.summary["train"]["steps"] == 3 * STEPS_PER_EPOCH
    assert [step for step, _ in seen] == list(range(3 * STEPS_PER_EPOCH))
    assert [t for _, t in seen] == hand_schedule(3.0, 3)  # 3.0 x 6, 2.0 x 6, 1.0 x 6
    assert result.summary["options"][loss]["anneal"] is True


def test_resume_continues_the_schedule_where_it_stopped(tiny_csv, tiny_teacher, tmp_path, monkeypatch):
    # a run interrupted in the first step after its first epoch's checkpoint: the .partial folder is kept
    original_loss = DistillationTrainer.compute_loss

    def stop_in_epoch_two(self: DistillationTrainer, *args: Any, **kwargs: Any) -> Any:
        if self.state.global_step >= STEPS_PER_EPOCH:
            raise KeyboardInterrupt
        return original_loss(self, *args, **kwargs)

    monkeypatch.setattr(DistillationTrainer, "compute_loss", stop_in_epoch_two)
    output = tmp_path / "run"
    with pytest.raises((KeyboardInterrupt, SystemExit)):
        api.distill(_config(tiny_csv, tiny_teacher, output, "kd"), plugins=PluginManager(autoload=False))
    partial = output.with_name("run.partial")
    assert [p.name for p in (partial / "checkpoints").glob("checkpoint-*")] == [f"checkpoint-{STEPS_PER_EPOCH}"]

    monkeypatch.setattr(DistillationTrainer, "compute_loss", original_loss)
    seen = _record_temperatures(monkeypatch, kdkit.losses.kd)
    resumed = api.distill(
        _config(tiny_csv, tiny_teacher, output, "kd").model_copy(update={"resume": True}),
        plugins=PluginManager(autoload=False),
    )
    assert resumed.summary["train"]["resumed_from_step"] == STEPS_PER_EPOCH
    # only epochs 2 and 3 ran in this process, at their own temperatures (not restarted at T = 3)
    assert [step for step, _ in seen] == list(range(STEPS_PER_EPOCH, 3 * STEPS_PER_EPOCH))
    assert [t for _, t in seen] == hand_schedule(3.0, 3)[STEPS_PER_EPOCH:]
    shutil.rmtree(output)
