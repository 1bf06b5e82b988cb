"""The command line: help, listing commands, and one-line errors with exit status 2 for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import kdkit
from kdkit.cli import app
from kdkit.data.tasks import get_task
from kdkit.models.saving import save_model
from kdkit.testing import tiny_classifier, tiny_tokenizer

runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def assert_one_line_error(code: int, stderr: str, pattern: str) -> None:
    """Exit status 2 and exactly one error line, the last thing printed (progress output may precede it)."""
    import re

    assert code == 2, stderr
    lines = [line for line in stderr.replace("\r", "\n").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], stderr
    assert re.search(pattern, errors[0]), errors[0]


def test_version_and_help():
    code, out, _ = run("--version")
    assert code == 0 and out.strip() == f"kdkit {kdkit.__version__}"
    for command in ("finetune", "distill", "evaluate", "plugins", "tasks"):
        code, out, _ = run(command, "--help")
        assert code == 0 and "Usage" in out
    code, out, _ = run("distill", "--help")
    for flag in (
        "--plugin",
        "--teacher",
        "--student",
        "--set",
        "--preset",
        "--no-teacher-cache",
        "--resume",
        "--max-length",
    ):
        assert flag in out


def test_tasks_and_plugins_listings():
    code, out, _ = run("tasks", "--json")
    assert code == 0 and set(json.loads(out)) >= {"cola", "sst2", "mnli", "stsb"}
    code, out, _ = run("plugins", "--json")
    listing = json.loads(out)
    kd = next(c for c in listing["components"] if c["name"] == "kd")
    assert kd["source"] == "built-in" and kd["kind"] == "loss"
    assert kd["options"]["temperature"] == {
        "type": "float",
        "default": 2.0,
        "description": kd["options"]["temperature"]["description"],
    }
    code, out, _ = run("--disable-plugin", "builtin", "plugins", "--json")
    assert all(c["plugin"] != "builtin" for c in json.loads(out)["components"])


@pytest.fixture
def csv_args(tiny_csv: tuple[Path, Path]) -> list[str]:
    return [
        "--train-file",
        str(tiny_csv[0]),
        "--validation-file",
        str(tiny_csv[1]),
        "--max-length",
        "32",
        "--quiet",
        "--student",
        "copy:1",
    ]


def test_unknown_task(tmp_path):
    assert_one_line_error(
        *run("distill", "--task", "sst3", "--output", str(tmp_path / "r"))[::2], "unknown task 'sst3'"
    )


def test_unknown_plugin(tmp_path, tiny_teacher, csv_args):
    code, _, err = run("distill", "--plugin", "nope", "--teacher", str(tiny_teacher), *csv_args)
    assert_one_line_error(code, err, "unknown plugin loss 'nope'.*use one of .*ce, hidden, kd")


def test_missing_data_file(tmp_path, tiny_teacher):
    code, _, err = run(
        "distill",
        "--teacher",
        str(tiny_teacher),
        "--train-file",
        str(tmp_path / "x.csv"),
        "--validation-file",
        str(tmp_path / "x.csv"),
        "--output",
        str(tmp_path / "r"),
    )
    assert_one_line_error(code, err, "data file .*x.csv does not exist")


def test_malformed_csv_row(tmp_path, tiny_teacher):
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\ngood movie,pos\nbad, movie,neg\n")
    code, _, err = run(
        "distill", "--teacher", str(tiny_teacher), "--train-file", str(bad), "--validation-file", str(bad)
    )
    assert_one_line_error(code, err, "malformed row at line 3")


def test_label_outside_the_tasks_labels(tmp_path, tiny_teacher, tiny_csv):
    validation = tmp_path / "validation.csv"
    validation.write_text("text,label\ngood movie,pos\nok movie,neutral\n")
    code, _, err = run(
        "distill",
        "--teacher",
        str(tiny_teacher),
        "--train-file",
        str(tiny_csv[0]),
        "--validation-file",
        str(validation),
    )
    assert_one_line_error(code, err, "label 'neutral', not one of the task's labels \\(neg, pos\\)")


def test_empty_data_set(tmp_path, tiny_teacher, tiny_csv):
    empty = tmp_path / "empty.csv"
    empty.write_text("text,label\n")
    code, _, err = run(
        "distill", "--teacher", str(tiny_teacher), "--train-file", str(empty), "--validation-file", str(tiny_csv[1])
    )
    assert_one_line_error(code, err, "has a header but no examples")


def test_teacher_head_does_not_fit_the_task(tmp_path, tiny_csv):
    task = get_task("mnli")
    tokenizer = tiny_tokenizer(tmp_path / "tok")
    save_model(tiny_classifier("bert", num_labels=3, vocab_size=len(tokenizer)), tokenizer, task, tmp_path / "t3", 32)
    code, _, err = run(
        "distill",
        "--teacher",
        str(tmp_path / "t3"),
        "--train-file",
        str(tiny_csv[0]),
        "--validation-file",
        str(tiny_csv[1]),
        "--output",
        str(tmp_path / "r"),
    )
    assert_one_line_error(code, err, "teacher .* has 3 output\\(s\\) but task 'custom' needs 2 labels")


def test_tokenizer_mismatch(tmp_path, tiny_teacher, csv_args):
    tokenizer = tiny_tokenizer(tmp_path / "tok")
    tokenizer.add_tokens(["zebra", "giraffe"])
    student = tiny_classifier("bert", vocab_size=len(tokenizer))
    save_model(student, tokenizer, get_task("sst2"), tmp_path / "student", 32)
    code, _, err = run(
        "distill",
        "--teacher",
        str(tiny_teacher),
        *csv_args,
        "--student",
        str(tmp_path / "student"),
        "--output",
        str(tmp_path / "r"),
    )
    assert_one_line_error(code, err, "student's tokenizer \\(142 tokens\\) differs from the teacher's")
    assert not (tmp_path / "r").exists()


def test_unwritable_output(tmp_path, tiny_teacher, csv_args):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, _, err = run("distill", "--teacher", str(tiny_teacher), *csv_args, "--output", str(blocker / "run"))
    assert_one_line_error(code, err, "output location .*a-file is not writable")


def test_bad_option_values(tmp_path, tiny_teacher, csv_args):
    code, _, err = run("distill", "--teacher", str(tiny_teacher), *csv_args, "--set", "kd.alpha=2")
    assert_one_line_error(code, err, "bad value 2 for kd.alpha: Input should be less than or equal to 1")
    code, _, err = run("distill", "--teacher", str(tiny_teacher), *csv_args, "--padding", "sideways")
    assert_one_line_error(code, err, "bad value 'sideways' for data.padding")


def test_non_finite_loss_leaves_no_complete_run(tmp_path, tiny_teacher, csv_args):
    code, _, err = run(
        "distill",
        "--teacher",
        str(tiny_teacher),
        "--student",
        "copy:1",
        *csv_args,
        "--learning-rate",
        "1e30",
        "--warmup-ratio",
        "0",
        "--output",
        str(tmp_path / "r"),
    )
    assert_one_line_error(code, err, "the loss became non-finite at step \\d+")
    assert not (tmp_path / "r").exists() and (tmp_path / "r.partial").is_dir()


def test_config_file_with_flag_override(tmp_path, tiny_teacher, tiny_csv):
    config = tmp_path / "run.yaml"
    config.write_text(
        f"loss: kd\nteacher: {tiny_teacher}\nstudent: copy:1\n"
        f"data:\n  train_file: {tiny_csv[0]}\n  validation_file: {tiny_csv[1]}\n  max_length: 32\n"
        "training:\n  epochs: 5\n  batch_size: 32\noptions:\n  kd:\n    temperature: 3\n"
    )
    code, out, err = run(
        "distill",
        "--config",
        str(config),
        "--epochs",
        "1",
        "--set",
        "kd.alpha=0.7",
        "--output",
        str(tmp_path / "r"),
        "--quiet",
    )
    assert code == 0, err
    summary = json.loads((tmp_path / "r" / "run.json").read_text())
    assert summary["config"]["training"]["epochs"] == 1.0
    assert summary["config"]["training"]["batch_size"] == 32
    assert summary["options"]["kd"] == {"alpha": 0.7, "temperature": 3.0, "anneal": False}
    assert "accuracy" in out and "student saved to" in out


@pytest.mark.slow
def test_console_script_exit_status(tmp_path):
    """The installed entry point (a real subprocess) exits 2 with one line on stderr."""
    result = subprocess.run(
        [sys.executable, "-m", "kdkit.cli", "distill", "--task", "nope"],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "COLUMNS": "200"},
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "unknown task 'nope'" in result.stderr


def test_a_bad_student_fails_before_any_teacher_work(tmp_path, monkeypatch):
    """--student copy:x (or copy:0, copy:) is rejected with the config, before a teacher is fine-tuned."""
    from kdkit import api

    monkeypatch.setattr(api, "ensure_teacher", lambda *_, **__: pytest.fail("a teacher was prepared"))
    for spec in ("copy:x", "copy:0", "copy:"):
        code, _, err = run("distill", "--task", "sst2", "--student", spec, "--output", str(tmp_path / "r"))
        assert_one_line_error(code, err, f"bad student '{spec}' \\(copy:N needs a whole number")
    config = tmp_path / "run.yaml"
    config.write_text("student: copy:0\ndata:\n  task: sst2\n")
    assert_one_line_error(*run("distill", "--config", str(config))[::2], "bad student 'copy:0'")
    assert not (tmp_path / "r").exists()
