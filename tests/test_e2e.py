"""End to end on the real MiniLM and real data: finetune -> distill (kd) -> evaluate, through the CLI.

Small sample counts keep each task to well under a minute on two CPU cores; thresholds only ask for
better-than-chance learning, which a broken pipeline (wrong labels, no training, wrong head) would miss.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kdkit.cli import app

pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # the real MiniLM on GLUE: minutes
runner = CliRunner()


def invoke(*args: str) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.stderr + result.stdout
    return result.stdout


def finetune_distill_evaluate(
    tmp_path: Path, data_args: list, teacher_epochs: int = 2, batch_size: int = 32
) -> tuple[dict, dict, dict]:
    common = [*data_args, "--max-length", "64", "--batch-size", batch_size, "--logging-steps", "10", "--quiet"]
    common += ["--no-group-by-length"]  # random batches, as when these thresholds were set: 10 steps an epoch
    invoke("finetune", *common, "--epochs", teacher_epochs, "--learning-rate", "1e-4", "--output", tmp_path / "teacher")
    teacher = json.loads((tmp_path / "teacher" / "run.json").read_text())
    invoke(
        "distill",
        "--plugin",
        "kd",
        "--teacher",
        tmp_path / "teacher",
        "--student",
        "copy:3",
        *common,
        "--epochs",
        "2",
        "--learning-rate",
        "1e-4",
        "--output",
        tmp_path / "student",
    )
    student = json.loads((tmp_path / "student" / "run.json").read_text())
    eval_args: list[str] = []
    skip = False
    for arg in data_args:  # evaluate needs no training data
        if skip:
            skip = False
        elif arg in ("--max-train-samples", "--train-file"):
            skip = True
        else:
            eval_args.append(arg)
    evaluated = json.loads(invoke("evaluate", tmp_path / "student", *eval_args, "--json"))
    return teacher, student, evaluated


def test_sst2(tmp_path, glue_dir):
    data = ["--task", "sst2", "--data-dir", glue_dir, "--max-train-samples", "320", "--max-eval-samples", "200"]
    teacher, student, evaluated = finetune_distill_evaluate(tmp_path, data)
    assert teacher["metrics"]["accuracy"] > 0.6
    assert student["metrics"]["accuracy"] > 0.55
    assert student["student_parameters"] < 0.8 * student["teacher_parameters"]
    assert evaluated["metrics"]["accuracy"] == pytest.approx(student["metrics"]["accuracy"])


def test_stsb_regression(tmp_path, glue_dir):
    data = ["--task", "stsb", "--data-dir", glue_dir, "--max-train-samples", "320", "--max-eval-samples", "200"]
    # a regression head needs more steps than a classifier: 60 teacher steps of 16 (20 of 32 gave ~0 Spearman)
    teacher, student, evaluated = finetune_distill_evaluate(tmp_path, data, teacher_epochs=3, batch_size=16)
    assert teacher["task"]["label_names"] is None
    assert teacher["metrics"]["spearman"] > 0.3
    assert student["metrics"]["spearman"] > 0.2
    assert set(student["options"]["kd"]) == {"alpha", "temperature", "anneal"}
    assert "mse" in student["train_log"][0] or "loss_mse" in student["train_log"][0]
    assert evaluated["metrics"]["spearman"] == pytest.approx(student["metrics"]["spearman"])


def test_agnews_csv_four_classes(tmp_path, agnews_dir):
    data = [
        "--train-file",
        agnews_dir / "train.csv",
        "--validation-file",
        agnews_dir / "validation.csv",
        "--task",
        "agnews",
        "--max-train-samples",
        "400",
        "--max-eval-samples",
        "200",
    ]
    teacher, student, evaluated = finetune_distill_evaluate(tmp_path, data)
    assert teacher["task"]["label_names"] == ["Business", "Sci/Tech", "Sports", "World"]
    assert teacher["metrics"]["accuracy"] > 0.5  # chance is 0.25
    assert student["metrics"]["accuracy"] > 0.4
    assert evaluated["metrics"]["accuracy"] == pytest.approx(student["metrics"]["accuracy"])
