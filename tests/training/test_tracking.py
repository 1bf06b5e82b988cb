"""--report-to: kdkit's loss terms and dev metrics reach the tracker (TensorBoard read back from its event file);
a missing tracker is a one-line error naming the extra, before anything is trained."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from typer.testing import CliRunner

from kdkit import api
from kdkit.cli import app
from kdkit.config import DataConfig, DistillConfig, TrainingConfig
from kdkit.errors import ConfigError
from kdkit.plugins.manager import PluginManager
from kdkit.training import tracking
from kdkit.training.arguments import training_arguments

runner = CliRunner()


def test_tensorboard_event_file_holds_the_loss_terms_and_dev_metrics(tiny_run: Path):
    summary = json.loads((tiny_run / "run.json").read_text())
    assert summary["config"]["training"]["report_to"] == "tensorboard"
    events = list((tiny_run / tracking.TENSORBOARD_DIR).glob("events.out.tfevents.*"))
    assert len(events) == 1
    accumulator = EventAccumulator(str(events[0]))
    accumulator.Reload()
    tags = set(accumulator.Tags()["scalars"])
    assert {"train/loss", "train/loss_ce", "train/loss_kd", "train/learning_rate", "eval/accuracy"} <= tags
    logged = [entry for entry in summary["train_log"] if "loss" in entry]
    for term in ("loss_ce", "loss_kd"):
        scalars = accumulator.Scalars(f"train/{term}")
        assert [s.step for s in scalars] == [entry["step"] for entry in logged]
        assert [s.value for s in scalars] == pytest.approx([entry[term] for entry in logged], rel=1e-6)
    dev = accumulator.Scalars("eval/accuracy")
    assert [(s.step, s.value) for s in dev] == [
        (entry["step"], pytest.approx(entry["eval_accuracy"], rel=1e-6)) for entry in summary["history"]
    ]
    # nothing is left in the (deleted) checkpoint folder's default location
    assert not (tiny_run / "checkpoints").exists()


def test_default_reports_nowhere(tiny_csv, tiny_teacher, tmp_path):
    from kdkit.testing.models import BINARY_TASK

    assert TrainingConfig().report_to == "none"
    args = training_arguments(TrainingConfig(), BINARY_TASK, str(tmp_path))
    assert args.report_to == []
    assert training_arguments(TrainingConfig(report_to="all"), BINARY_TASK, str(tmp_path)).report_to == [
        "tensorboard",
        "trackio",
        "mlflow",
    ]


@pytest.mark.parametrize(
    ("choice", "missing", "extra"),
    [
        ("mlflow", {"mlflow"}, "kdkit[mlflow]"),
        ("trackio", {"trackio"}, "kdkit[trackio]"),
        ("all", {"mlflow"}, "kdkit[tracking]"),
    ],
)
def test_a_missing_tracker_fails_before_training_and_names_the_extra(
    choice, missing, extra, tiny_csv, tiny_teacher, tmp_path, monkeypatch
):
    monkeypatch.setattr(tracking, "_installed", lambda module: module not in missing)
    config = DistillConfig(
        teacher=str(tiny_teacher),
        student="copy:1",
        data=DataConfig(train_file=tiny_csv[0], validation_file=tiny_csv[1]),
        training=TrainingConfig(report_to=choice),
        output=tmp_path / "run",
    )
    with pytest.raises(ConfigError, match=rf"--report-to {choice} needs .*pip install '{re.escape(extra)}'"):
        api.distill(config, plugins=PluginManager(autoload=False))
    assert not list(tmp_path.iterdir())  # nothing was started


def test_report_to_flag_on_the_cli(tiny_csv, tiny_teacher, tmp_path, monkeypatch):
    monkeypatch.setattr(tracking, "_installed", lambda module: module != "mlflow")
    common = ["--teacher", str(tiny_teacher), "--train-file", str(tiny_csv[0]), "--validation-file", str(tiny_csv[1])]
    result = runner.invoke(app, ["distill", *common, "--report-to", "mlflow", "--output", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "error: --report-to mlflow needs mlflow, which is not installed: pip install 'kdkit[mlflow]'" in " ".join(
        result.output.split()
    )
    result = runner.invoke(app, ["finetune", "--train-file", str(tiny_csv[0]), "--report-to", "wandb"])
    assert result.exit_code == 2 and "report_to" in result.output
    assert "--report-to" in runner.invoke(app, ["distill", "--help"]).output
