"""Issues 12 (part 5) and 14: runs record their data paths resolved (absolute, and as given), and evaluate,
export, explain and predict read a run's task and data back through one resolver (kdkit.records.provenance): no data
flag needed while the recorded files exist, flags still override, a one-line error when they are gone."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kdkit import api
from kdkit.cli import app
from kdkit.config import DataConfig, DistillConfig, TrainingConfig
from kdkit.data.sources import given_paths, record_paths
from kdkit.errors import DataError
from kdkit.export.stage import ExportOptions, export_onnx
from kdkit.plugins.manager import PluginManager
from kdkit.records.provenance import of_export, of_model
from kdkit.testing import write_tiny_csv

runner = CliRunner()


@pytest.fixture(scope="module")
def relative_run(tmp_path_factory: pytest.TempPathFactory, tiny_teacher: Path) -> Path:
    """A tiny run on custom data given as relative paths (from its own working directory), no --task."""
    folder = tmp_path_factory.mktemp("relative-run")
    write_tiny_csv(folder / "train.csv", 48, seed=1)
    write_tiny_csv(folder / "dev.csv", 24, seed=2)
    here = Path.cwd()
    os.chdir(folder)
    try:
        config = DistillConfig(
            teacher=str(tiny_teacher),
            student="copy:1",
            data=DataConfig(train_file=Path("train.csv"), validation_file=Path("dev.csv"), max_length=32),
            training=TrainingConfig(epochs=1, batch_size=16, learning_rate=1e-3),
            quiet=True,
        )
        result = api.distill(config, plugins=PluginManager(autoload=False))
    finally:
        os.chdir(here)
    return result.run_dir


def test_a_run_records_its_data_paths_absolute_and_as_given(relative_run: Path):
    summary = json.loads((relative_run / "run.json").read_text())
    data = summary["config"]["data"]
    folder = relative_run.parent.parent
    assert data["train_file"] == str(folder / "train.csv") and data["validation_file"] == str(folder / "dev.csv")
    assert summary["data_given"] == {"train_file": "train.csv", "validation_file": "dev.csv"}
    assert (relative_run / "config.yaml").read_text().count(str(folder / "dev.csv")) == 1


def test_custom_data_has_one_name_everywhere(relative_run: Path):
    """'custom' in the run's name, its task, its saved model and its export (never 'train' from train.csv)."""
    summary = json.loads((relative_run / "run.json").read_text())
    assert relative_run.name.startswith("custom-kd-") and summary["task"]["name"] == "custom"
    assert json.loads((relative_run / "best" / "kdkit_task.json").read_text())["task"]["name"] == "custom"
    assert of_model(relative_run).task.name == "custom"  # type: ignore[union-attr]


def test_evaluate_a_run_with_no_data_flags_from_another_directory(relative_run: Path, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the relative paths given at training time do not resolve here
    task, metrics = api.evaluate(relative_run)
    assert task.name == "custom" and 0.0 <= metrics["accuracy"] <= 1.0
    result = runner.invoke(app, ["evaluate", str(relative_run), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["metrics"] == pytest.approx(metrics)
    # the model folder alone (best/) finds its run record too
    assert api.evaluate(relative_run / "best")[1] == pytest.approx(metrics)


def test_flags_override_what_the_run_recorded(relative_run: Path, tmp_path: Path):
    other = write_tiny_csv(tmp_path / "other.csv", 8, seed=5)
    saved = of_model(relative_run)
    options = saved.data_options(DataConfig(validation_file=other, max_eval_samples=4))
    assert options.validation_file == other and options.max_eval_samples == 4
    assert options.label_names == ["neg", "pos"] and options.text_columns == ["text"]  # from the record
    assert options.train_file is None and options.max_length == 32
    assert api.evaluate(relative_run, DataConfig(validation_file=other))[0].name == "custom"


def test_a_recorded_file_that_is_gone_is_a_one_line_error_naming_it(relative_run: Path, tmp_path: Path):
    moved = tmp_path / "run"
    shutil.copytree(relative_run, moved)
    summary = json.loads((moved / "run.json").read_text())
    summary["config"]["data"]["validation_file"] = str(tmp_path / "gone" / "dev.csv")
    (moved / "run.json").write_text(json.dumps(summary))
    with pytest.raises(DataError, match=r"the validation file .* was trained with is gone: .*gone/dev.csv \(given as "
                       r"dev.csv\): restore it, or pass --validation-file"):  # fmt: skip
        api.evaluate(moved)
    result = runner.invoke(app, ["evaluate", str(moved)])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and "is gone" in result.stderr
    assert api.evaluate(moved, DataConfig(validation_file=relative_run.parent.parent / "dev.csv"))[1]


def test_export_reuses_the_recorded_data_source(relative_run: Path, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = export_onnx(relative_run, ExportOptions(output=tmp_path / "onnx", exporter="torchscript"))
    assert result.manifest["task"]["name"] == "custom"
    assert sum(result.manifest["evaluation"]["splits"].values()) == 24  # the recorded dev.csv, all of it
    export = of_export(tmp_path / "onnx")
    assert export.task is not None and export.task.text_fields == ("text",) and export.max_length == 32


def test_explain_takes_the_recorded_task(relative_run: Path):
    from kdkit.attribution.explain import load_for_explain

    _, _, task, max_length = load_for_explain(relative_run)
    assert task.name == "custom" and task.label_names == ("neg", "pos") and max_length == 32


def test_glue_runs_record_the_data_dir_absolute(tmp_path: Path, monkeypatch):
    glue = tmp_path / "glue"
    glue.mkdir()
    monkeypatch.chdir(tmp_path)
    given = DataConfig(task="sst2", data_dir=Path("glue"))
    assert record_paths(given).data_dir == glue and given_paths(given) == {"data_dir": "glue"}
    monkeypatch.setenv("KDKIT_GLUE_DIR", "glue")
    assert record_paths(DataConfig(task="sst2")).data_dir == glue  # where the data really came from
