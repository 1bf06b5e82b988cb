"""Issue 29, data lost: nothing is written through a link, over an input of the command, or over a file kdkit did not
write, at any depth (:mod:`kdkit.records.safe_paths`, called by every writer through ``RunDirectory``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kdkit import api
from kdkit.cli import app
from kdkit.config import DataConfig, DistillConfig, FinetuneConfig, TrainingConfig
from kdkit.errors import ConfigError
from kdkit.export.stage import ExportOptions, export_onnx
from kdkit.records.locking import RunLock
from kdkit.records.runs import RunDirectory
from kdkit.testing import write_tiny_csv

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def _distill(files: tuple[Path, Path], teacher: Path | str, output: Path, **overrides: object) -> DistillConfig:
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


def _snapshot(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): p.read_bytes().hex() for p in sorted(path.rglob("*")) if p.is_file()}


def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "victim.txt"
    victim.write_text("the user's file")
    return victim


# -- 1. the lock file ---------------------------------------------------------------------------------------


def test_a_lock_file_that_is_a_link_is_refused_and_its_target_untouched(
    tiny_csv, tiny_teacher, tmp_path, plugin_manager
):
    victim = _victim(tmp_path)
    (tmp_path / "X.lock").symlink_to(victim)
    with pytest.raises(ConfigError, match=r"the lock file .*X.lock is a link \(to .*victim.txt\)"):
        api.distill(_distill(tiny_csv, tiny_teacher, tmp_path / "X"), plugins=plugin_manager)
    assert victim.read_text() == "the user's file" and not (tmp_path / "X.partial").exists()


def test_a_lock_file_that_is_a_hard_link_is_refused(tmp_path: Path):
    victim = _victim(tmp_path)
    os.link(victim, tmp_path / "X.lock")
    with pytest.raises(ConfigError, match="is a second name of another file"):
        RunLock(tmp_path / "X").acquire()
    assert victim.read_text() == "the user's file"


def test_a_lock_file_left_by_a_killed_holder_is_reused(tmp_path: Path):
    (tmp_path / "X.lock").write_text("12345\n")  # kill -9 leaves the file; the flock went with the process
    lock = RunLock(tmp_path / "X")
    lock.acquire()
    assert (tmp_path / "X.lock").read_text() == f"{os.getpid()}\n"
    lock.release()
    assert not (tmp_path / "X.lock").exists()


# -- 2. links in an unfinished run ----------------------------------------------------------------------------


@pytest.fixture
def interrupted_run(tiny_teacher: Path, tmp_path: Path, plugin_manager) -> tuple[Path, DistillConfig]:
    """``run.partial`` as a run interrupted after its first epoch leaves it (the step-6 checkpoint), and its config."""
    data = write_tiny_csv(tmp_path / "train.csv", 96, seed=1), write_tiny_csv(tmp_path / "validation.csv", 32, seed=2)
    config = _distill(data, tiny_teacher, tmp_path / "run")
    keep = config.training.model_copy(update={"keep_checkpoints": True})
    finished = api.distill(config.model_copy(update={"training": keep}), plugins=plugin_manager).run_dir
    partial = tmp_path / "run.partial"
    finished.rename(partial)
    shutil.rmtree(partial / "checkpoints" / "checkpoint-12")
    for name in ("best", "last", "run.json", "config.yaml", "kdkit_files.json"):
        shutil.rmtree(partial / name) if (partial / name).is_dir() else (partial / name).unlink(missing_ok=True)
    return partial, config.model_copy(update={"resume": True})


def test_resume_refuses_a_link_in_the_unfinished_run_and_writes_nothing_through_it(
    interrupted_run, tmp_path: Path, plugin_manager
):
    partial, config = interrupted_run
    victim = _victim(tmp_path)
    (partial / "run.json").symlink_to(victim)
    with pytest.raises(ConfigError, match=r"run.partial/run.json is a link \(to .*victim.txt\)"):
        api.distill(config, plugins=plugin_manager)
    assert victim.read_text() == "the user's file"

    (partial / "run.json").unlink()
    users = tmp_path / "users-checkpoints"
    (users / "checkpoint-1").mkdir(parents=True)
    (users / "checkpoint-1" / "notes.txt").write_text("mine")
    shutil.move(partial / "checkpoints", tmp_path / "moved")
    (partial / "checkpoints").symlink_to(users)
    with pytest.raises(ConfigError, match=r"run.partial/checkpoints is a link"):
        api.distill(config, plugins=plugin_manager)
    assert _snapshot(users) == {"checkpoint-1/notes.txt": b"mine".hex()}


def test_a_partial_run_that_is_itself_a_link_is_refused(tiny_csv, tiny_teacher, tmp_path: Path, plugin_manager):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "run.partial").symlink_to(elsewhere)
    config = _distill(tiny_csv, tiny_teacher, tmp_path / "run", resume=True)
    with pytest.raises(ConfigError, match="run.partial is a link"):
        api.distill(config, plugins=plugin_manager)
    with pytest.raises(ConfigError, match="an unfinished run exists"):
        api.distill(config.model_copy(update={"resume": False}), plugins=plugin_manager)
    assert list(elsewhere.iterdir()) == []


# -- 3. an output that is an input --------------------------------------------------------------------------------


@pytest.fixture
def teacher_run(tiny_run: Path, tmp_path: Path) -> Path:
    """A finished run (a teacher) of this test alone."""
    return Path(shutil.copytree(tiny_run, tmp_path / "T"))


def test_distill_refuses_to_write_over_its_own_teacher(teacher_run, tiny_csv, plugin_manager):
    before = _snapshot(teacher_run)
    for teacher in (teacher_run, teacher_run / "best"):
        config = _distill(tiny_csv, teacher, teacher_run, overwrite=True)
        with pytest.raises(ConfigError, match=r"--output .*T would replace the teacher .*, an input of this command"):
            api.distill(config, plugins=plugin_manager)
    config = _distill(tiny_csv, teacher_run / "best", teacher_run / "best" / "inside")
    with pytest.raises(ConfigError, match="is inside the teacher"):
        api.distill(config, plugins=plugin_manager)
    assert _snapshot(teacher_run) == before


def test_finetune_refuses_to_write_over_its_base_model_or_data(teacher_run, tiny_csv, tmp_path, plugin_manager):
    before = _snapshot(teacher_run)
    data = DataConfig(train_file=tiny_csv[0], validation_file=tiny_csv[1], max_length=32)
    config = FinetuneConfig(model=str(teacher_run / "best"), data=data, output=teacher_run, overwrite=True, quiet=True)
    with pytest.raises(ConfigError, match="would replace the base model"):
        api.finetune(config, plugins=plugin_manager)
    assert _snapshot(teacher_run) == before
    with pytest.raises(ConfigError, match="would replace the training data"):
        api.finetune(config.model_copy(update={"output": tiny_csv[0].parent}), plugins=plugin_manager)


def test_the_cli_says_so_in_one_line(teacher_run, tiny_csv):
    args = ["distill", "--plugin", "kd", "--teacher", str(teacher_run), "--student", "copy:1"]
    args += ["--train-file", str(tiny_csv[0]), "--validation-file", str(tiny_csv[1]), "--max-length", "32"]
    result = runner.invoke(app, [*args, "--output", str(teacher_run), "--overwrite"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "would replace the teacher" in result.output


def test_an_export_goes_inside_its_run_but_never_over_it(teacher_run, tiny_csv):
    options = ExportOptions(output=teacher_run / "best", data=DataConfig(validation_file=tiny_csv[1]), overwrite=True)
    with pytest.raises(ConfigError, match="would replace the model being exported"):
        export_onnx(teacher_run, options)


# -- 4. a folder of the user's named like an unfinished export ----------------------------------------------------


def test_export_refuses_a_users_folder_named_like_its_partial(tiny_teacher, tiny_csv, tmp_path):
    notes = tmp_path / "notes.partial"
    (notes / "2026").mkdir(parents=True)
    (notes / "2026" / "january.md").write_text("notes")
    before = _snapshot(notes)
    with pytest.raises(ConfigError, match=r"notes.partial exists and kdkit did not write it \(it holds 2026\)"):
        export_onnx(
            tiny_teacher, ExportOptions(output=tmp_path / "notes", data=DataConfig(validation_file=tiny_csv[1]))
        )
    assert _snapshot(notes) == before and not (tmp_path / "notes").exists()


# -- 5. a file of the user's deep inside a finished run -------------------------------------------------------------


@pytest.mark.parametrize("place", ["best/my-notes.md", "tensorboard/plots/figure.png", "checkpoints/mine.txt"])
def test_overwrite_refuses_a_run_with_a_users_file_at_any_depth(teacher_run, place: str):
    RunDirectory(teacher_run, overwrite=True).check()  # as kdkit wrote it: replaceable
    (teacher_run / place).parent.mkdir(parents=True, exist_ok=True)
    (teacher_run / place).write_text("mine")
    with pytest.raises(ConfigError, match=rf"also holds {place} \(not written by kdkit\)"):
        RunDirectory(teacher_run, overwrite=True).check()


def test_overwrite_refuses_a_run_holding_a_link(teacher_run, tmp_path):
    victim = _victim(tmp_path)
    (teacher_run / "best" / "extra.json").symlink_to(victim)
    with pytest.raises(ConfigError, match=r"also holds best/extra.json"):
        RunDirectory(teacher_run, overwrite=True).check()


def test_overwrite_checks_an_export_in_a_run_against_its_own_list(teacher_run, tiny_csv):
    export = export_onnx(teacher_run, ExportOptions(data=DataConfig(validation_file=tiny_csv[1]))).directory
    assert export == teacher_run / "onnx"
    RunDirectory(teacher_run, overwrite=True).check()
    (export / "onnx" / "mine.onnx").write_text("mine")
    with pytest.raises(ConfigError, match=r"also holds onnx/onnx/mine.onnx"):
        RunDirectory(teacher_run, overwrite=True).check()


# -- export and web take the lock training takes -------------------------------------------------------------------


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


def test_export_and_web_wait_for_no_one_and_refuse_an_output_in_use(tiny_teacher, tiny_export, tiny_csv, tmp_path):
    from kdkit.web.page import make_page

    holder = _hold_lock(tmp_path / "out")
    try:
        with pytest.raises(ConfigError, match=r"out is in use by PID \d+"):
            export_onnx(
                tiny_teacher, ExportOptions(output=tmp_path / "out", data=DataConfig(validation_file=tiny_csv[1]))
            )
        with pytest.raises(ConfigError, match=r"out is in use by PID \d+"):
            make_page(tiny_export, tmp_path / "out", cdn=True)
    finally:
        holder.kill()
        holder.wait()
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_explain_never_writes_its_heatmap_over_a_file_of_the_model(teacher_run):
    before = _snapshot(teacher_run)
    for target in (teacher_run / "best" / "config.json", teacher_run / "run.json"):
        result = runner.invoke(app, ["explain", str(teacher_run), "a fine film", "--html", str(target)])
        assert result.exit_code == 2 and "Traceback" not in result.output
        assert "would replace a file of the model" in " ".join(result.output.split())
    assert _snapshot(teacher_run) == before
