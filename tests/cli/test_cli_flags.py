"""The CLI's flags come from the config models: every field is a flag, every flag a field, each lands where it
belongs; choices list their values and a bad one is a one-line error; ``--help`` names every value."""

from __future__ import annotations

import re
import typing
from pathlib import Path
from types import SimpleNamespace, UnionType
from typing import Any, Literal

import pytest
import typer.main
from pydantic import BaseModel
from typer.testing import CliRunner

from kdkit import api
from kdkit.cli import app
from kdkit.cli.command import config_fields
from kdkit.cli.evaluate import EVALUATE_DATA_FIELDS
from kdkit.cli.export import EXPORT_DATA_FIELDS
from kdkit.cli.flags import REPEATABLE
from kdkit.config import DataConfig, DistillConfig, FinetuneConfig, StudentSpec, TrainingConfig, build_config

runner = CliRunner()
DOCS = Path(__file__).resolve().parents[2] / "docs"
#: flags of finetune/distill that are not config fields
HAND_WRITTEN = {"config", "set_", "help"}


def _command(name: str) -> Any:
    return typer.main.get_command(app).commands[name]  # type: ignore[attr-defined]


def _params(name: str) -> dict[str, Any]:
    return {param.name: param for param in _command(name).params}


def _run_fields(model: type[BaseModel]) -> set[str]:
    """What a command's config takes at the top level besides the sections and the --set options."""
    return {name for name in model.model_fields if name not in ("data", "training", "options")}


@pytest.mark.parametrize(("command", "model"), [("finetune", FinetuneConfig), ("distill", DistillConfig)])
def test_every_field_is_a_flag_and_every_flag_a_field(command: str, model: type[BaseModel]) -> None:
    expected = {*DataConfig.model_fields, *TrainingConfig.model_fields, *_run_fields(model)}
    params = set(_params(command)) - HAND_WRITTEN
    assert params - expected == set(), "flags without a config field"
    assert expected - params == set(), "config fields without a flag"
    located = {f"data.{n}" for n in DataConfig.model_fields} | {f"training.{n}" for n in TrainingConfig.model_fields}
    assert set(config_fields(_command(command)).values()) == located | _run_fields(model)


def test_evaluate_and_export_take_an_explicit_subset_of_the_data_options() -> None:
    for command, fields, own in (
        (
            "evaluate",
            (*[f"data.{n}" for n in EVALUATE_DATA_FIELDS], "training.device", "training.precision"),
            {"model", "batch_size"},
        ),
        ("export", [f"data.{n}" for n in EXPORT_DATA_FIELDS], {"model", "onnx", "output", "opset", "exporter"}),
    ):
        made = config_fields(_command(command))
        assert sorted(made.values()) == sorted(fields)
        assert own <= set(_params(command)) - set(made)
    assert "train_file" not in EVALUATE_DATA_FIELDS and "max_length" not in EXPORT_DATA_FIELDS


def _sample(name: str, info: Any) -> tuple[Any, Any]:
    """A value other than the default for field ``name``: (what to type, what the config should hold)."""
    default = info.get_default(call_default_factory=True)
    kind = info.annotation
    if typing.get_origin(kind) in (typing.Union, UnionType):
        kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
    if typing.get_origin(kind) is Literal:
        value = next(choice for choice in reversed(typing.get_args(kind)) if choice != default)
        return value, value
    if kind is bool:
        return not default, not default
    if kind is int:
        return (default or 1) + 1, (default or 1) + 1
    if kind is float:
        return (default or 1.0) / 2, (default or 1.0) / 2
    if kind is Path:
        return "some/where.csv", Path("some/where.csv")
    if typing.get_origin(kind) is list and REPEATABLE.get(name, "") is None:
        return "a, b.txt", ["a, b.txt"]  # a repeatable file flag: one file a flag, a comma in its name kept
    if typing.get_origin(kind) is list:
        return "a, b", ["a", "b"]
    if kind is StudentSpec:
        return "copy:2", StudentSpec(layers=2)
    return f"x-{name}", f"x-{name}"


