"""End to end on the real MiniLM and SST-2: KD and AD-KD with the ``hidden`` loss, through the CLI.

A small teacher run (320 sentences) and two short students; the thresholds ask only for better-than-chance
learning and for every term to be logged with a gradient that reaches the student.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kdkit.cli import app

pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # the real MiniLM on GLUE: minutes
runner = CliRunner()


def invoke(*args: object) -> None:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.stderr + result.stdout


@pytest.fixture(scope="module")
def sst2(tmp_path_factory: pytest.TempPathFactory, glue_dir: Path) -> tuple[Path, list[object]]:
    """(teacher run directory, the data flags) for a MiniLM teacher fine-tuned on 320 SST-2 sentences."""
    data: list[object] = ["--task", "sst2", "--data-dir", glue_dir, "--max-train-samples", "320"]
    data += ["--max-eval-samples", "200", "--max-length", "64", "--quiet", "--no-group-by-length"]  # random batches
    teacher = tmp_path_factory.mktemp("e2e-intermediate") / "teacher"
    invoke("finetune", *data, "--epochs", "2", "--learning-rate", "1e-4", "--batch-size", "32", "--output", teacher)
    return teacher, data


@pytest.mark.parametrize(
    ("plugins", "terms"),
    [(["kd", "hidden"], {"ce", "kd", "hidden"}), (["adkd", "hidden"], {"ce", "kd", "attr", "hidden"})],
)
def test_sst2_with_hidden_states(tmp_path, sst2, plugins, terms):
    teacher, data = sst2
    flags = [arg for name in plugins for arg in ("--plugin", name)]
    output = tmp_path / "student"
    invoke("distill", *flags, "--teacher", teacher, "--student", "copy:3", *data, "--epochs", "1", "--batch-size", "16",
           "--learning-rate", "1e-4", "--logging-steps", "5", "--output", output)  # fmt: skip
    summary = json.loads((output / "run.json").read_text())
    assert summary["loss"] == "+".join(plugins) and summary["losses"] == plugins
    steps = [entry for entry in summary["train_log"] if "loss" in entry]
    assert steps and all({f"loss_{term}" for term in terms} <= set(entry) for entry in steps)
    assert all(record["hidden"] > 0 for record in summary["term_grad_norms"])
    assert summary["metrics"]["accuracy"] > 0.55
