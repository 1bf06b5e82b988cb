"""``kdkit compress`` on the command line: bad budgets and teachers are one line; an unmet budget is exit 2
naming the closest trials; and one real trial on tiny models, distilled, pruned, exported and measured."""

from __future__ import annotations

import re
from pathlib import Path
from unittest import mock

import pytest
from compress_fakes import FAKE_TEACHER, FakeRunner, make_inputs
from typer.testing import CliRunner

from kdkit.cli import app
from kdkit.export.inference import OnnxClassifier

runner = CliRunner()


def _args(root: Path, *extra: str) -> list[str]:
    teacher, data = make_inputs(root)
    return [
        "compress", "--teacher", str(teacher), "--output", str(root / "out"), "--task", "tiny",
        "--train-file", str(data.train_file), "--validation-file", str(data.validation_file),
        "--label-names", "neg,pos", "--max-epochs", "1", "--exporter", "torchscript", "--batch-size", "8",
        "--sampler-seed", "0", *extra,
    ]  # fmt: skip


def _one_error(result: object, pattern: str) -> str:
    code, stderr = result.exit_code, result.stderr  # type: ignore[attr-defined]
    assert code == 2, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    assert re.search(pattern, errors[0]), errors[0]
    return errors[0]


@pytest.mark.parametrize(
    ("flag", "value", "pattern"),
    [
        ("--max-latency-ms", "0", "--max-latency-ms 0 is a budget no model can meet"),
        ("--max-latency-ms", "-3", "--max-latency-ms -3 is a budget no model can meet"),
        ("--max-size-mb", "0", "--max-size-mb 0 is a budget no model can meet"),
        ("--max-drop", "-1", "--max-drop -1 asks for a student better than its teacher"),
        ("--trials", "0", "--trials 0: must be 1 or more"),
        ("--losses", "kd,nope", "unknown loss for the search: nope"),
    ],
)
def test_impossible_options_are_one_line(tmp_path, flag, value, pattern):
    _one_error(runner.invoke(app, [*_args(tmp_path), flag, value]), pattern)
    assert not (tmp_path / "out").exists()


def test_a_teacher_that_is_not_a_classifier_is_one_line(tmp_path):
    args = _args(tmp_path)
    not_a_model = tmp_path / "empty"
    not_a_model.mkdir()
    args[args.index("--teacher") + 1] = str(not_a_model)
    _one_error(runner.invoke(app, args), "teacher|config")


def test_budget_unmet_exits_2_naming_the_closest_trials(tmp_path):
    with (
        mock.patch("kdkit.compress.search.measure_teacher", return_value=FAKE_TEACHER),
        mock.patch("kdkit.compress.search.run_trial", FakeRunner()),
    ):
        result = runner.invoke(app, [*_args(tmp_path, "--trials", "2"), "--max-latency-ms", "0.2"])
    line = _one_error(result, "no trial meets the budget")
    assert re.search(r"trial \d .* misses latency p95 [\d.]+ ms > 0.2 ms", line), line
    assert (tmp_path / "out" / "report.md").is_file()


@pytest.mark.slow
def test_one_real_trial_is_distilled_exported_and_measured(tmp_path):
    result = runner.invoke(app, [*_args(tmp_path, "--trials", "1"), "--max-drop", "100"])
    assert result.exit_code == 0, result.stderr
    assert "chosen: trial #0" in result.stdout
    student = OnnxClassifier(tmp_path / "out" / "student", threads=1)
    assert student.predict(["good film"])[0]["label"] in ("neg", "pos")
    assert (tmp_path / "out" / "student" / "README.md").is_file()  # the export's model card
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| teacher |" in report and "| #0 |" in report
    assert (tmp_path / "out" / "teacher.json").is_file()


def test_ctrl_c_in_a_trial_says_to_run_compress_again_not_resume(tmp_path):
    from kdkit.records import runs

    def interrupted(plan, setup, directory):
        half_done = directory / "run.partial"
        half_done.mkdir(parents=True)
        runs._UNFINISHED.append(half_done)  # what a distillation stopped by Ctrl-C leaves
        raise KeyboardInterrupt

    with (
        mock.patch("kdkit.compress.search.measure_teacher", return_value=FAKE_TEACHER),
        mock.patch("kdkit.compress.search.run_trial", interrupted),
    ):
        result = runner.invoke(app, _args(tmp_path, "--trials", "2"))
    assert result.exit_code == 130, result.stderr
    assert "run the command again" in result.stderr and "--resume" not in result.stderr
