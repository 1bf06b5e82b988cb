"""Model cards: README.md in every run's best/ and every export, in the Hugging Face format."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from huggingface_hub import ModelCard
from huggingface_hub.repocard_data import model_index_to_eval_results

from kdkit import api
from kdkit.config import DEFAULT_BASE_MODEL_ID, DataConfig, FinetuneConfig, TrainingConfig, default_base_model
from kdkit.export.stage import ExportOptions, export_onnx
from kdkit.plugins.manager import PluginManager
from kdkit.records import model_card
from kdkit.records.curves import CURVES_FILE


def _split(card: str) -> tuple[dict, str]:
    match = re.match(r"^---\n(.*?)\n---\n(.*)$", card, flags=re.DOTALL)
    assert match, "no YAML front matter"
    return yaml.safe_load(match.group(1)), match.group(2)


def _table(body: str, heading: str) -> list[list[str]]:
    """The rows of the first Markdown table under ``## heading``."""
    section = body.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    assert re.fullmatch(r"\|(---\|)+", rows[1]), rows[1]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[2:]]


def test_run_card_front_matter_metrics_table_and_curves(tiny_run: Path):
    summary = json.loads((tiny_run / "run.json").read_text())
    card = (tiny_run / "best" / "README.md").read_text()
    header, body = _split(card)
    assert header["pipeline_tag"] == "text-classification"
    assert header["library_name"] == "transformers"
    assert "base_model" not in header  # the teacher is a local folder, not a hub id
    assert set(header["metrics"]) == {"accuracy", "f1"}
    assert {"kdkit", "knowledge-distillation", "kdkit-kd"} <= set(header["tags"])
    # model-index as the Hub reads it
    name, results = model_index_to_eval_results(header["model-index"])
    assert name == "sst-tiny-kd"
    assert {(r.metric_type, r.metric_value) for r in results} == {
        ("accuracy", round(summary["metrics"]["accuracy"], 4)),
        ("f1", round(summary["metrics"]["macro_f1"], 4)),
    }
    assert all(r.task_type == "text-classification" and r.dataset_split == "validation" for r in results)
    # huggingface_hub parses the whole card
    assert ModelCard(card).data.pipeline_tag == "text-classification"
    # the sections and the metrics table
    for heading in ("Model", "Method and options", "Data", "Results", "Training", "Training curves", "How to use"):
        assert f"\n## {heading}\n" in f"\n{body}", heading
    rows = _table(body, "Results")
    assert rows == [
        ["accuracy (%)", f"{100 * summary['metrics']['accuracy']:.2f}"],
        ["macro_f1 (%)", f"{100 * summary['metrics']['macro_f1']:.2f}"],
    ]
    options = _table(body, "Method and options")
    assert ["`kd`", "`temperature`", f"`{summary['options']['kd']['temperature']}`"] in options
    model = dict((row[0], row[1]) for row in _table(body, "Model"))
    assert "copy:1" in model["student"] and "teacher layers [1]" in model["student"]
    assert str(summary["teacher"]) in model["teacher"]
    training = dict((row[0], row[1]) for row in _table(body, "Training"))
    assert training["steps"] == "12 (2.00 epochs)"
    assert f"![training curves: loss terms per step and the dev metric per evaluation]({CURVES_FILE})" in body
    assert (tiny_run / "best" / CURVES_FILE).is_file()
    # how to load it: transformers, optimum, transformers.js, kdkit predict, with this run's paths
    for snippet in (
        'pipeline("text-classification", model="',
        "ORTModelForSequenceClassification.from_pretrained(",
        'from "@huggingface/transformers"',
        "kdkit predict ",
        "kdkit export ",
    ):
        assert snippet in body, snippet
    assert f"{tiny_run.name}/best" in body


def test_export_card_has_the_engines_table_and_the_run_picture(tiny_run: Path, tiny_csv, tmp_path: Path):
    result = export_onnx(
        tiny_run,
        ExportOptions(output=tmp_path / "export", data=DataConfig(validation_file=tiny_csv[1]), exporter="torchscript"),
    )
    assert result.manifest["card"] == {"file": "README.md", "curves": CURVES_FILE}
    card = (result.directory / "README.md").read_text()
    header, body = _split(card)
    assert header["library_name"] == "transformers.js" and "onnx" in header["tags"]
    _, results = model_index_to_eval_results(header["model-index"])
    assert {r.metric_type for r in results} == {"accuracy", "f1"}
    rows = _table(body, "Export")
    metrics = result.manifest["evaluation"]["metrics"]
    assert rows[0] == [
        "accuracy (%)",
        f"{100 * metrics['pytorch']['accuracy']:.2f}",
        f"{100 * metrics['onnx_fp32']['accuracy']:.2f}",
    ]
    assert rows[-1][0] == "file size (MB)"
    # the same picture as the run's (drawn from the same run.json)
    assert (result.directory / CURVES_FILE).read_text() == (tiny_run / "best" / CURVES_FILE).read_text()
    assert f'ORTModelForSequenceClassification.from_pretrained("{result.directory}")' in body
    assert f'kdkit predict {result.directory} "your text here"' in body
    assert 'pipeline("text-classification", "export"' in body  # transformers.js names the export folder


