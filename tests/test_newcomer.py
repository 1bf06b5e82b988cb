"""Issue 14: a newcomer's first hour. README's commands, in order, in the environment README's first command
creates (tests/newcomer_walk.py: a cached virtual environment with only what README installs), each step
without an error, a traceback or a carriage-return progress bar."""

from __future__ import annotations

from pathlib import Path

import newcomer_walk as walk_module
import pytest
from newcomer_walk import README, install_commands, kdkit_commands, small

TEXT = README.read_text()


def test_the_walk_reads_readme_install_line_and_its_commands_in_order():
    installs = install_commands(TEXT)
    assert installs and all(words[:2] == ["pip", "install"] for words in installs)
    assert any("-e" in words and any(w.startswith(".[") or w == "." for w in words) for words in installs)
    commands = kdkit_commands(TEXT)
    names = [words[1] for words in commands]
    assert names[0] == "distill"  # README's first command
    for later in ("tasks", "plugins", "finetune", "evaluate", "export", "predict", "explain"):
        assert later in names, f"README's quickstart has no 'kdkit {later}'"
    assert names.index("export") < names.index("predict")  # predict reads what export wrote
    first = small(commands[0])
    assert first[: len(commands[0])] == commands[0] and "--teacher-epochs" in first


def test_a_step_with_a_traceback_or_a_redrawn_bar_fails():
    ok = walk_module.Step(["kdkit", "tasks"], 0, 1.0, "sst2 ...\n")
    assert ok.problems == []
    crash = walk_module.Step(["kdkit", "x"], 1, 1.0, "Traceback (most recent call last):\n  ...\n")
    assert crash.problems == ["exit status 1", "a Python traceback"]
    bar = walk_module.Step(["kdkit", "x"], 0, 1.0, "teacher signals 10%\rteacher signals 20%\n")
    assert bar.problems == ["carriage returns (a redrawn progress bar)"]


@pytest.mark.e2e
@pytest.mark.slow
def test_readme_walk_in_the_environment_readme_installs(tmp_path: Path, shared_dir: Path):
    """The walk CI runs: every step of README succeeds in README's own environment, its output readable in a log."""
    venv = walk_module.environment()  # .ci/run builds it up front (python tests/newcomer_walk.py install)
    steps = walk_module.walk(tmp_path, shared_dir, venv)
    report = "\n".join(f"{' '.join(s.command)}: {s.problems or 'ok'} ({s.seconds:.0f} s)" for s in steps)
    failed = [s for s in steps if s.problems]
    assert not failed, f"{report}\n--- output of the failing step ---\n{failed[0].output[-4000:]}"
    assert len(steps) == len(kdkit_commands(TEXT)), report
    first = steps[0].output
    assert "the default teacher:" in first and "steps of" in first  # its budget, said before it starts
    assert "distill sst2: step" in first and "ETA" in first  # plain progress lines in a log
    explain = next(s for s in steps if s.command[1] == "explain").output
    assert "highest:" in explain  # token scores as text when not on a terminal
