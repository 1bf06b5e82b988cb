"""The search and its bookkeeping with a fake trial runner: resume, a crashing trial, Ctrl-C, the budget unmet,
a study made for another teacher, a storage that cannot be opened, two processes sharing one SQLite study."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock
from xml.etree import ElementTree

import optuna
import pytest
from compress_fakes import FAKE_TEACHER, FakeRunner, make_inputs, options

from kdkit.compress import Budget, BudgetUnmet, compress
from kdkit.compress.study import STUDY_FILE, storage_url
from kdkit.errors import ConfigError

HERE = Path(__file__).resolve().parent


@pytest.fixture
def fake_teacher():
    with mock.patch("kdkit.compress.search.measure_teacher", return_value=FAKE_TEACHER) as patched:
        yield patched


def _states(output: Path) -> list[str]:
    study = optuna.load_study(study_name="kdkit-compress", storage=storage_url(output, None))
    return [trial.state.name for trial in study.get_trials()]


def test_a_rerun_continues_the_study(tmp_path, fake_teacher):
    first = FakeRunner()
    result = compress(options(tmp_path, tmp_path / "out", trials=2), runner=first)
    assert len(first.calls) == 2 and len(result.rows) == 2
    assert (tmp_path / "out" / STUDY_FILE).is_file()
    second = FakeRunner()
    result = compress(options(tmp_path, tmp_path / "out", trials=3), runner=second)
    assert len(second.calls) == 1  # only the missing trial
    assert second.calls[0] not in first.calls  # the seeded sampler does not draw the first run's trials again
    assert sorted(row["number"] for row in result.rows) == [0, 1, 2]
    again = FakeRunner()
    compress(options(tmp_path, tmp_path / "out", trials=3), runner=again)
    assert again.calls == []  # the study already holds 3 finished trials


def test_the_chosen_student_is_the_most_accurate_within_budget(tmp_path, fake_teacher):
    budget = Budget(max_latency_ms=1.5)  # fake latency: depth × 1.2 (fp32) or × 0.6 (int8): depth 2 fits in int8 only
    result = compress(options(tmp_path, tmp_path / "out", trials=6, budget=budget), runner=FakeRunner())
    chosen = result.chosen
    assert chosen is not None
    meeting = [row for row in result.rows if row["measured"]["p95_ms"] <= 1.5]
    assert chosen["measured"]["score"] == max(row["measured"]["score"] for row in meeting)
    assert (
        json.loads((tmp_path / "out" / "student" / "kdkit_export.json").read_text())["depth"]
        == chosen["params"]["depth"]
    )
    report = (tmp_path / "out" / "report.md").read_text()
    assert f"Trial #{chosen['number']}" in report and "## Pareto frontier" in report
    svg = ElementTree.parse(tmp_path / "out" / "frontier.svg").getroot()  # well-formed
    plotted = json.loads(svg.find("{http://www.w3.org/2000/svg}metadata").text)
    assert len(plotted["trials"]) == 6 and plotted["budget"]["latency_ms"] == 1.5
    assert plotted["chosen"][1] == pytest.approx(100 * chosen["measured"]["score"])


def test_a_crashing_trial_is_recorded_failed_and_the_search_goes_on(tmp_path, fake_teacher):
    runner = FakeRunner(fail={0: RuntimeError("CUDA out of memory, say")})
    result = compress(options(tmp_path, tmp_path / "out", trials=2), runner=runner)
    assert len(runner.calls) == 3  # the failed trial does not count towards the 2
    assert result.failed == 1 and len(result.rows) == 2
    assert _states(tmp_path / "out").count("FAIL") == 1
    assert "CUDA out of memory, say" in (tmp_path / "out" / "report.md").read_text()


def test_ctrl_c_marks_the_trial_failed_and_the_next_run_continues(tmp_path, fake_teacher):
    runner = FakeRunner(fail={1: KeyboardInterrupt()})
    with pytest.raises(KeyboardInterrupt):
        compress(options(tmp_path, tmp_path / "out", trials=3), runner=runner)
    assert _states(tmp_path / "out") == ["COMPLETE", "FAIL"]
    resumed = FakeRunner()
    result = compress(options(tmp_path, tmp_path / "out", trials=3), runner=resumed)
    assert len(resumed.calls) == 2 and len(result.rows) == 3


def test_budget_unmet_names_the_closest_trials(tmp_path, fake_teacher):
    budget = Budget(max_latency_ms=0.1, max_drop=50)
    with pytest.raises(BudgetUnmet) as caught:
        compress(options(tmp_path, tmp_path / "out", trials=2, budget=budget), runner=FakeRunner())
    message = str(caught.value)
    assert "no trial meets the budget" in message and "trial 0" in message and "latency p95" in message
    assert "\n" not in message
    assert len(caught.value.result.rows) == 2 and caught.value.result.chosen is None  # the search's findings
    assert "No finished trial meets the budget" in (tmp_path / "out" / "report.md").read_text()
    assert not (tmp_path / "out" / "student").exists()


def test_a_study_made_for_another_teacher_is_refused(tmp_path, fake_teacher):
    compress(options(tmp_path, tmp_path / "out", trials=1), runner=FakeRunner())
    other = tmp_path / "other"
    other.mkdir()
    from kdkit.testing.models import BINARY_TASK, save_tiny_classifier

    save_tiny_classifier(other / "teacher", BINARY_TASK, num_layers=3, seed=7)
    with pytest.raises(ConfigError, match="was made for teacher_sha256"):
        compress(options(tmp_path, tmp_path / "out", trials=2, teacher=other / "teacher"), runner=FakeRunner())


def test_a_storage_that_cannot_be_opened_is_one_line(tmp_path, fake_teacher):
    with pytest.raises(ConfigError, match="cannot open the study storage") as caught:
        compress(options(tmp_path, tmp_path / "out", storage="nosuchdb://x/y"), runner=FakeRunner())
    assert "\n" not in str(caught.value)


@pytest.mark.slow
def test_two_processes_share_one_sqlite_study(tmp_path):
    make_inputs(tmp_path)  # once, before the processes start
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, str(HERE / "compress_fakes.py"), str(tmp_path), str(tmp_path / "out"), "4"]
    processes = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]  # fmt: skip
    outputs = [process.communicate(timeout=240) for process in processes]
    tracebacks = [err[err.find("Traceback") :][:3000] for _, err in outputs]
    assert all(process.returncode == 0 for process in processes), tracebacks
    calls = [json.loads(out.strip().splitlines()[-1])["calls"] for out, _ in outputs]
    states = _states(tmp_path / "out")
    assert states.count("COMPLETE") == sum(calls) >= 4  # every trial either process ran is in the one study
    assert sum(calls) <= 5  # each process stops once the study holds 4 (one may have been running then)