def test_an_export_of_a_bare_model_has_a_card_without_a_picture(tiny_teacher: Path, tiny_csv, tmp_path: Path):
    result = export_onnx(
        tiny_teacher,
        ExportOptions(output=tmp_path / "export", data=DataConfig(validation_file=tiny_csv[1]), exporter="torchscript"),
    )
    assert result.manifest["card"] == {"file": "README.md", "curves": None}
    header, body = _split((result.directory / "README.md").read_text())
    assert header["pipeline_tag"] == "text-classification" and "model-index" not in header
    assert "## Export" in body and "training_curves" not in body


def test_a_fine_tuned_teacher_gets_a_card_too(tiny_teacher: Path, tiny_csv, tmp_path: Path):
    config = FinetuneConfig(
        model=str(tiny_teacher),
        data=DataConfig(train_file=tiny_csv[0], validation_file=tiny_csv[1], max_length=32),
        training=TrainingConfig(max_steps=2, batch_size=16, logging_steps=1),
        output=tmp_path / "teacher-run",
        quiet=True,
    )
    result = api.finetune(config, plugins=PluginManager(autoload=False))
    header, body = _split((result.run_dir / "best" / "README.md").read_text())
    assert "kdkit-ce" not in header["tags"] and "knowledge-distillation" not in header["tags"]
    assert "teacher fine-tuned" in body and "(`kdkit finetune`, loss `ce`)" in body
    model = dict((row[0], row[1]) for row in _table(body, "Model"))
    assert model["base model"] == f"`{tiny_teacher}`"


def test_glue_runs_name_the_dataset_and_hub_base_models(tmp_path: Path):
    summary = {
        "command": "distill",
        "loss": "adkd",
        "student": "copy:3",
        "teacher": str(tmp_path / "teacher" / "best"),
        "task": {
            "name": "mnli",
            "hub_config": "mnli",
            "metrics": ["accuracy"],
            "text_fields": ["premise", "hypothesis"],
        },
        "metrics": {"validation_matched/accuracy": 0.71, "validation_mismatched/accuracy": 0.72},
        "config": {"data": {"task": "mnli"}},
    }
    (tmp_path / "teacher" / "best").mkdir(parents=True)
    (tmp_path / "teacher" / "run.json").write_text(json.dumps({"base_model": default_base_model()}))
    header = model_card.front_matter("mnli-adkd", summary)
    assert header["base_model"] == DEFAULT_BASE_MODEL_ID  # the embedded default is all-MiniLM-L6-v2
    assert header["datasets"] == ["nyu-mll/glue"]
    _, results = model_index_to_eval_results(header["model-index"])
    assert {(r.dataset_type, r.dataset_config, r.dataset_split, r.metric_value) for r in results} == {
        ("nyu-mll/glue", "mnli", "validation_matched", 0.71),
        ("nyu-mll/glue", "mnli", "validation_mismatched", 0.72),
    }


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("bert-base-uncased", "bert-base-uncased"),
        ("google/bert_uncased_L-4_H-256_A-4", "google/bert_uncased_L-4_H-256_A-4"),
        ("copy:3", None),
        ("", None),
        ("not a/hub/id", None),
    ],
)
def test_hub_ids(name: str, expected: str | None):
    assert model_card.hub_id(name) == expected


def test_a_local_path_is_not_a_hub_id(tmp_path: Path):
    (tmp_path / "bert").mkdir()
    assert model_card.hub_id(str(tmp_path / "bert")) is None
    assert model_card.hub_id(default_base_model()) == DEFAULT_BASE_MODEL_ID


def test_a_failing_card_never_costs_the_run(tiny_csv, tiny_teacher, tmp_path: Path, monkeypatch):
    from io import StringIO

    from rich.console import Console

    from kdkit.config import DistillConfig

    def broken(*args, **kwargs):
        raise ValueError("no card today")

    monkeypatch.setattr(model_card, "write_run_card", broken)
    console = Console(file=StringIO(), width=200)
    config = DistillConfig(
        teacher=str(tiny_teacher),
        student="copy:1",
        data=DataConfig(train_file=tiny_csv[0], validation_file=tiny_csv[1], max_length=32),
        training=TrainingConfig(max_steps=2, batch_size=16),
        output=tmp_path / "run",
        quiet=True,
    )
    result = api.distill(config, plugins=PluginManager(autoload=False), console=console)
    assert (result.run_dir / "run.json").is_file() and (result.run_dir / "best" / "model.safetensors").is_file()
    assert not (result.run_dir / "best" / "README.md").exists()
    assert "warning: no model card written (ValueError: no card today)" in console.file.getvalue()  # type: ignore[attr-defined]


def test_a_failing_card_never_costs_the_export(tiny_teacher: Path, tiny_csv, tmp_path: Path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk says no")

    monkeypatch.setattr(model_card, "write_export_card", broken)
    result = export_onnx(
        tiny_teacher,
        ExportOptions(output=tmp_path / "export", data=DataConfig(validation_file=tiny_csv[1]), exporter="torchscript"),
    )
    assert result.manifest["card"] is None and (result.directory / "onnx" / "model.onnx").is_file()
    assert "no model card written (OSError: disk says no)" in result.warnings
    saved = json.loads((result.directory / "kdkit_export.json").read_text())
    assert saved["warnings"] == result.warnings and saved["card"] is None
