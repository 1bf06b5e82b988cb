"""Issue 21, data lost: ``--overwrite`` replaces only what kdkit itself wrote (a run or an export it recognises by
its records); anything else is refused with a one-line error, before any work, and left as it was."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kdkit import api
from kdkit.cli import app
from kdkit.config import DataConfig, DistillConfig, TrainingConfig
from kdkit.errors import ConfigError
from kdkit.export.stage import ExportOptions, export_onnx
from kdkit.records.runs import RunDirectory

runner = CliRunner()


def _distill(files: tuple[Path, Path], teacher: Path, output: Path) -> DistillConfig:
    return DistillConfig(
        loss="kd",
        teacher=str(teacher),
        student="copy:1",
        data=DataConfig(train_file=files[0], validation_file=files[1], max_length=32),
        training=TrainingConfig(epochs=1, batch_size=16, learning_rate=1e-3),
        output=output,
        overwrite=True,
        quiet=True,
    )


def _users_folder(path: Path) -> dict[str, str]:
    path.mkdir(parents=True)
    (path / "thesis.tex").write_text("months of work")
    (path / "figures").mkdir()
    (path / "figures" / "plot.png").write_text("png")
    return _snapshot(path)


def _snapshot(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): p.read_bytes().hex() for p in sorted(path.rglob("*")) if p.is_file()}


def test_distill_overwrite_refuses_a_folder_of_the_users_files(tiny_csv, tiny_teacher, tmp_path, plugin_manager):
    folder = tmp_path / "mine"
    before = _users_folder(folder)
    with pytest.raises(ConfigError, match=r"not a kdkit run or export \(it holds figures, thesis.tex\)"):
        api.distill(_distill(tiny_csv, tiny_teacher, folder), plugins=plugin_manager)
    assert _snapshot(folder) == before and not folder.with_name("mine.partial").exists()


def test_distill_overwrite_from_the_cli_exits_with_one_line_and_keeps_the_files(tiny_csv, tiny_teacher, tmp_path):
    folder = tmp_path / "mine"
    before = _users_folder(folder)
    train, validation = tiny_csv
    args = ["distill", "--plugin", "kd", "--teacher", str(tiny_teacher), "--student", "copy:1"]
    args += ["--train-file", str(train), "--validation-file", str(validation), "--max-length", "32"]
    result = runner.invoke(app, [*args, "--epochs", "1", "--output", str(folder), "--overwrite"])
    assert result.exit_code != 0
    assert "--overwrite replaces only what kdkit wrote" in result.output and "Traceback" not in result.output
    assert _snapshot(folder) == before


def test_overwrite_of_the_current_folder_is_refused(tmp_path, monkeypatch):
    folder = tmp_path / "mine"
    before = _users_folder(folder)
    monkeypatch.chdir(folder)
    with pytest.raises(ConfigError, match="holds the current folder"):
        RunDirectory(Path("."), overwrite=True).check()
    with pytest.raises(ConfigError, match="holds the current folder"):
        RunDirectory(Path(".."), overwrite=True).check()
    assert _snapshot(folder) == before


def test_overwrite_of_a_plain_file_is_refused_and_the_file_kept(tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    with pytest.raises(ConfigError, match="a file that kdkit did not write"):
        RunDirectory(target, overwrite=True).start_fresh()
    assert target.read_text() == "keep me" and not list(tmp_path.glob("notes.txt.old-*"))


def test_overwrite_replaces_a_kdkit_run_but_not_the_users_file_put_inside_it(tiny_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    RunDirectory(run, overwrite=True).check()  # a kdkit run: replaceable
    (run / "my-notes.md").write_text("notes")
    with pytest.raises(ConfigError, match=r"the kdkit run .* also holds my-notes.md \(not written by kdkit\)"):
        RunDirectory(run, overwrite=True).check()
    empty = tmp_path / "empty"
    empty.mkdir()
    RunDirectory(empty, overwrite=True).check()  # nothing to lose


def test_export_overwrite_refuses_a_folder_of_the_users_files(tiny_teacher, tiny_csv, tmp_path):
    folder = tmp_path / "site"
    before = _users_folder(folder)
    with pytest.raises(ConfigError, match="not a kdkit run or export"):
        export_onnx(
            tiny_teacher, ExportOptions(output=folder, data=DataConfig(validation_file=tiny_csv[1]), overwrite=True)
        )
    assert _snapshot(folder) == before and not folder.with_name("site.partial").exists()


def test_export_overwrite_replaces_an_earlier_export_but_never_the_model_it_exports(
    tiny_export, tiny_teacher, tmp_path
):
    import shutil

    again = tmp_path / "onnx"
    shutil.copytree(tiny_export, again)
    RunDirectory(again, overwrite=True).start_fresh()  # an earlier kdkit export: replaceable
    before = _snapshot(tiny_teacher)
    with pytest.raises(ConfigError, match="would replace the model being exported"):
        export_onnx(tiny_teacher, ExportOptions(output=tiny_teacher, overwrite=True))
    with pytest.raises(ConfigError, match="would replace the model being exported"):
        export_onnx(tiny_teacher, ExportOptions(output=tiny_teacher.parent, overwrite=True))
    assert _snapshot(tiny_teacher) == before
    assert os.path.isdir(tiny_teacher)