def _argv(command: str, fields: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """Flags that set every field of ``fields`` (``{location: FieldInfo}``) and the values expected."""
    params = _params(command)
    argv, expected = [], {}
    for location, info in fields.items():
        name = location.rsplit(".", 1)[-1]
        typed, expected[location] = _sample(name, info)
        param = params[name]
        if typed is True:
            argv.append(param.opts[0])
        elif typed is False:
            argv.append(param.secondary_opts[0])
        else:
            argv += [param.opts[0], str(typed)]
    return argv, expected


def _all_fields(model: type[BaseModel]) -> dict[str, Any]:
    fields = {f"data.{n}": info for n, info in DataConfig.model_fields.items()}
    fields |= {f"training.{n}": info for n, info in TrainingConfig.model_fields.items()}
    return fields | {n: model.model_fields[n] for n in _run_fields(model)}


def _value(config: BaseModel, location: str) -> Any:
    for part in location.split("."):
        config = getattr(config, part)
    return config


@pytest.fixture
def run_config(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The config finetune/distill would run with (the API is replaced by a stub that records it)."""
    seen: dict[str, Any] = {}

    def record(config: BaseModel, **_: Any) -> SimpleNamespace:
        seen["config"] = config
        return SimpleNamespace(summary={"task": {"name": "t"}}, metrics={"accuracy": 0.5}, run_dir="r")

    monkeypatch.setattr(api, "finetune", record)
    monkeypatch.setattr(api, "distill", record)
    monkeypatch.setattr(api, "resolve_distill_config", lambda raw, _plugins: build_config(DistillConfig, raw))
    return seen


@pytest.mark.parametrize(("command", "model"), [("finetune", FinetuneConfig), ("distill", DistillConfig)])
def test_each_flag_sets_its_field(run_config: dict[str, Any], command: str, model: type[BaseModel]) -> None:
    argv, expected = _argv(command, _all_fields(model))
    result = runner.invoke(app, [command, *argv])
    assert result.exit_code == 0, result.output
    for location, value in expected.items():
        assert _value(run_config["config"], location) == value, location


def test_flags_not_given_leave_a_config_file_alone(run_config: dict[str, Any], tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("quiet: true\ndata:\n  group_by_length: true\n  max_length: 64\ntraining:\n  seed: 7\n")
    result = runner.invoke(app, ["finetune", "--config", str(config), "--no-group-by-length", "--seed", "8"])
    assert result.exit_code == 0, result.output
    seen = run_config["config"]
    assert seen.quiet is True and seen.data.max_length == 64
    assert seen.data.group_by_length is False and seen.training.seed == 8


def test_evaluate_flags_set_the_data_config(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake_evaluate(
        model: str, data: DataConfig, *, device: str, precision: str, batch_size: int
    ) -> tuple[Any, dict[str, float]]:
        seen.update(data=data, device=device, precision=precision, batch_size=batch_size)
        return SimpleNamespace(name="t"), {"accuracy": 0.5}

    monkeypatch.setattr(api, "evaluate", fake_evaluate)
    fields = {f"data.{n}": DataConfig.model_fields[n] for n in EVALUATE_DATA_FIELDS}
    training = {f"training.{n}": TrainingConfig.model_fields[n] for n in ("device", "precision")}
    argv, expected = _argv("evaluate", fields | training)
    result = runner.invoke(app, ["evaluate", "some-model", *argv, "--batch-size", "8"])
    assert result.exit_code == 0, result.output
    assert seen["device"] == expected.pop("training.device") and seen["batch_size"] == 8
    assert seen["precision"] == expected.pop("training.precision")
    for location, value in expected.items():
        assert _value(SimpleNamespace(data=seen["data"]), location) == value, location  # type: ignore[arg-type]


def _help(*args: str) -> str:
    result = runner.invoke(app, [*args, "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    return " ".join(result.stdout.split())


def test_help_shows_each_fields_description_and_default() -> None:
    text = _help("distill")
    for model in (DataConfig, TrainingConfig):
        for name, info in model.model_fields.items():
            description = info.description or ""
            assert description[1:30] in text, name
    assert "Truncate inputs to this many tokens. [default: 128]" in text
    assert "--group-by-length --no-group-by-length" in text and "[default: on]" in text
    assert "--learning-rate,--lr FLOAT" in text and "[default: 0.0001]" in text
    assert "--student copy:N|MODEL" in text and "[default: copy:3]" in text


COMMANDS = ["finetune", "distill", "compress", "evaluate", "export", "predict", "web", "explain", "plugins", "tasks"]


@pytest.mark.parametrize("command", [[], *([c] for c in COMMANDS)])
def test_help_names_every_value(command: list[str]) -> None:
    text = _help(*command)
    assert not re.findall(r"<(?:bool|str|int|float|path|list\[str\])>", text), text
    if command in (["distill"], ["finetune"]):
        shown = ("--overwrite Replace", "--quiet -q Plain", "--output -o PATH", "--max-length N", "--task -t TASK")
        assert all(flag in text for flag in shown), text
    if command == ["export"]:
        assert "--onnx Export" in text and "--overwrite Replace" in text
    if command == ["distill"]:
        assert "--set -s NAME.OPTION=VALUE" in text


@pytest.mark.parametrize(
    ("args", "shown", "message"),
    [
        (
            ["distill", "--precision", "fp8"],
            "[auto|fp32|bf16|fp16]",
            "bad value 'fp8' for training.precision: use one of auto, fp32, bf16, fp16",
        ),
        (
            ["finetune", "--device", "tpu"],
            "[auto|cpu|cuda]",
            "bad value 'tpu' for training.device: use one of auto, cpu, cuda",
        ),
        (["evaluate", "m", "--device", "tpu"], "[auto|cpu|cuda]", "bad value 'tpu' for training.device"),
        (
            ["distill", "--padding", "left"],
            "[dynamic|max_length]",
            "bad value 'left' for data.padding: use one of dynamic, max_length",
        ),
        (["export", "m", "--onnx", "--quantize", "int4"], "[int8]", "unknown quantisation 'int4': use one of int8"),
        (
            ["export", "m", "--exporter", "jit"],
            "[dynamo|torchscript]",
            "unknown exporter 'jit': use one of dynamo, torchscript",
        ),
        (["explain", "m", "t", "--views", "some"], "[pred|all]", "unknown views 'some': use one of pred, all"),
        (
            ["predict", "m", "t", "--precision", "bf16"],
            "[auto|fp32|int8]",
            "unknown precision 'bf16': use one of auto, fp32, int8",
        ),
        (
            ["distill", "--max-length", "long"],
            "--max-length N",
            "bad value 'long' for data.max_length: Input should be a valid integer",
        ),
        (["export", "m", "--opset", "x"], "--opset N", "bad value 'x' for --opset: Input should be a valid integer"),
    ],
)
def test_choices_are_listed_and_a_bad_value_is_one_line(args: list[str], shown: str, message: str) -> None:
    assert shown in _help(args[0])
    result = runner.invoke(app, args)
    lines = result.stderr.splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {message}"), lines[0]
    assert result.stdout == ""


def test_the_clis_choices_are_the_librarys() -> None:
    """The export, explain and inference modules import torch or onnxruntime, so the CLI names their choices."""
    from kdkit.attribution import explain
    from kdkit.cli import explain as explain_command
    from kdkit.cli import export as export_command
    from kdkit.cli import predict as predict_command
    from kdkit.export import inference, onnx
    from kdkit.export import stage as export

    assert typing.get_args(export_command.Exporter) == typing.get_args(onnx.Exporter)
    quantize = typing.get_type_hints(export.ExportOptions)["quantize"]
    assert typing.get_args(export_command.Quantization) == typing.get_args(typing.get_args(quantize)[0])
    assert typing.get_args(explain_command.Views) == typing.get_args(explain.Views)
    assert typing.get_args(predict_command.Precision) == typing.get_args(inference.Precision)


def test_the_docs_name_each_fields_flag() -> None:
    """docs/configuration.md's flag column is what the CLI makes (the --set row excepted)."""
    text = (DOCS / "configuration.md").read_text()
    params = _params("distill") | _params("finetune")
    for name, flag in re.findall(r"^\| `(\w+)` \| `([^`]+)` \|", text, flags=re.MULTILINE):
        if name == "options":
            continue
        param = params[name]
        assert flag == " / ".join([", ".join(param.opts), *param.secondary_opts]), name
