"""Issue 10, bad input and security: one-line errors instead of tracebacks or silently wrong runs."""

from __future__ import annotations

import builtins
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kdkit import api
from kdkit.cli import app
from kdkit.cli.flags import read_config_file
from kdkit.config import DataConfig, DistillConfig, build_config
from kdkit.data.loading import load_raw
from kdkit.errors import ConfigError, DataError, ModelError
from kdkit.models.loading import check_max_length, load_base_for_task, load_classifier, load_tokenizer
from kdkit.models.students import build_student
from kdkit.plugins.manager import PluginManager
from kdkit.testing import BINARY_TASK

runner = CliRunner()


def _one_line_error(args: list[str], pattern: str) -> str:
    result = runner.invoke(app, [str(arg) for arg in args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), result.stderr
    assert sum(line.startswith("error: ") for line in lines) == 1, result.stderr
    message = " ".join(result.stderr.split())
    assert re.search(pattern, message), message
    return message


# -- encodings ----------------------------------------------------------------------------------------------


def test_a_config_file_that_is_not_utf8_is_one_line_naming_it_and_its_encoding(tmp_path: Path):
    config = tmp_path / "run.yaml"
    config.write_bytes("loss: kd\ndata:\n  task: sst2 # café\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"run.yaml is not UTF-8 text \(byte 0xe9 at line 3.*Latin-1"):
        read_config_file(config)
    _one_line_error(["distill", "--config", config], r"run.yaml is not UTF-8 text .*: save it as UTF-8")
    config.write_bytes("loss: kd\n".encode("utf-16"))
    _one_line_error(["distill", "--config", config], r"it looks like UTF-16\): save it as UTF-8, e.g. iconv -f UTF-16")


def test_a_data_file_that_is_not_utf8_is_one_line_naming_it(tmp_path: Path, tiny_teacher: Path):
    train = tmp_path / "train.csv"
    train.write_bytes("text,label\nun film génial,pos\nnul,neg\n".encode("cp1252"))
    with pytest.raises(DataError, match=r"train.csv is not UTF-8 text \(byte 0xe9 at line 2"):
        load_raw(DataConfig(train_file=train, validation_file=train))
    _one_line_error(
        ["distill", "--teacher", tiny_teacher, "--train-file", train, "--validation-file", train, "--output",
         tmp_path / "run"],
        r"train.csv is not UTF-8 text",
    )  # fmt: skip
    assert not (tmp_path / "run.partial").exists()


# -- --max-length against the model ---------------------------------------------------------------------------


def test_max_length_beyond_the_models_positions_fails_before_training(tmp_path: Path, tiny_teacher: Path):
    long_text = " ".join(["the good film"] * 60)  # ~180 tokens: more than the tiny models' 64 positions
    data = tmp_path / "long.csv"
    data.write_text("text,label\n" + "".join(f"{long_text},{label}\n" for label in ("pos", "neg") * 8))
    args = ["--train-file", data, "--validation-file", data, "--max-length", "100"]
    _one_line_error(
        ["distill", "--teacher", tiny_teacher, "--student", "copy:1", *args, "--output", tmp_path / "run"],
        r"--max-length 100 is longer than the teacher's 64 positions .*: use --max-length 64 or less",
    )
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.partial").exists()
    _one_line_error(
        ["finetune", "--model", tiny_teacher, *args, "--output", tmp_path / "teacher"],
        r"--max-length 100 is longer than the base model's 64 positions",
    )
    assert not (tmp_path / "teacher.partial").exists()
    _one_line_error(["evaluate", tiny_teacher, "--validation-file", data, "--max-length", "100"], "64 positions")


# -- config sections ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "section"), [("training: fast\n", "training"), ("data: 5\n", "data"), ("options: [kd]\n", "options")]
)
def test_a_config_section_of_the_wrong_type_is_an_error_naming_it(tmp_path: Path, text: str, section: str):
    config = tmp_path / "run.yaml"
    config.write_text("loss: kd\n" + text)
    pattern = rf"config file .*run.yaml: '{section}' must be a section \(a mapping of"
    with pytest.raises(ConfigError, match=pattern):
        read_config_file(config)
    _one_line_error(["distill", "--config", config, "--epochs", "1"], pattern)
    with pytest.raises(ConfigError, match=rf"the configuration: '{section}' must be a section"):
        build_config(DistillConfig, {"loss": "kd", section: text.split(": ")[1].strip()})


def test_a_components_options_must_be_a_mapping(tmp_path: Path):
    config = tmp_path / "run.toml"
    config.write_text('loss = "kd"\n[options]\nkd = 3\n')
    with pytest.raises(ConfigError, match=r"'options.kd' must be a mapping of option values, not 3"):
        read_config_file(config)


# -- classes or regression ---------------------------------------------------------------------------------------


def _pair(tmp_path: Path, labels: list[str], suffix: str = ".csv") -> DataConfig:
    path = tmp_path / f"data{suffix}"
    if suffix == ".jsonl":
        rows = [json.dumps({"text": f"text {i}", "label": json.loads(value)}) for i, value in enumerate(labels)]
        path.write_text("\n".join(rows) + "\n")
    else:
        path.write_text("text,label\n" + "".join(f"text {i},{v}\n" for i, v in enumerate(labels)))
    return DataConfig(train_file=path, validation_file=path)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_one_decimal_among_integer_labels_is_an_error_unless_regression_is_asked(tmp_path: Path, suffix: str):
    data = _pair(tmp_path, ["0", "1", "2", "1", "1.5", "0"], suffix)
    with pytest.raises(DataError, match=r"mixes integer labels \(row 1: 0\) with decimal ones \(row 5: 1.5\)"):
        load_raw(data)
    task, _, _ = load_raw(data.model_copy(update={"task_type": "regression"}))
    assert task.is_regression
    with pytest.raises(DataError, match="label 1.5, not one of the task's labels"):
        load_raw(data.model_copy(update={"task_type": "classification"}))
    integers = _pair(tmp_path, ["0", "1", "2", "1"], suffix)
    assert load_raw(integers)[0].label_names == ("0", "1", "2")
    assert load_raw(integers.model_copy(update={"task_type": "regression"}))[0].is_regression
    with pytest.raises(DataError, match=r"--task-type regression, but row 1 .* has label 'pos', not a number"):
        load_raw(_pair(tmp_path, ['"pos"', '"neg"'], suffix).model_copy(update={"task_type": "regression"}))


def test_task_type_on_the_command_line_and_against_a_glue_task(tmp_path: Path, tiny_teacher: Path, glue_dir: Path):
    data = _pair(tmp_path, ["0", "1", "1.5", "0"])
    args = ["--train-file", data.train_file, "--validation-file", data.validation_file, "--output", tmp_path / "r"]
    mixed = r"mixes integer labels .*: pass --task-type regression"
    _one_line_error(["distill", "--teacher", tiny_teacher, *args], mixed)
    with pytest.raises(ConfigError, match="--task-type regression given, but 'sst2' is classification"):
        load_raw(DataConfig(task="sst2", data_dir=glue_dir, task_type="regression", max_train_samples=4))


# -- explain, evaluate ---------------------------------------------------------------------------------------------


def test_explain_refuses_empty_text_and_warns_on_truncation(tiny_teacher: Path):
    pytest.importorskip("kdkit_adkd", reason="the default provider 'ig' comes from the adkd plugin")
    _one_line_error(["explain", tiny_teacher, "   "], r"text 1 is empty: give non-empty text")
    result = runner.invoke(app, ["explain", str(tiny_teacher), " ".join(["good film"] * 50), "--json"])
    assert result.exit_code == 0, result.output
    assert "warning: 1 of 1 text(s) are longer than 64 tokens and were truncated" in " ".join(result.stderr.split())
    assert len(json.loads(result.stdout)["tokens"]) == 64


def test_evaluate_and_explain_say_when_a_path_is_missing_or_an_unfinished_run(tmp_path: Path, tiny_csv):
    missing = tmp_path / "nowhere"
    _one_line_error(["evaluate", missing], r"nowhere does not exist: give a run directory or a saved model directory")
    _one_line_error(["explain", missing, "a text"], r"nowhere does not exist")
    (tmp_path / "run.partial").mkdir()
    unfinished = r"run is an unfinished run \(only run.partial exists\): finish it with --resume first"
    _one_line_error(["evaluate", tmp_path / "run", "--validation-file", tiny_csv[1]], unfinished)
    _one_line_error(["explain", tmp_path / "run", "a text", "--task", "sst2"], unfinished)
    with pytest.raises(ModelError, match=unfinished):
        api.evaluate(tmp_path / "run", DataConfig(validation_file=tiny_csv[1]))


# -- plugins -----------------------------------------------------------------------------------------------------


def test_a_plugin_that_exits_on_import_is_reported_and_isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "exiting_plugin.py").write_text("import sys\nsys.exit(3)\n")
    (tmp_path / "exiting_hook_plugin.py").write_text(
        textwrap.dedent("""
            import sys
            from kdkit.plugin_api import hookimpl

            @hookimpl
            def kdkit_losses():
                sys.exit("no losses today")
        """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    manager = PluginManager(autoload=False, enable=["exiting_plugin", "exiting_hook_plugin"])
    failures = {failure.name: failure.error for failure in manager.failures}
    assert "it called sys.exit(3) (SystemExit)" in failures["exiting_plugin"]
    assert "kdkit_losses() failed: it called sys.exit('no losses today')" in failures["exiting_hook_plugin"]
    assert set(manager.losses) == {"ce", "kd", "hidden", "attention"}  # the built-in ones keep working
    monkeypatch.setenv("KDKIT_PLUGINS", "exiting_plugin")
    result = runner.invoke(app, ["plugins"])
    assert result.exit_code == 0 and "failed: exiting_plugin" in result.stdout


def test_a_plugin_that_calls_os_exit_is_reported_and_the_command_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """os._exit ends a process at once; while kdkit imports a plugin or calls its hooks it raises instead, so
    ``kdkit plugins`` (a real process: nothing would catch a real os._exit) lists the failure and the rest."""
    (tmp_path / "exit_on_import.py").write_text("import os\nos._exit(7)\n")
    (tmp_path / "exit_in_hook.py").write_text(
        textwrap.dedent("""
            from os import _exit
            from kdkit.plugin_api import hookimpl

            @hookimpl
            def kdkit_losses():
                _exit(9)
        """)
    )
    real_exit = os._exit
    monkeypatch.syspath_prepend(str(tmp_path))
    manager = PluginManager(autoload=False, enable=["exit_on_import", "exit_in_hook"])
    assert os._exit is real_exit  # put back once the plugins' code has run
    failures = {failure.name: failure.error for failure in manager.failures}
    assert failures["exit_on_import"] == "module 'exit_on_import' failed to import: it called os._exit(7)"
    assert set(manager.losses) == {"ce", "kd", "hidden", "attention"}
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "KDKIT_PLUGINS": "exit_on_import,exit_in_hook"}
    done = subprocess.run(
        [sys.executable, "-m", "kdkit.cli", "plugins"], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "module 'exit_on_import' failed to import: it called os._exit(7)" in done.stdout
    assert "kdkit_losses() failed: it called os._exit(9)" in done.stdout
    assert "attention" in done.stdout  # the built-in losses are still listed


# -- no model folder's code runs -------------------------------------------------------------------------------------


def _folder_with_code(directory: Path, marker: Path) -> Path:
    """A model folder whose config and tokenizer point at Python code (``auto_map``) that would leave a marker."""
    directory.mkdir(parents=True)
    (directory / "evil.py").write_text(
        textwrap.dedent(f"""
            from pathlib import Path
            Path({str(marker)!r}).write_text("ran")
            from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

            class EvilConfig(BertConfig):
                model_type = "evil-bert"

            class EvilModel(BertForSequenceClassification):
                config_class = EvilConfig

            class EvilTokenizer(BertTokenizer):
                pass
        """)
    )
    auto_map = {
        "AutoConfig": "evil.EvilConfig",
        "AutoModelForSequenceClassification": "evil.EvilModel",
        "AutoTokenizer": ["evil.EvilTokenizer", None],
    }
    config = {"model_type": "evil-bert", "architectures": ["EvilModel"], "auto_map": auto_map, "num_labels": 2}
    (directory / "config.json").write_text(json.dumps(config))
    (directory / "tokenizer_config.json").write_text(json.dumps({"auto_map": auto_map["AutoTokenizer"]}))
    return directory


def test_no_model_folder_code_ever_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_teacher: Path):
    marker = tmp_path / "code-ran"
    folder = _folder_with_code(tmp_path / "evil", marker)
    monkeypatch.setattr(builtins, "input", lambda *args: "y")  # a terminal where the user answers yes
    loaders = {
        "tokenizer": lambda: load_tokenizer(str(folder)),
        "classifier": lambda: load_classifier(str(folder), BINARY_TASK),
        "base model": lambda: load_base_for_task(str(folder), BINARY_TASK),
        "student": lambda: build_student(str(folder), load_classifier(str(tiny_teacher)), BINARY_TASK),
    }
    for what, load in loaders.items():
        with pytest.raises(ModelError):
            load()
        assert not marker.exists(), f"loading a {what} ran the folder's code"
    check_max_length(str(folder), 32)  # gives up quietly (the load itself reports it), runs nothing
    assert not marker.exists()


def test_every_transformers_load_in_kdkit_passes_trust_remote_code_false():
    """No ``from_pretrained`` call in kdkit may leave ``trust_remote_code`` to transformers' default (a prompt)."""
    import ast

    calls = []
    import kdkit

    for path in Path(kdkit.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "from_pretrained":
                trusted = [k.value for k in node.keywords if k.arg == "trust_remote_code"]
                calls.append((f"{path.name}:{node.lineno}", [getattr(value, "value", None) for value in trusted]))
    assert len(calls) >= 4
    assert all(trusted == [False] for _, trusted in calls), calls
