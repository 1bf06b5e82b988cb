"""Intermediate-layer losses in real runs on tiny models: every term logged, the CLI on (tiny) SST-2, and the
``hidden`` loss's projection trained, checkpointed, resumed and never saved with the student."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from kdkit import api
from kdkit.cli import app
from kdkit.config import DataConfig, DistillConfig, TrainingConfig
from kdkit.data.tasks import get_task
from kdkit.errors import TrainingError
from kdkit.losses.base import LossContext
from kdkit.losses.hidden import HiddenOptions, HiddenStateLoss
from kdkit.plugins.manager import PluginManager
from kdkit.testing import BINARY_TASK, run_distillation_steps, save_tiny_classifier, tiny_classifier
from kdkit.training.loss_modules import LOSS_MODULES_FILE, LossModulesMixin, load_loss_modules, loss_module_dict

runner = CliRunner()


@pytest.mark.parametrize(
    ("loss", "terms"),
    [
        ("kd+hidden", {"ce", "kd", "hidden"}),
        ("adkd+hidden", {"ce", "kd", "attr", "hidden"}),
        ("kd+attention", {"ce", "kd", "attention"}),
        ("adkd+hidden+attention", {"ce", "kd", "attr", "hidden", "attention"}),
    ],
)
def test_composite_runs_log_every_term_and_its_gradient_norm(tmp_path: Path, loss: str, terms: set[str]):
    result = run_distillation_steps(loss=loss, enable=["adkd"], steps=2, directory=tmp_path)
    summary = result.summary
    assert summary["loss"] == loss and summary["losses"] == loss.split("+")
    assert all({f"loss_{term}" for term in terms} <= set(entry) for entry in summary["train_log"] if "loss" in entry)
    assert all(set(record) == terms | {"step"} for record in summary["term_grad_norms"])
    assert all(record["hidden"] > 0 for record in summary["term_grad_norms"] if "hidden" in terms)
    assert set(summary["options"]) >= set(loss.split("+"))
    assert "loss: " + loss in (result.run_dir / "config.yaml").read_text()


def test_a_single_loss_run_json_is_unchanged(tmp_path: Path):
    summary = run_distillation_steps(loss="kd", steps=1, directory=tmp_path).summary
    assert summary["loss"] == "kd" and "losses" not in summary
    assert set(summary["options"]) == {"kd"}


@pytest.fixture(scope="module")
def sst2_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny 2-layer BERT with SST-2's labels (and the tiny tokenizer: SST-2's words become [UNK]s mostly)."""
    return save_tiny_classifier(tmp_path_factory.mktemp("sst2-teacher") / "teacher", get_task("sst2"), num_layers=2)


