"""Issue 10, resume and concurrency: complete checkpoints, the run lock, resume checks, Ctrl-C, throughput."""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from kdkit import api
from kdkit.cli import app
from kdkit.config import DataConfig, DistillConfig, TrainingConfig
from kdkit.errors import ConfigError, TrainingError
from kdkit.records.manifests import describe_file
from kdkit.records.runs import START_FILE, Command, RunDirectory
from kdkit.testing import write_tiny_csv
from kdkit.training import stage as training_stage
from kdkit.training.checkpoints import MANIFEST_FILE

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def _config(files: tuple[Path, Path], teacher: Path, output: Path, **overrides: object) -> DistillConfig:
    values: dict[str, object] = {
        "loss": "kd",
        "teacher": str(teacher),
        "student": "copy:1",
        "data": DataConfig(train_file=files[0], validation_file=files[1], max_length=32),
        "training": TrainingConfig(epochs=2, batch_size=16, logging_steps=2, learning_rate=1e-3),
        "output": output,
        "quiet": True,
    }
    values.update(overrides)
    return DistillConfig(**values)  # type: ignore[arg-type]


def _subprocess(code: str, *, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=timeout
    )


@pytest.fixture
def own_data(tmp_path: Path) -> tuple[Path, Path]:
    """Data files of this test alone (some tests edit them)."""
    return write_tiny_csv(tmp_path / "train.csv", 96, seed=1), write_tiny_csv(tmp_path / "validation.csv", 32, seed=2)


@pytest.fixture
def interrupted_run(own_data: tuple[Path, Path], tiny_teacher: Path, tmp_path: Path, plugin_manager) -> Path:
    """``run.partial`` as a run interrupted after its first epoch leaves it: the step-6 checkpoint, no more."""
    finished = api.distill(
        _config(own_data, tiny_teacher, tmp_path / "run", training=TrainingConfig(
            epochs=2, batch_size=16, logging_steps=2, learning_rate=1e-3, keep_checkpoints=True)),
        plugins=plugin_manager,
    ).run_dir  # fmt: skip
    partial = tmp_path / "run.partial"
    finished.rename(partial)
    shutil.rmtree(partial / "checkpoints" / "checkpoint-12")
    for name in ("best", "last", "run.json", "config.yaml"):
        shutil.rmtree(partial / name) if (partial / name).is_dir() else (partial / name).unlink()
    return partial


# -- kill -9 while a checkpoint is written ------------------------------------------------------------------


@pytest.mark.slow
def test_kill_during_a_checkpoint_write_then_resume_continues_from_the_last_complete_one(
    own_data: tuple[Path, Path], tiny_teacher: Path, tmp_path: Path, plugin_manager
):
    output = tmp_path / "run"
    config = _config(own_data, tiny_teacher, output)
    killed = _subprocess(f"""
        import os, signal
        from transformers import Trainer
        from kdkit import api
        from kdkit.config import DistillConfig
        from kdkit.plugins.manager import PluginManager

        save_rng, calls = Trainer._save_rng_state, []
        def dying(self, output_dir):  # the second checkpoint dies after its weights and optimizer are written
            calls.append(output_dir)
            if len(calls) == 2:
                os.kill(os.getpid(), signal.SIGKILL)
            return save_rng(self, output_dir)
        Trainer._save_rng_state = dying
        config = DistillConfig.model_validate_json({config.model_dump_json()!r})
        api.distill(config, plugins=PluginManager(autoload=False))
    """)  # fmt: skip
    assert killed.returncode == -9, killed.stderr[-2000:]
    checkpoints = output.with_name("run.partial") / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["checkpoint-12", "checkpoint-6"]
    assert (checkpoints / "checkpoint-12" / "model.safetensors").is_file()
    assert not (checkpoints / "checkpoint-12" / MANIFEST_FILE).exists()  # recognisably incomplete
    assert (checkpoints / "checkpoint-6" / MANIFEST_FILE).is_file()

    said = io.StringIO()
    resumed = api.distill(
        config.model_copy(update={"resume": True}), plugins=plugin_manager, console=Console(file=said, width=300)
    )
    assert "ignoring the incomplete checkpoint checkpoint-12" in said.getvalue()
    assert "resuming from " + str(checkpoints / "checkpoint-6") in said.getvalue()
    train = resumed.summary["train"]
    assert train["steps"] == 12 and train["resumed_from_step"] == 6
    assert [entry["step"] for entry in resumed.summary["history"]] == [6, 12]
    # run.json's throughput counts the 6 steps trained after resuming, in the time they took
    assert train["examples_per_second"] == pytest.approx(6 * 16 / train["wall_time_s"], rel=0.02)


