"""Fixtures of the compress tests: the tiny teacher, its data, and its ONNX export (made once)."""

from __future__ import annotations

from pathlib import Path

import pytest
from compress_fakes import make_inputs

from kdkit.config import DataConfig


@pytest.fixture(scope="session")
def tiny_inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DataConfig]:
    return make_inputs(tmp_path_factory.mktemp("compress-inputs"))


@pytest.fixture(scope="session")
def tiny_export(tiny_inputs: tuple[Path, DataConfig], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny teacher exported to ONNX (fp32 and int8, torchscript: fast)."""
    from kdkit.export.stage import ExportOptions, export_onnx

    teacher, data = tiny_inputs
    output = tmp_path_factory.mktemp("compress-export") / "onnx"
    export_onnx(teacher, ExportOptions(output=output, data=data, exporter="torchscript", quantize="int8"))
    return output
