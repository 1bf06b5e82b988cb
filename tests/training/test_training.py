"""End-to-end training through the Python API on tiny random models and a tiny CSV data set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from kdkit import api
from kdkit.config import DataConfig, DistillConfig, TrainingConfig
from kdkit.errors import ConfigError, TrainingError
from kdkit.losses.base import LossNeeds
from kdkit.plugins.manager import PluginManager


def _config(tiny_csv: tuple[Path, Path], teacher: Path, output: Path, **overrides: object) -> DistillConfig:
    train, validation = tiny_csv
    values: dict[str, object] = {
        "loss": "kd",
        "teacher": str(teacher),
        "student": "copy:1",
        "data": DataConfig(train_file=train, validation_file=validation, max_length=32),
        "training": TrainingConfig(epochs=2, batch_size=16, logging_steps=2, learning_rate=1e-3),
        "output": output,
        "quiet": True,
    }
    values.update(overrides)
    return DistillConfig(**values)  # type: ignore[arg-type]


def test_distill_writes_a_complete_run_directory(tiny_csv, tiny_teacher, tmp_path, plugin_manager):
    result = api.distill(_config(tiny_csv, tiny_teacher, tmp_path / "run"), plugins=plugin_manager)
    run = tmp_path / "run"
    assert result.run_dir == run.absolute()
    assert not (tmp_path / "run.partial").exists()
    for sub in ("best", "last"):
        assert (run / sub / "model.safetensors").is_file()
        assert (run / sub / "config.json").is_file()
        assert (run / sub / "kdkit_task.json").is_file()
        assert (run / sub / "tokenizer.json").is_file()
    assert not (run / "checkpoints").exists()
    summary = json.loads((run / "run.json").read_text())
    assert summary["loss"] == "kd"
    assert set(summary["metrics"]) == {"accuracy", "macro_f1"}
    assert 0.0 <= summary["metrics"]["accuracy"] <= 1.0
    assert summary["train"]["steps"] == 12  # 96 examples / 16 per batch * 2 epochs
    assert summary["teacher_cache"]["used"] is True
    assert len(summary["history"]) == 2  # one evaluation per epoch
    # every loss term is logged on its own
    assert all({"loss_ce", "loss_kd"} <= set(entry) for entry in summary["train_log"] if "train_runtime" not in entry)
    # the student is a 1-layer copy of the 2-layer teacher
    config = json.loads((run / "best" / "config.json").read_text())
    assert config["num_hidden_layers"] == 1
    assert config["kdkit_copied_layers"] == [1]


def test_best_checkpoint_is_the_best_evaluation(tiny_csv, tiny_teacher, tmp_path, plugin_manager):
    result = api.distill(
        _config(
            tiny_csv,
            tiny_teacher,
            tmp_path / "run",
            training=TrainingConfig(epochs=3, batch_size=16, learning_rate=3e-3),
        ),
        plugins=plugin_manager,
    )
    history = result.summary["history"]
    best = max(entry["eval_accuracy"] for entry in history)
    assert result.metrics["accuracy"] == pytest.approx(best)


def test_existing_output_is_not_overwritten(tiny_csv, tiny_teacher, tmp_path, plugin_manager):
    (tmp_path / "run").mkdir()
    with pytest.raises(ConfigError, match="already exists"):
        api.distill(_config(tiny_csv, tiny_teacher, tmp_path / "run"), plugins=plugin_manager)


class _NaNLoss:
    """A plugin whose loss becomes NaN at the third step."""

    from kdkit.hookspecs import hookimpl

    @staticmethod
    @hookimpl
    def kdkit_losses():  # type: ignore[no-untyped-def]
        from kdkit.losses.base import DistillationLoss

        class ExplodingLoss(DistillationLoss):
            name = "exploding"
            needs = LossNeeds(teacher=False)

            def __call__(self, batch, student_logits, teacher_signals, ctx):  # type: ignore[no-untyped-def]
                loss = torch.nn.functional.cross_entropy(student_logits, batch.labels)
                return {"ce": loss * (float("nan") if ctx.step >= 2 else 1.0)}

        return [ExplodingLoss]


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_partial_run(tiny_csv, tiny_teacher, tmp_path):
    manager = PluginManager(autoload=False, extra_plugins={"exploding": _NaNLoss()})
    with pytest.raises(TrainingError, match="non-finite at step 2"):
        api.distill(_config(tiny_csv, tiny_teacher, tmp_path / "run", loss="exploding"), plugins=manager)
    assert not (tmp_path / "run").exists()
    assert (tmp_path / "run.partial").is_dir()


def test_a_deferred_nan_check_names_the_same_step_and_saves_nothing_after_it(
    tiny_csv, tiny_teacher, tmp_path, monkeypatch
):
    """On an accelerator the check stays on the device (no sync per step) and is read at the next log,
    evaluation, checkpoint or the end: the same error, and no checkpoint of weights the bad step updated."""
    from kdkit.training.trainer import DistillationTrainer

    monkeypatch.setattr(DistillationTrainer, "defer_finite_check", True)
    manager = PluginManager(autoload=False, extra_plugins={"exploding": _NaNLoss()})
    config = _config(tiny_csv, tiny_teacher, tmp_path / "run", loss="exploding")
    with pytest.raises(TrainingError, match=r"non-finite at step 2 \(ce=nan\)"):
        api.distill(config, plugins=manager)
    assert not (tmp_path / "run").exists()
    assert not list((tmp_path / "run.partial").glob("checkpoints/checkpoint-*"))


def test_resume_continues_an_interrupted_run(tiny_csv, tiny_teacher, tmp_path, plugin_manager):
    output = tmp_path / "run"
    # a run interrupted after its first epoch: simulate by stopping at max_steps with checkpoints kept
    first = _config(tiny_csv, tiny_teacher, output, training=TrainingConfig(epochs=2, batch_size=16, logging_steps=2))
    api.distill(first, plugins=plugin_manager)
    # Turn the finished run back into an unfinished one with its first-epoch checkpoint.
    full = _config(
        tiny_csv,
        tiny_teacher,
        tmp_path / "run2",
        training=TrainingConfig(epochs=2, batch_size=16, logging_steps=2, keep_checkpoints=True),
    )
    api.distill(full, plugins=plugin_manager)
    partial = tmp_path / "run3.partial"
    (tmp_path / "run2").rename(partial)
    import shutil

    shutil.rmtree(partial / "checkpoints" / "checkpoint-12")
    resumed = api.distill(
        _config(
            tiny_csv,
            tiny_teacher,
            tmp_path / "run3",
            resume=True,
            training=TrainingConfig(epochs=2, batch_size=16, logging_steps=2),
        ),
        plugins=plugin_manager,
    )
    assert resumed.summary["train"]["steps"] == 12
    # only the second epoch was trained again: one evaluation happened in this process after resuming
    assert [entry["step"] for entry in resumed.summary["history"]] == [6, 12]


def test_compile_is_refused_for_a_double_backward_loss_before_anything_is_written(tiny_csv, tiny_teacher, tmp_path):
    manager = PluginManager(autoload=False, enable=["adkd"])
    config = _config(
        tiny_csv, tiny_teacher, tmp_path / "run", loss="adkd", training=TrainingConfig(epochs=1, compile=True)
    )
    with pytest.raises(ConfigError, match="--compile cannot run the 'adkd' loss: .*: drop --compile"):
        api.distill(config, plugins=manager)
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.partial").exists()


def test_gradient_accumulation_averages_the_micro_batches(tiny_csv, tiny_teacher, tmp_path, plugin_manager):
    """Batch 4 x 2 accumulation steps is the same optimiser step as batch 8: the logged loss of the first step
    is the mean over the same 8 examples (Trainer must divide kdkit's loss by the accumulation steps, although
    BERT's forward accepts loss kwargs). Dropout is off, so both runs compute the same numbers."""
    import shutil

    teacher = tmp_path / "teacher"
    shutil.copytree(tiny_teacher, teacher)
    config = json.loads((teacher / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (teacher / "config.json").write_text(json.dumps(config))
    losses = []
    for batch_size, accumulation in ((8, 1), (4, 2)):
        training = TrainingConfig(
            max_steps=1, batch_size=batch_size, gradient_accumulation_steps=accumulation, logging_steps=1
        )
        data = DataConfig(train_file=tiny_csv[0], validation_file=tiny_csv[1], max_length=32, group_by_length=False)
        run = _config(tiny_csv, teacher, tmp_path / f"run-{accumulation}", training=training, data=data)
        summary = api.distill(run, plugins=plugin_manager).summary
        losses.append(summary["train_log"][0]["loss"])
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)