# -- one run per output ----------------------------------------------------------------------------------


def _hold_lock(target: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    code = f"""
        import time
        from pathlib import Path
        from kdkit.records.locking import RunLock
        RunLock(Path({str(target)!r})).acquire()
        print("locked", flush=True)
        time.sleep(120)
    """
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE, text=True, env=env)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    return holder


def test_a_second_run_with_the_same_output_is_refused_while_the_first_runs(
    interrupted_run: Path, own_data, tiny_teacher: Path, tmp_path: Path, plugin_manager, monkeypatch
):
    output = tmp_path / "run"
    holder = _hold_lock(output)  # the first run, still running
    try:
        for resume in (False, True):
            with pytest.raises(ConfigError, match=rf"{output} is in use by PID {holder.pid} \(another kdkit run\)"):
                api.distill(_config(own_data, tiny_teacher, output, resume=resume), plugins=plugin_manager)
        assert sorted(p.name for p in (interrupted_run / "checkpoints").iterdir()) == ["checkpoint-6"]  # untouched
        # under torchrun only the main process takes the lock: rank 1 does not wait for or fight over it
        monkeypatch.setenv("RANK", "1")
        with RunDirectory(output, resume=True).open(Command.DISTILL, _config(own_data, tiny_teacher, output)):
            pass
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()  # type: ignore[union-attr]
    monkeypatch.delenv("RANK")
    # the holder was killed: its lock went with it, and the run can be resumed
    result = api.distill(_config(own_data, tiny_teacher, output, resume=True), plugins=plugin_manager)
    assert result.summary["train"]["resumed_from_step"] == 6 and not output.with_name("run.lock").exists()


# -- resume accepts only the same run --------------------------------------------------------------------------


def test_resume_refuses_options_that_change_the_run_and_lists_them(
    interrupted_run: Path, own_data: tuple[Path, Path], tiny_teacher: Path, tmp_path: Path, plugin_manager
):
    output = tmp_path / "run"
    start = json.loads((interrupted_run / START_FILE).read_text())
    assert start["command"] == "distill" and start["config"]["student"] == "copy:1"

    def resume(**overrides: object) -> None:
        api.distill(_config(own_data, tiny_teacher, output, resume=True, **overrides), plugins=plugin_manager)

    with pytest.raises(ConfigError, match=r"options that differ .*\(student: 'copy:1' -> 'copy:2'\): resume with"):
        resume(student="copy:2")
    changed = TrainingConfig(epochs=2, batch_size=16, logging_steps=2, learning_rate=3e-3)
    data = DataConfig(train_file=own_data[0], validation_file=own_data[1], max_length=32, max_train_samples=50)
    with pytest.raises(ConfigError) as info:
        resume(training=changed, data=data)
    assert "data.max_train_samples: None -> 50; training.learning_rate: 0.001 -> 0.003" in str(info.value)
    original = own_data[0].read_bytes()
    own_data[0].write_bytes(original.replace(b"good", b"great", 1))
    with pytest.raises(ConfigError, match="the content of data.train_file changed"):
        resume()
    own_data[0].write_bytes(original)
    # how the run is shown or stored may change: logging, quiet, keeping checkpoints, the data files' location
    moved = tmp_path / "moved.csv"
    shutil.copy(own_data[0], moved)
    harmless = TrainingConfig(epochs=2, batch_size=16, logging_steps=5, learning_rate=1e-3, keep_checkpoints=True)
    data = DataConfig(train_file=moved, validation_file=own_data[1], max_length=32)
    result = api.distill(
        _config(own_data, tiny_teacher, output, resume=True, quiet=False, training=harmless, data=data),
        plugins=plugin_manager,
        console=Console(file=io.StringIO()),
    )
    assert result.summary["train"]["resumed_from_step"] == 6 and result.summary["train"]["steps"] == 12