@pytest.mark.parametrize(("plugins", "terms"), [(["kd", "hidden"], {"kd", "hidden"}), (["adkd", "hidden"], {"attr"})])
def test_cli_distills_sst2_with_two_plugins(tmp_path, glue_dir, sst2_teacher, plugins, terms):
    args = [
        "distill",
        *[arg for name in plugins for arg in ("--plugin", name)],
        "--set",
        "hidden.weight=2",
        "--task",
        "sst2",
        "--data-dir",
        str(glue_dir),
        "--max-train-samples",
        "48",
        "--max-eval-samples",
        "16",
        "--max-length",
        "32",
        "--teacher",
        str(sst2_teacher),
        "--student",
        "copy:1",
        "--max-steps",
        "3",
        "--batch-size",
        "16",
        "--logging-steps",
        "1",
        "--quiet",
        "--output",
        str(tmp_path / "run"),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    summary = json.loads((tmp_path / "run" / "run.json").read_text())
    assert summary["loss"] == "+".join(plugins) and summary["options"]["hidden"]["weight"] == 2
    steps = [entry for entry in summary["train_log"] if "loss" in entry]
    assert len(steps) == 3 and all({f"loss_{t}" for t in terms | {"ce", "hidden"}} <= set(e) for e in steps)


# -- the projection ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def narrow_student(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny 1-layer student 24 wide (the tiny teacher is 32 wide), with the teacher's tokenizer."""
    return save_tiny_classifier(
        tmp_path_factory.mktemp("narrow") / "student", BINARY_TASK, num_layers=1, hidden_size=24, seed=5
    )


def _config(tiny_csv: tuple[Path, Path], teacher: Path, student: Path, output: Path, **overrides: Any) -> DistillConfig:
    values: dict[str, Any] = {
        "loss": "kd+hidden",
        "teacher": str(teacher),
        "student": str(student),
        "data": DataConfig(train_file=tiny_csv[0], validation_file=tiny_csv[1], max_length=32),
        "training": TrainingConfig(epochs=2, batch_size=16, logging_steps=2, learning_rate=1e-2, keep_checkpoints=True),
        "output": output,
        "quiet": True,
    }
    values.update(overrides)
    return DistillConfig(**values)


def _initial_projection() -> dict[str, torch.Tensor]:
    loss = HiddenStateLoss(HiddenOptions(), BINARY_TASK)
    loss.prepare(LossContext(BINARY_TASK, tiny_classifier(hidden_size=24), tiny_classifier(hidden_size=32)))
    assert loss.projection is not None
    return {f"projection.{k}": v for k, v in loss.projection.state_dict().items()}


def test_projection_is_trained_checkpointed_resumed_and_not_saved_with_the_student(
    tiny_csv, tiny_teacher, narrow_student, tmp_path
):
    manager = PluginManager(autoload=False)
    full = api.distill(_config(tiny_csv, tiny_teacher, narrow_student, tmp_path / "full"), plugins=manager)
    checkpoints = full.run_dir / "checkpoints"
    first, last = (load_file(checkpoints / name / LOSS_MODULES_FILE) for name in ("checkpoint-6", "checkpoint-12"))
    initial = _initial_projection()
    assert set(last) == {"hidden:projection.weight", "hidden:projection.bias"}
    weight = "hidden:projection.weight"
    assert not torch.allclose(first[weight], initial["projection.weight"])  # the optimiser trains it
    assert not torch.allclose(last[weight], first[weight])
    for saved in ("best", "last"):  # the student alone
        assert not any("projection" in key for key in load_file(full.run_dir / saved / "model.safetensors"))

    # interrupt after the first epoch, resume: the second epoch must end where the uninterrupted run did
    partial = tmp_path / "resumed.partial"
    shutil.copytree(full.run_dir, partial)
    shutil.rmtree(partial / "checkpoints" / "checkpoint-12")
    (partial / "run.json").unlink()
    resumed = api.distill(
        _config(tiny_csv, tiny_teacher, narrow_student, tmp_path / "resumed", resume=True), plugins=manager
    )
    again = load_file(resumed.run_dir / "checkpoints" / "checkpoint-12" / LOSS_MODULES_FILE)
    torch.testing.assert_close(again[weight], last[weight], rtol=1e-4, atol=1e-6)


def test_a_checkpoint_without_the_projection_state_is_not_resumed(tiny_csv, tiny_teacher, narrow_student, tmp_path):
    """A checkpoint that lost the projection's state is incomplete (its manifest lists the file): --resume
    ignores it and trains again from the start; loading such a folder directly is a one-line error."""
    manager = PluginManager(autoload=False)
    full = api.distill(_config(tiny_csv, tiny_teacher, narrow_student, tmp_path / "full"), plugins=manager)
    partial = tmp_path / "resumed.partial"
    shutil.copytree(full.run_dir, partial)
    shutil.rmtree(partial / "checkpoints" / "checkpoint-12")
    (partial / "checkpoints" / "checkpoint-6" / LOSS_MODULES_FILE).unlink()
    resumed = api.distill(
        _config(tiny_csv, tiny_teacher, narrow_student, tmp_path / "resumed", resume=True), plugins=manager
    )
    assert resumed.summary["train"]["steps"] == 12
    assert (resumed.run_dir / "checkpoints" / "checkpoint-6" / LOSS_MODULES_FILE).is_file()  # written again
    empty = tmp_path / "checkpoint-0"
    empty.mkdir()
    with pytest.raises(TrainingError, match=f"has no {LOSS_MODULES_FILE}"):
        load_loss_modules(loss_module_dict(HiddenStateLoss(HiddenOptions(), BINARY_TASK)), str(empty))


class _Trainer(LossModulesMixin):
    def __init__(self, loss: HiddenStateLoss, world_size: int) -> None:
        self.args = SimpleNamespace(device=torch.device("cpu"), world_size=world_size)
        self.distillation_loss = loss


def test_trainable_modules_refuse_ddp_but_equal_widths_do_not():
    narrow, wide = HiddenStateLoss(HiddenOptions(), BINARY_TASK), HiddenStateLoss(HiddenOptions(), BINARY_TASK)
    narrow.prepare(LossContext(BINARY_TASK, tiny_classifier(hidden_size=24), tiny_classifier(hidden_size=32)))
    wide.prepare(LossContext(BINARY_TASK, tiny_classifier(hidden_size=32), tiny_classifier(hidden_size=32)))
    with pytest.raises(TrainingError, match=r"loss trains its own modules \(projection\).*2 processes.*one process"):
        _Trainer(narrow, world_size=2).setup_loss_modules()
    _Trainer(wide, world_size=2).setup_loss_modules()  # nothing to synchronise
    _Trainer(narrow, world_size=1).setup_loss_modules()


def test_kdkit_plugins_lists_the_intermediate_losses_with_their_options():
    result = runner.invoke(app, ["plugins", "--json"])
    assert result.exit_code == 0, result.stderr
    components = {c["name"]: c for c in json.loads(result.stdout)["components"]}
    assert set(components["hidden"]["options"]) == {"weight", "layers", "target"}
    assert set(components["attention"]["options"]) == {"weight", "layers", "heads", "eps"}
    assert components["hidden"]["options"]["target"]["type"] == "'tokens' | 'cls'"
    assert components["hidden"]["kind"] == components["attention"]["kind"] == "loss"
