"""Issue 29, silent or misleading: --resume compares what it reuses by content, weights must match config.json,
duplicate YAML keys, advice that works after a non-finite loss, a tab-separated .csv, a file that is not a file."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kdkit import api
from kdkit.cli import app
from kdkit.config import DataConfig, DistillConfig, TrainingConfig
from kdkit.data.loading import load_raw
from kdkit.data.texts import load_yaml
from kdkit.errors import ConfigError, DataError, ModelError, NonFiniteLossError
from kdkit.models.loading import load_classifier
from kdkit.testing import BINARY_TASK, save_tiny_classifier

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


def _config(files: tuple[Path, Path], teacher: Path, output: Path, **training: object) -> DistillConfig:
    values: dict[str, object] = {"epochs": 2, "batch_size": 16, "logging_steps": 2, "learning_rate": 1e-3}
    return DistillConfig(
        loss="kd",
        teacher=str(teacher),
        student="copy:1",
        data=DataConfig(train_file=files[0], validation_file=files[1], max_length=32),
        training=TrainingConfig(**{**values, **training}),  # type: ignore[arg-type]
        output=output,
        quiet=True,
    )


# -- --resume reuses only what it verified -------------------------------------------------------------------------


def test_resume_refuses_a_teacher_whose_weights_were_replaced(tiny_teacher, tiny_csv, tmp_path, plugin_manager):
    teacher = Path(shutil.copytree(tiny_teacher, tmp_path / "teacher"))
    config = _config(tiny_csv, teacher, tmp_path / "run", keep_checkpoints=True)
    finished = api.distill(config, plugins=plugin_manager).run_dir
    partial = finished.rename(tmp_path / "run.partial")  # as an interrupted run leaves it (checkpoints kept)
    shutil.rmtree(teacher)
    save_tiny_classifier(teacher, BINARY_TASK, num_layers=2, seed=7)  # same path, other weights
    resume = config.model_copy(update={"resume": True})
    with pytest.raises(
        ConfigError, match=r"--resume with options that differ .*the teacher's weights model.safetensors"
    ):
        api.distill(resume, plugins=plugin_manager)
    assert partial.is_dir()


# -- weights that do not match config.json -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layers", "pattern"),
    [(1, r"tensor\(s\) of the weights are not used by config.json"), (3, r"tensor\(s\) that config.json asks for")],
)
def test_a_config_json_edited_to_another_depth_is_refused(tiny_teacher, tmp_path, layers: int, pattern: str):
    model = Path(shutil.copytree(tiny_teacher, tmp_path / "teacher"))
    config = json.loads((model / "config.json").read_text())
    assert config["num_hidden_layers"] == 2
    (model / "config.json").write_text(json.dumps({**config, "num_hidden_layers": layers}))
    with pytest.raises(ModelError, match=rf"the teacher .* does not match its config.json: \d+ {pattern}"):
        load_classifier(str(model), BINARY_TASK, role="teacher")


def test_evaluate_refuses_a_teacher_with_fewer_layers_in_config_json(tiny_teacher, tiny_csv, tmp_path):
    model = Path(shutil.copytree(tiny_teacher, tmp_path / "teacher"))
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 1}))
    _one_line_error(["evaluate", model, "--validation-file", tiny_csv[1]], "does not match its config.json")


# -- YAML duplicate keys ---------------------------------------------------------------------------------------------


def test_a_yaml_key_given_twice_is_an_error_naming_it_and_its_lines(tmp_path):
    with pytest.raises(ConfigError, match=r"the key 'training' is given twice \(lines 1 and 3\)"):
        load_yaml("training:\n  epochs: 1\ntraining:\n  batch_size: 2\n", "config file x.yaml")
    with pytest.raises(ConfigError, match=r"the key 'epochs' is given twice \(lines 2 and 3\)"):
        load_yaml("training:\n  epochs: 1\n  epochs: 3\n", "config file x.yaml")
    assert load_yaml("base: &b {epochs: 1}\ntraining:\n  <<: *b\n  batch_size: 2\n", "x") == {
        "base": {"epochs": 1},
        "training": {"epochs": 1, "batch_size": 2},
    }  # a merge key is not a duplicate
    config = tmp_path / "run.yaml"
    config.write_text("loss: kd\ntraining:\n  epochs: 1\nloss: adkd\n")
    _one_line_error(["distill", "--config", config], r"config file .*run.yaml: the key 'loss' is given twice")


# -- a non-finite loss: advice that works, given once ----------------------------------------------------------------


def test_a_non_finite_loss_gives_advice_that_works(tiny_teacher, tiny_csv, tmp_path, plugin_manager):
    output = tmp_path / "run"
    with pytest.raises(NonFiniteLossError) as failed:
        api.distill(_config(tiny_csv, tiny_teacher, output, learning_rate=1e30, warmup_ratio=0), plugins=plugin_manager)
    message = str(failed.value)
    assert "--resume" not in message.replace("--resume would repeat", "")
    assert message.count("lower --learning-rate") == 1 and f"delete {output}.partial first" in message
    shutil.rmtree(f"{output}.partial")  # as the advice says, then a lower learning rate
    result = api.distill(_config(tiny_csv, tiny_teacher, output, epochs=1), plugins=plugin_manager)
    assert result.run_dir == output and (output / "best").is_dir()


# -- input files -----------------------------------------------------------------------------------------------------


def test_a_tab_separated_file_named_csv_says_so(tiny_teacher, tmp_path):
    data = tmp_path / "train.csv"
    data.write_text("text\tlabel\n" + "".join(f"film {i}\t{'pos' if i % 2 else 'neg'}\n" for i in range(8)))
    with pytest.raises(DataError, match=r"looks tab-separated \(its header is 'text\\tlabel'\).*rename it to .tsv"):
        load_raw(DataConfig(train_file=data, validation_file=data))


def test_predict_on_a_device_says_it_is_not_a_regular_file(tiny_export):
    _one_line_error(["predict", tiny_export, "--file", "/dev/zero"], r"/dev/zero is not a regular file")