def test_a_partial_run_with_a_pickled_or_changed_checkpoint_file_is_a_one_line_error(
    interrupted_run: Path, own_data, tiny_teacher: Path, tmp_path: Path, plugin_manager
):
    checkpoint = interrupted_run / "checkpoints" / "checkpoint-6"
    rng = next(checkpoint.glob("rng_state*.pth"))
    rng.write_bytes(pickle.dumps(os.getcwd, protocol=2))  # a pickle that would call into Python, not tensors
    config = _config(own_data, tiny_teacher, tmp_path / "run", resume=True)
    with pytest.raises(TrainingError, match=rf"checkpoint {checkpoint} was changed after it was written \({rng.name}"):
        api.distill(config, plugins=plugin_manager)
    # the same file with a record that matches it: torch.load(weights_only=True) refuses it, in one line
    manifest = json.loads((checkpoint / MANIFEST_FILE).read_text())
    manifest["files"][rng.name] = describe_file(rng).model_dump()
    (checkpoint / MANIFEST_FILE).write_text(json.dumps(manifest))
    refused = rf"cannot resume from {checkpoint}: a file there holds Python objects"
    with pytest.raises(TrainingError, match=refused) as info:
        api.distill(config, plugins=plugin_manager)
    assert "\n" not in str(info.value)


# -- Ctrl-C and resumability before any work ---------------------------------------------------------------------


def _distill_args(data: tuple[Path, Path], base: Path, output: Path) -> list[str]:
    return [
        "distill", "--base-model", str(base), "--train-file", str(data[0]), "--validation-file", str(data[1]),
        "--max-length", "32", "--max-train-samples", "32", "--batch-size", "16", "--epochs", "1", "--student",
        "copy:1", "--output", str(output), "--quiet",
    ]  # fmt: skip


def test_ctrl_c_before_the_run_directory_exists_does_not_advise_resume(
    own_data, tiny_teacher: Path, tmp_path: Path, monkeypatch
):
    def interrupt(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "load_raw", interrupt)
    result = runner.invoke(app, _distill_args(own_data, tiny_teacher, tmp_path / "run"))
    assert result.exit_code == 130
    assert "interrupted: no run directory was written yet; run the command again" in " ".join(result.stderr.split())
    assert "--resume" not in result.stderr and not (tmp_path / "run.partial").exists()


def test_resume_is_checked_before_the_default_teacher_is_fine_tuned(own_data, tiny_teacher: Path, tmp_path: Path):
    teachers = Path(os.environ["KDKIT_HOME"]) / "teachers"
    before = set(teachers.iterdir()) if teachers.is_dir() else set()
    result = runner.invoke(app, [*_distill_args(own_data, tiny_teacher, tmp_path / "run"), "--resume"])
    assert result.exit_code == 2 and "nothing to resume" in result.stderr
    assert (set(teachers.iterdir()) if teachers.is_dir() else set()) == before  # no teacher was fine-tuned


def test_ctrl_c_during_the_default_teacher_fine_tune_then_resume_finishes_the_run(
    own_data, tiny_teacher: Path, tmp_path: Path, monkeypatch
):
    output = tmp_path / "run"
    train_from = training_stage.train_from

    def interrupted_teacher(trainer, checkpoint):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    monkeypatch.setattr(training_stage, "train_from", interrupted_teacher)
    result = runner.invoke(app, _distill_args(own_data, tiny_teacher, output))
    assert result.exit_code == 130, result.output
    message = " ".join(result.stderr.split())
    assert f"the unfinished run is kept in {output}.partial; continue it with --resume" in message, message
    assert (output.with_name("run.partial") / START_FILE).is_file()
    monkeypatch.setattr(training_stage, "train_from", train_from)
    result = runner.invoke(app, [*_distill_args(own_data, tiny_teacher, output), "--resume"])
    assert result.exit_code == 0, result.output
    assert (output / "run.json").is_file() and not output.with_name("run.partial").exists()
