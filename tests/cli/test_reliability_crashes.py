"""Issue 21, crashes: inputs, disks and signals that ended in a traceback now end in one line (or a clean exit)."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kdkit import api
from kdkit.attribution import explain, heatmaps
from kdkit.cli import app
from kdkit.cli.flags import parse_set_options, read_config_file
from kdkit.config import DataConfig
from kdkit.errors import ConfigError, DataError, ModelError, StorageError
from kdkit.export import onnx as onnx_conversion
from kdkit.export.inference import OnnxClassifier
from kdkit.export.stage import ExportOptions, export_onnx
from kdkit.models import saving
from kdkit.records.manifests import EXPORT_MANIFEST_FILE
from kdkit.records.runs import START_FILE
from kdkit.training.cache_store import build_entry, load_verified

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def _one_line_error(args: list[object], pattern: str, status: int = 2) -> str:
    result = runner.invoke(app, [str(arg) for arg in args])
    assert result.exit_code == status, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), result.stderr
    assert sum(line.startswith("error: ") for line in lines) == 1 and "Traceback" not in result.stderr
    message = " ".join(result.stderr.split())
    assert re.search(pattern, message), message
    return message


def _subprocess(code: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True, env=env, timeout=timeout
    )


# -- 1. a text argument that is not UTF-8 -------------------------------------------------------------------

NOT_UTF8 = b"\xff\xfe".decode("utf-8", "surrogateescape")  # what Python makes of $'\xff\xfe' in argv


def test_a_text_argument_that_is_not_utf8_is_one_line(tiny_export: Path, tiny_teacher: Path):
    pattern = r"text 1 is not valid UTF-8 \(byte 0xff at character 1\): give UTF-8 text"
    _one_line_error(["predict", tiny_export, NOT_UTF8], pattern)
    _one_line_error(["predict", tiny_export, "fine", NOT_UTF8], r"text 2 is not valid UTF-8")
    _one_line_error(["explain", tiny_teacher, NOT_UTF8], pattern)
    with pytest.raises(DataError, match=pattern):
        OnnxClassifier(tiny_export).predict([NOT_UTF8])


# -- 2. explain --html/--svg where no file can be written ------------------------------------------------------


def test_explain_html_or_svg_that_cannot_be_written_fails_before_any_work(
    tiny_teacher: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded before the output paths were checked")

    monkeypatch.setattr(explain, "load_for_explain", no_model)
    _one_line_error(
        ["explain", tiny_teacher, "a text", "--html", tmp_path],
        rf"--html {tmp_path} is a directory: give a file name, e.g. --html {tmp_path}/heatmap.html",
    )
    (tmp_path / "notes.txt").write_text("a file")
    _one_line_error(
        ["explain", tiny_teacher, "a text", "--svg", tmp_path / "notes.txt" / "map.svg"],
        r"--svg .*map.svg cannot be written: .*notes.txt is a file, not a folder: choose another --svg",
    )
    monkeypatch.setattr(heatmaps.os, "access", lambda path, mode: False)  # a folder we may not write (we are root)
    _one_line_error(["explain", tiny_teacher, "a text", "--svg", tmp_path / "map.svg"], r"is not writable")
    with pytest.raises(ConfigError, match=r"cannot write .*: choose another file"):
        heatmaps.write_html(tmp_path / "notes.txt" / "map.html", [])


# -- 3. export --opset out of range ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exporter", "opset", "message"),
    [
        ("dynamo", 99, r"--opset 99 is not one the dynamo exporter of torch .* writes \(18 to \d+\): use --opset 18"),
        ("dynamo", 5, r"--opset 5 is not one the dynamo exporter"),
        ("torchscript", 99, r"--opset 99 is not one the torchscript exporter"),
    ],
)
def test_export_refuses_an_opset_out_of_range_before_any_work(
    tiny_teacher: Path, tiny_csv, tmp_path: Path, exporter: str, opset: int, message: str
):
    output = tmp_path / "onnx"
    args = ["export", tiny_teacher, "--onnx", "--output", output, "--validation-file", tiny_csv[1]]
    _one_line_error([*args, "--exporter", exporter, "--opset", opset], message)
    assert not output.exists() and not output.with_name("onnx.partial").exists()


def test_export_records_the_opset_the_file_declares(tiny_export: Path):
    manifest = json.loads((tiny_export / EXPORT_MANIFEST_FILE).read_text())
    assert manifest["exporter"]["opset"] == onnx_conversion.written_opset(tiny_export / "onnx" / "model.onnx")
    with pytest.raises(ConfigError, match="newer than onnxruntime"):
        low, high = onnx_conversion.opset_range("dynamo")
        original = onnx_conversion._onnxruntime_runs
        try:
            onnx_conversion._onnxruntime_runs = lambda opset: False  # type: ignore[assignment]
            onnx_conversion.check_opset("dynamo", high)
        finally:
            onnx_conversion._onnxruntime_runs = original  # type: ignore[assignment]


# -- 4. predict --batch-size 0 ---------------------------------------------------------------------------------


def test_predict_batch_size_zero_is_one_line(tiny_export: Path):
    _one_line_error(["predict", tiny_export, "a text", "--batch-size", "0"], r"bad value '0' for --batch-size")
    _one_line_error(["predict", tiny_export, "a text", "--threads", "-1"], r"bad value '-1' for --threads")
    with pytest.raises(DataError, match=r"bad batch size 0: use a batch size of 1 or more"):
        OnnxClassifier(tiny_export).predict(["a text"], batch_size=0)


# -- 5. KDKIT_HOME that cannot be written ------------------------------------------------------------------------


def test_a_kdkit_home_that_cannot_be_written_is_one_line_before_any_work(
    tiny_teacher: Path, tiny_csv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    home = tmp_path / "readonly-home"
    monkeypatch.setenv("KDKIT_HOME", str(home))
    mkdir = Path.mkdir

    def read_only(self: Path, *args: object, **kwargs: object) -> None:
        if self == home or home in self.parents:
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        mkdir(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "mkdir", read_only)
    output = tmp_path / "run"
    args = ["distill", "--base-model", tiny_teacher, "--train-file", tiny_csv[0], "--validation-file", tiny_csv[1]]
    args += ["--max-length", "32"]
    _one_line_error(
        [*args, "--output", output],
        rf"KDKIT_HOME {home} cannot be written \(Read-only file system\): set KDKIT_HOME to a writable folder",
    )
    assert not output.exists() and not output.with_name("run.partial").exists()


# -- 6. a full disk ------------------------------------------------------------------------------------------------


def _disk_full() -> Exception:
    from safetensors import SafetensorError

    return SafetensorError(
        'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })'
    )


def test_disk_full_while_a_model_is_saved_keeps_the_unfinished_run_and_the_finished_one(
    tiny_run: Path, tiny_teacher: Path, tiny_csv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    output = tmp_path / "run"
    shutil.copytree(tiny_run, output)  # an earlier finished run, to be replaced with --overwrite
    before = (output / "run.json").read_bytes()
    save = saving.PreTrainedModel.save_pretrained

    def full_disk(self, directory, *args, **kwargs):  # type: ignore[no-untyped-def]
        if Path(directory).name == "last":  # checkpoints are written; the final models are not
            raise _disk_full()
        return save(self, directory, *args, **kwargs)

    monkeypatch.setattr(saving.PreTrainedModel, "save_pretrained", full_disk)
    args = [
        "distill", "--teacher", tiny_teacher, "--student", "copy:1", "--train-file", tiny_csv[0], "--validation-file",
        tiny_csv[1], "--max-length", "32", "--epochs", "1", "--batch-size", "16", "--output", output, "--overwrite",
    ]  # fmt: skip
    _one_line_error(
        args,
        rf"no space left on device while writing the model to {output}.partial/last \(SafetensorError\): free some "
        rf"space, then continue with --resume: the unfinished run is kept in {output}.partial; {output} is untouched",
    )
    assert (output / "run.json").read_bytes() == before  # the finished run is intact
    partial = output.with_name("run.partial")
    assert (partial / START_FILE).is_file() and any((partial / "checkpoints").iterdir())


def test_disk_full_while_a_cache_entry_is_built_keeps_the_other_entries(tmp_path: Path):
    from datasets import Dataset

    def good(path: str) -> Dataset:
        return Dataset.from_dict({"x": [1, 2, 3]}).map(lambda row: row, cache_file_name=path)

    def full(path: str) -> Dataset:
        Path(path).write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device", path)

    build_entry(tmp_path / "cache", "first", good)
    with pytest.raises(StorageError, match=r"no space left on device while writing the cache entry .*second.arrow"):
        build_entry(tmp_path / "cache", "second", full)
    assert load_verified(tmp_path / "cache", "first", rows=3, columns=["x"], say=print) is not None
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["first.arrow", "first.json"]


def test_disk_full_during_export_says_the_disk_is_full_and_keeps_the_earlier_export(
    tiny_teacher: Path, tiny_export: Path, tiny_csv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    output = tmp_path / "onnx"
    shutil.copytree(tiny_export, output)
    before = (output / EXPORT_MANIFEST_FILE).read_bytes()

    def full(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(onnx_conversion, "_export_dynamo", full)
    with pytest.raises(StorageError) as info:
        export_onnx(
            tiny_teacher, ExportOptions(output=output, data=DataConfig(validation_file=tiny_csv[1]), overwrite=True)
        )
    assert "no space left on device while writing the ONNX model" in str(info.value)
    assert "--exporter" not in str(info.value)
    assert (output / EXPORT_MANIFEST_FILE).read_bytes() == before and not output.with_name("onnx.partial").exists()


# -- 7. Ctrl-C while importing, SIGTERM ---------------------------------------------------------------------------


def test_ctrl_c_while_kdkit_is_still_importing_is_one_line():
    result = _subprocess("""
        import sys
        class Interrupting:  # Ctrl-C arrives while the CLI (torch, transformers ...) is being imported
            def find_spec(self, name, path=None, target=None):
                if name == "kdkit.cli":
                    raise KeyboardInterrupt
        sys.meta_path.insert(0, Interrupting())
        sys.argv = ["kdkit", "tasks"]
        from kdkit.entry import main
        main()
    """)
    assert result.returncode == 130, result.stderr
    assert result.stderr.strip() == "interrupted: kdkit was still starting; nothing was written"


def test_ctrl_c_before_the_command_starts_is_one_line(monkeypatch: pytest.MonkeyPatch):
    from kdkit.models import loading

    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(loading, "quiet_libraries", interrupted)  # what the options before the command run
    result = runner.invoke(app, ["plugins"])
    assert result.exit_code == 130
    assert result.stderr.strip() == "interrupted: no run directory was written yet; run the command again"


@pytest.mark.slow
def test_sigterm_during_training_releases_the_lock_keeps_the_partial_run_and_says_so(
    tiny_teacher: Path, tiny_csv, tmp_path: Path
):
    output = tmp_path / "run"
    args = [
        "distill", "--teacher", str(tiny_teacher), "--student", "copy:1", "--train-file", str(tiny_csv[0]),
        "--validation-file", str(tiny_csv[1]), "--max-length", "32", "--epochs", "2", "--batch-size", "16",
        "--output", str(output), "--quiet",
    ]  # fmt: skip
    result = _subprocess(
        """
        import os, signal, sys
        from transformers import Trainer
        def terminated(self, output_dir):  # `kill PID` while the first checkpoint is written
            os.kill(os.getpid(), signal.SIGTERM)
        Trainer._save_rng_state = terminated
        sys.argv = ["kdkit", *sys.argv[1:]]
        from kdkit.entry import main
        main()
        """,
        *args,
    )
    assert result.returncode == 143, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last == f"terminated (SIGTERM): the unfinished run is kept in {output}.partial; continue it with --resume"
    assert "Traceback" not in result.stderr
    assert (output.with_name("run.partial") / START_FILE).is_file()
    assert not output.with_name("run.lock").exists()  # released: a new run may take it at once


# -- 8. YAML that expands exponentially -----------------------------------------------------------------------------


def _laughs(levels: int = 9) -> str:
    anchors = ["  l0: &l0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    anchors += [f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "loss: hidden\nanchors:\n" + "\n".join(anchors) + f"\noptions:\n  hidden:\n    layers: *l{levels}\n"


def test_a_config_whose_yaml_aliases_expand_exponentially_is_refused_at_once(tmp_path: Path):
    config = tmp_path / "laughs.yaml"
    config.write_text(_laughs())  # 9^10 values once expanded: gigabytes
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"laughs.yaml expands to more than 100,000 values .*: write the values out"):
        read_config_file(config)
    assert time.perf_counter() - start < 5
    _one_line_error(["distill", "--config", config], r"expands to more than 100,000 values")
    with pytest.raises(ConfigError, match=r"--set hidden.layers expands to more than"):
        parse_set_options(["hidden.layers=[&a [1,1,1,1,1,1,1,1,1,1], &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a], "
                           "&c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b], &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c], "
                           "&e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]]"])  # fmt: skip
    config.write_text("loss: hidden\nshared: &layers [1, 2]\noptions:\n  hidden:\n    layers: *layers\n")
    assert read_config_file(config)["options"]["hidden"]["layers"] == [1, 2]  # ordinary aliases still work


# -- 9. an export manifest whose labels do not match the model ---------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (["neg"], r"lists 1 label\(s\): neg, but the model model_quantized.onnx has 2 output\(s\)"),
        (["neg", "pos", "other"], r"lists 3 label\(s\): neg, pos, other, but the model .* has 2 output\(s\)"),
        (["neg", "neg"], r"names a label twice \(neg, neg\)"),
    ],
)
def test_an_export_manifest_whose_labels_do_not_match_the_model_is_refused(
    tiny_export: Path, tmp_path: Path, labels: list[str], message: str
):
    export = tmp_path / "onnx"
    shutil.copytree(tiny_export, export)
    manifest = json.loads((export / EXPORT_MANIFEST_FILE).read_text())
    manifest["task"]["label_names"] = labels
    (export / EXPORT_MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match=message):
        OnnxClassifier(export)
    _one_line_error(["predict", export, "a good film"], message + r".*: export the model again")


# -- 10. --debug ------------------------------------------------------------------------------------------------------


def test_an_unexpected_error_is_one_line_and_debug_shows_its_traceback(
    tiny_teacher: Path, tiny_csv, monkeypatch: pytest.MonkeyPatch
):
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("something kdkit did not expect\nsecond line")

    monkeypatch.setattr(api, "evaluate", broken)
    args = ["evaluate", tiny_teacher, "--validation-file", tiny_csv[1]]
    _one_line_error(
        args,
        r"unexpected RuntimeError: something kdkit did not expect: this is a bug in kdkit; run the command again "
        r"with --debug \(or KDKIT_DEBUG=1\) to see the traceback, and report it",
        status=1,
    )
    for debug_args, env in ((["--debug", *args], {}), (args, {"KDKIT_DEBUG": "1"})):
        result = runner.invoke(app, [str(arg) for arg in debug_args], env=env)
        assert result.exit_code == 1
        assert "Traceback (most recent call last)" in result.stderr and "def broken" not in result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith("error: unexpected RuntimeError")
    monkeypatch.setattr(api, "evaluate", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error", "x")))
    _one_line_error(args, r"error: I/O error: x: check the path and try again")


def test_an_error_while_kdkit_starts_is_one_line_and_debug_shows_its_traceback():
    code = """
        import sys
        class Broken:
            def find_spec(self, name, path=None, target=None):
                if name == "kdkit.cli":
                    raise ImportError("a broken installation")
        sys.meta_path.insert(0, Broken())
        sys.argv = ["kdkit", *sys.argv[1:]]
        from kdkit.entry import main
        main()
    """
    result = _subprocess(code, "tasks")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("error: kdkit failed to start (ImportError: a broken installation)")
    result = _subprocess(code, "--debug", "tasks")
    assert result.returncode == 1 and "Traceback (most recent call last)" in result.stderr


def test_a_closed_output_pipe_ends_quietly(tiny_teacher: Path, tiny_csv, monkeypatch: pytest.MonkeyPatch):
    def closed(*args: object, **kwargs: object) -> None:
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")  # kdkit evaluate ... | head -1

    monkeypatch.setattr(api, "evaluate", closed)
    result = runner.invoke(app, ["evaluate", str(tiny_teacher), "--validation-file", str(tiny_csv[1])])
    assert result.exit_code == 141 and "error" not in result.stderr and "Traceback" not in result.stderr
