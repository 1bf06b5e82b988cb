"""Issue 21, silently wrong or misleading: options, data and models that were used wrongly, ignored or described
the wrong way now give one line saying what is really the matter."""

from __future__ import annotations

import json
import re
import shutil
import textwrap
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from kdkit.api import resolve_distill_config
from kdkit.cli import app
from kdkit.config import DataConfig, DistillConfig, build_config
from kdkit.data.checks import glue_name_warning
from kdkit.data.loading import load_raw
from kdkit.data.tasks import get_task
from kdkit.errors import ConfigError, DataError, KdkitWarning, ModelError
from kdkit.models.loading import load_classifier, load_tokenizer
from kdkit.models.students import build_student
from kdkit.plugins.manager import PluginManager, get_plugin_manager
from kdkit.plugins.options import check_options_used, resolve_options
from kdkit.records.manifests import TASK_FILE
from kdkit.testing import BINARY_TASK, save_tiny_classifier, write_tiny_csv
from kdkit.training import teachers

runner = CliRunner()


def _one_line_error(args: list[object], pattern: str) -> str:
    result = runner.invoke(app, [str(arg) for arg in args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), result.stderr
    assert sum(line.startswith("error: ") for line in lines) == 1 and "Traceback" not in result.stderr
    message = " ".join(result.stderr.split())
    assert re.search(pattern, message), message
    return message


def _distill(teacher: Path, files: tuple[Path, Path], output: Path, *extra: object) -> list[object]:
    return [
        "distill", "--teacher", teacher, "--student", "copy:1", "--train-file", files[0], "--validation-file",
        files[1], "--max-length", "32", "--epochs", "1", "--output", output, *extra,
    ]  # fmt: skip


def _labels_csv(path: Path, labels: list[str]) -> Path:
    path.write_text("text,label\n" + "".join(f"a good film number {i},{label}\n" for i, label in enumerate(labels)))
    return path


# -- 11. duplicate label names ----------------------------------------------------------------------------------------


def test_duplicate_label_names_are_an_error(tiny_teacher: Path, tiny_csv, tmp_path: Path):
    with pytest.raises(ConfigError, match=r"label_names: .*'neg' is given twice"):
        build_config(DataConfig, {"label_names": "neg,pos,neg"})
    with pytest.raises(ConfigError, match="at least two labels"):
        build_config(DataConfig, {"label_names": "pos"})
    _one_line_error(
        [*_distill(tiny_teacher, tiny_csv, tmp_path / "run"), "--label-names", "neg,pos,neg"],
        r"bad value .* for data.label_names: .*each label must be named once, but 'neg' is given twice",
    )
    assert not (tmp_path / "run.partial").exists()


# -- 12. training data of one class ----------------------------------------------------------------------------------


@pytest.mark.parametrize("label", ["pos", "1"])
def test_training_data_of_a_single_class_is_an_error_before_training(
    tiny_teacher: Path, tiny_csv, tmp_path: Path, label: str
):
    train = _labels_csv(tmp_path / "train.csv", [label] * 20)
    data = DataConfig(train_file=train, validation_file=tiny_csv[1] if label == "pos" else train)
    message = rf"every one of the 20 training examples has the label '{label}' .*: a classifier needs at least two"
    with pytest.raises(DataError, match=message):
        load_raw(data)
    _one_line_error(_distill(tiny_teacher, (train, data.validation_file), tmp_path / "run"), message)  # type: ignore[arg-type]
    assert not (tmp_path / "run.partial").exists()


# -- 13. options that were ignored ---------------------------------------------------------------------------------


def test_custom_data_options_with_a_glue_task_are_an_error(glue_dir: Path):
    for option, value, flag in (
        ("text_columns", ["review"], "--text-columns"),
        ("label_column", "stars", "--label-column"),
        ("label_names", ["bad", "good"], "--label-names"),
    ):
        data = DataConfig(task="sst2", data_dir=glue_dir, max_train_samples=8, **{option: value})
        with pytest.raises(ConfigError, match=rf"{flag} given with the GLUE task 'sst2', whose columns and labels"):
            load_raw(data)


def test_a_glue_folder_with_custom_data_files_is_an_error_and_a_glue_name_a_warning(
    tiny_teacher: Path, tiny_csv, glue_dir: Path, tmp_path: Path
):
    args = _distill(tiny_teacher, tiny_csv, tmp_path / "run", "--task", "sst2")
    _one_line_error([*args, "--data-dir", glue_dir], r"--data-dir \(a GLUE folder\) given with --train-file")
    data = DataConfig(task="sst2", train_file=tiny_csv[0], validation_file=tiny_csv[1])
    assert "a custom task named 'sst2' is trained on those files" in (glue_name_warning(data) or "")
    assert glue_name_warning(data.model_copy(update={"task": "my-reviews"})) is None
    message = _one_line_error([*args, "--resume"], r"nothing to resume")  # the warning comes first
    assert "warning: --task sst2 names a GLUE task, but the data comes from --train-file" in message


def test_options_of_a_component_that_is_not_part_of_the_loss_are_an_error(tiny_teacher: Path, tiny_csv, tmp_path: Path):
    pytest.importorskip("kdkit_adkd", reason="the adkd loss comes from the adkd plugin")
    args = _distill(tiny_teacher, tiny_csv, tmp_path / "run", "--plugin", "kd")
    _one_line_error(
        [*args, "--set", "adkd.beta=1"],
        r"options are given for 'adkd' .*, which is not part of the chosen loss 'kd': drop them, or choose that loss",
    )
    assert not (tmp_path / "run.partial").exists()
    result = runner.invoke(app, [str(a) for a in [*args, "--set", "ig.steps=2", "--resume"]])
    message = " ".join(result.stderr.split())
    assert "warning: the options of the attribution provider 'ig' are not used: the loss 'kd'" in message


def test_a_presets_own_provider_options_are_no_warning_when_the_attribution_term_is_off():
    """--preset paper sets ig's options; with adkd.ablation=no_attr the loss uses no provider: the preset's own
    values are not the user's and get no warning, values the user gave for ig still do."""
    pytest.importorskip("kdkit_adkd", reason="the adkd loss comes from the adkd plugin")
    plugins = get_plugin_manager()

    def check(options: dict[str, Any]) -> None:
        raw = {"loss": "adkd", "preset": "paper", "data": {"task": "cola"}, "options": options}
        config = resolve_distill_config(raw, plugins)
        check_options_used(plugins, config, resolve_options(plugins, config), get_task("cola"))

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check({"adkd": {"ablation": "no_attr"}})
    with pytest.warns(KdkitWarning, match="the options of the attribution provider 'ig' are not used"):
        check({"adkd": {"ablation": "no_attr"}, "ig": {"steps": 2}})


@pytest.mark.parametrize("value", ["inf", "-.inf", ".nan"])
def test_non_finite_option_values_are_an_error(tiny_teacher: Path, tiny_csv, tmp_path: Path, value: str):
    args = _distill(tiny_teacher, tiny_csv, tmp_path / "run", "--plugin", "kd")
    _one_line_error([*args, "--set", f"kd.temperature={value}"], r"bad value .* for kd.temperature: .*finite")
    with pytest.raises(ConfigError, match=r"training.learning_rate: .*finite number"):
        build_config(DistillConfig, {"training": {"learning_rate": yaml.safe_load(value)}})


# -- 14. a teacher of another task -------------------------------------------------------------------------------


def test_a_teacher_fine_tuned_on_another_task_gets_a_warning(tmp_path: Path, glue_dir: Path, tiny_csv):
    cola = get_task("cola")
    sst2_teacher = save_tiny_classifier(tmp_path / "sst2-teacher", get_task("sst2"))
    with pytest.warns(KdkitWarning, match=r"was fine-tuned on task 'sst2', not 'cola' .*: its predictions may mean"):
        teachers.check_teacher_task(str(sst2_teacher), cola)
    other_labels = BINARY_TASK.__class__(**{**BINARY_TASK.to_dict(), "label_names": ("bad", "good")})
    with pytest.warns(KdkitWarning, match=r"fine-tuned with the labels neg, pos, but the data's are bad, good"):
        teachers.check_teacher_task(str(save_tiny_classifier(tmp_path / "tiny", BINARY_TASK)), other_labels)
    args = [
        "distill", "--teacher", sst2_teacher, "--task", "cola", "--data-dir", glue_dir, "--max-train-samples", "8",
        "--max-length", "32", "--output", tmp_path / "run", "--resume",
    ]  # fmt: skip
    message = _one_line_error(args, r"nothing to resume")
    assert "warning: the teacher" in message and "was fine-tuned on task 'sst2', not 'cola'" in message


# -- 15. a saved model without its tokenizer ---------------------------------------------------------------------


def test_a_saved_model_without_its_tokenizer_file_is_refused(tiny_teacher: Path, tiny_csv, tmp_path: Path):
    model = tmp_path / "teacher"
    shutil.copytree(tiny_teacher, model)
    assert "tokenizer.json" in json.loads((model / TASK_FILE).read_text())["tokenizer_files"]
    (model / "tokenizer.json").unlink()
    message = r"the model .*teacher is incomplete: its tokenizer file tokenizer.json is missing"
    with pytest.raises(ModelError, match=message):
        load_tokenizer(str(model))
    with pytest.raises(ModelError, match=message):
        load_classifier(str(model))
    _one_line_error(["evaluate", model, "--validation-file", tiny_csv[1]], r"is incomplete: its tokenizer file")
    record = json.loads((model / TASK_FILE).read_text())
    del record["tokenizer_files"]  # as a kdkit that did not list them saved it
    (model / TASK_FILE).write_text(json.dumps(record))
    with pytest.raises(ModelError, match=message):
        load_tokenizer(str(model))


# -- 16. plugins that fail to import ---------------------------------------------------------------------------


def _plugin(directory: Path, name: str, body: str) -> str:
    (directory / f"{name}.py").write_text(textwrap.dedent(body))
    return name


def test_a_plugin_that_raises_keyboardinterrupt_on_import_is_reported_and_isolated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    _plugin(tmp_path, "interrupting_plugin", "raise KeyboardInterrupt\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    manager = PluginManager(autoload=False, enable=["interrupting_plugin"])
    failures = {failure.name: failure.error for failure in manager.failures}
    assert (
        failures["interrupting_plugin"] == "module 'interrupting_plugin' failed to import: it raised KeyboardInterrupt"
    )
    assert {"ce", "kd"} <= set(manager.losses)
    monkeypatch.setenv("KDKIT_PLUGINS", "interrupting_plugin")
    result = runner.invoke(app, ["plugins"])
    assert result.exit_code == 0 and "failed: interrupting_plugin" in result.stdout


def test_a_plugin_module_that_fails_to_import_is_reported_as_such_not_as_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    _plugin(tmp_path, "broken_plugin", "import json\nraise ValueError('bad setting')\n")
    _plugin(tmp_path, "needs_missing_plugin", "import a_package_that_is_not_installed\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    manager = PluginManager(autoload=False, enable=["broken_plugin", "needs_missing_plugin", "no_such_plugin"])
    failures = {failure.name: failure.error for failure in manager.failures}
    assert failures["broken_plugin"] == "module 'broken_plugin' failed to import: ValueError('bad setting')"
    assert failures["needs_missing_plugin"].startswith("module 'needs_missing_plugin' failed to import: ")
    assert "a_package_that_is_not_installed" in failures["needs_missing_plugin"]
    assert failures["no_such_plugin"] == "no entry point or module named 'no_such_plugin'"


def test_commands_that_use_no_plugin_do_not_import_plugins(
    tiny_teacher: Path, tiny_csv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    marker = tmp_path / "imported"
    _plugin(tmp_path, "marking_plugin", f"from pathlib import Path\nPath({str(marker)!r}).write_text('x')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("KDKIT_PLUGINS", "marking_plugin")  # as a plugin that calls os._exit() would be
    result = runner.invoke(app, ["evaluate", str(tiny_teacher), "--validation-file", str(tiny_csv[1])])
    assert result.exit_code == 0, result.output
    assert not marker.exists()
    assert runner.invoke(app, ["plugins"]).exit_code == 0 and marker.exists()


# -- 17. messages that pointed the wrong way ------------------------------------------------------------------------


def test_a_model_folder_that_needs_custom_code_says_so(tmp_path: Path):
    folder = tmp_path / "custom"
    folder.mkdir()
    auto_map = {"AutoConfig": "code.MyConfig", "AutoModelForSequenceClassification": "code.MyModel"}
    (folder / "config.json").write_text(json.dumps({"model_type": "my-bert", "auto_map": auto_map}))
    message = r"needs custom code \(auto_map in config.json: code.MyConfig, code.MyModel\), which kdkit never runs"
    with pytest.raises(ModelError, match=message):
        load_classifier(str(folder), role="teacher")
    with pytest.raises(ModelError, match=message):
        build_student(str(folder), None, BINARY_TASK)


def test_a_classifier_head_of_another_size_says_so(tiny_teacher: Path, tmp_path: Path):
    three = _labels_csv(tmp_path / "three.csv", ["a", "b", "c"] * 4)
    _one_line_error(
        ["finetune", "--model", tiny_teacher, "--train-file", three, "--validation-file", three, "--max-length", "32",
         "--output", tmp_path / "teacher"],
        r"the base model .* is a classifier whose head has 2 output\(s\), but the data of task 'custom' needs 3 "
        r"labels: start from the encoder it was fine-tuned from",
    )  # fmt: skip
    assert not (tmp_path / "teacher.partial").exists()


def test_an_onnx_export_given_as_teacher_says_so(tiny_export: Path, tiny_csv, tmp_path: Path):
    _one_line_error(
        _distill(tiny_export, tiny_csv, tmp_path / "run"),
        r"the teacher .* is an ONNX export \(kdkit_export.json\), not a PyTorch model: give the run directory",
    )
    with pytest.raises(ModelError, match="is an ONNX export"):
        load_classifier(str(tiny_export), role="teacher")


def test_a_missing_teacher_or_student_says_it_does_not_exist(tiny_teacher: Path, tiny_csv, tmp_path: Path):
    missing = tmp_path / "no-teacher"
    _one_line_error(_distill(missing, tiny_csv, tmp_path / "run"), rf"the teacher {missing} does not exist")
    args = _distill(tiny_teacher, tiny_csv, tmp_path / "run")
    args[args.index("copy:1")] = "./no/such/student"
    _one_line_error(args, r"the student no/such/student does not exist")
    with pytest.raises(ModelError, match=r"the teacher 'nobody/no-such-model' does not exist here, and no hub model"):
        load_tokenizer("nobody/no-such-model", role="teacher")


def test_a_directory_given_as_a_data_or_config_file_says_so(tiny_teacher: Path, tiny_export: Path, tmp_path: Path):
    folder = tmp_path / "data"
    folder.mkdir()
    files = (folder, write_tiny_csv(tmp_path / "validation.csv", 8))
    _one_line_error(_distill(tiny_teacher, files, tmp_path / "run"), rf"data file {folder} is a directory: give the")
    _one_line_error(["predict", tiny_export, "--file", folder], rf"{folder} is a directory: give the CSV")
    _one_line_error(["distill", "--config", folder], rf"config file {folder} is a directory")
