"""AD-KD end to end on the real MiniLM and SST-2, through the CLI (small sample counts)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kdkit.cli import app

pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # the real MiniLM on GLUE
runner = CliRunner()


def invoke(*args: object) -> None:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.stderr + result.stdout


@pytest.fixture(scope="module")
def sst2_teacher(tmp_path_factory: pytest.TempPathFactory, glue_dir: Path) -> Path:
    output = tmp_path_factory.mktemp("adkd-e2e") / "teacher"
    invoke(
        "finetune", "--task", "sst2", "--data-dir", glue_dir, "--max-train-samples", 160, "--max-eval-samples", 64,
        "--max-length", 64, "--epochs", 1, "--learning-rate", "1e-4", "--quiet", "--output", output,
    )  # fmt: skip
    return output


def test_adkd_with_the_paper_preset_on_minilm(sst2_teacher: Path, glue_dir: Path, tmp_path: Path) -> None:
    invoke(
        "distill", "--plugin", "adkd", "--task", "sst2", "--data-dir", glue_dir, "--teacher", sst2_teacher,
        "--max-train-samples", 160, "--max-eval-samples", 64, "--max-length", 64, "--preset", "paper",
        "--epochs", 1, "--logging-steps", 1, "--quiet", "--output", tmp_path / "adkd",
    )  # fmt: skip
    summary = json.loads((tmp_path / "adkd" / "run.json").read_text())
    options = summary["options"]
    assert (options["adkd"]["alpha"], options["adkd"]["beta"], options["adkd"]["temperature"]) == (0.8, 1.0, 2.0)
    assert summary["config"]["training"]["learning_rate"] == 5e-5 and summary["train"]["steps"] == 5
    assert summary["teacher_cache"]["used"] is True
    assert all(record["attr"] > 0 for record in summary["term_grad_norms"])
    assert all({"loss_ce", "loss_kd", "loss_attr"} <= set(entry) for entry in summary["train_log"] if "loss" in entry)
    assert 0.0 <= summary["metrics"]["accuracy"] <= 1.0


def test_adkd_on_the_fly_with_more_path_points_and_the_pad_baseline(
    sst2_teacher: Path, glue_dir: Path, tmp_path: Path
) -> None:
    invoke(
        "distill", "--plugin", "adkd", "--task", "sst2", "--data-dir", glue_dir, "--teacher", sst2_teacher,
        "--max-train-samples", 64, "--max-eval-samples", 32, "--max-length", 64, "--max-steps", 2,
        "--batch-size", 16, "--logging-steps", 1, "--no-teacher-cache", "--set", "ig.steps=3",
        "--set", "ig.baseline=pad", "--set", "adkd.views=gold", "--set", "adkd.top_k_fraction=0.5",
        "--quiet", "--output", tmp_path / "live",
    )  # fmt: skip
    summary = json.loads((tmp_path / "live" / "run.json").read_text())
    assert summary["teacher_cache"]["used"] is False
    assert summary["options"]["ig"] == {"steps": 3, "baseline": "pad", "batch_size": 256, "layer": "embeddings"}
    assert [entry["step"] for entry in summary["train_log"] if "loss" in entry] == [1, 2]
