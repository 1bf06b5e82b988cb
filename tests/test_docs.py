"""Documentation stays in step with the code."""

from __future__ import annotations

import ast
import re
import sys
import types
from pathlib import Path

import pytest
from pydantic import BaseModel

from kdkit.config import DataConfig, DistillConfig, FinetuneConfig, TrainingConfig

DOCS = Path(__file__).resolve().parents[1] / "docs"
README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.parametrize("model", [DistillConfig, FinetuneConfig, DataConfig, TrainingConfig])
def test_every_option_is_documented(model: type[BaseModel]):
    text = (DOCS / "configuration.md").read_text()
    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            continue
        assert f"| `{name}` |" in text, f"{model.__name__}.{name} is missing from docs/configuration.md"


def test_readme_starts_with_the_two_commands():
    lines = README.read_text().splitlines()
    block = lines[lines.index("```bash") + 1 : lines.index("```bash") + 3]
    assert "kdkit distill --plugin kd --task sst2" in block[0]
    assert block[1].endswith("python -m pytest -q")


def test_ci_runs_the_readme_test_command():
    ci = (README.parent / ".ci" / "run").read_text()
    assert "python -m pytest -q" in ci


# -- docs/writing-plugins.md shows the example plugin's real code ---------------------------------------------

WRITING = DOCS / "writing-plugins.md"
EXAMPLE = README.parent / "examples" / "kdkit-occlusion"


def _marked_blocks(text: str, marker: str) -> list[tuple[str, str]]:
    """(argument, code) for each fenced block right after ``<!-- marker: argument -->``."""
    pattern = rf"^<!-- {marker}: (.+?) -->\n```[a-z]*\n(.*?)^```"
    return re.findall(pattern, text, flags=re.MULTILINE | re.DOTALL)


def test_writing_plugins_shows_the_example_files_verbatim():
    text = WRITING.read_text()
    files = _marked_blocks(text, "file")
    assert {path for path, _ in files} >= {
        "examples/kdkit-occlusion/pyproject.toml",
        "examples/kdkit-occlusion/kdkit_occlusion/plugin.py",
        "examples/kdkit-occlusion/tests/conftest.py",
    }
    for path, code in files:
        assert code.rstrip("\n") == (README.parent / path).read_text().rstrip("\n"), f"{path} differs from the doc"
    excerpts = _marked_blocks(text, "excerpt")
    assert excerpts
    for path, code in excerpts:
        assert code.rstrip("\n") in (README.parent / path).read_text(), f"an excerpt of {path} differs from the file"


def test_writing_plugins_walks_through_every_part_of_the_provider():
    text = WRITING.read_text()
    source = (EXAMPLE / "kdkit_occlusion" / "provider.py").read_text()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef):
            assert f"class {node.name}(" in text, node.name
        elif isinstance(node, ast.FunctionDef):
            assert f"def {node.name}(" in text, node.name
    for step in ("pip install -e", "kdkit plugins", "kdkit.testing", "adkd.teacher_provider=occlusion"):
        assert step in text, step


def test_the_loss_plugin_of_writing_plugins_conforms_and_trains(tmp_path):
    from kdkit.plugins.manager import PluginManager
    from kdkit.testing import check_loss, run_distillation_steps

    [(_, code)] = _marked_blocks(WRITING.read_text(), "example")
    module = types.ModuleType("writing_plugins_loss")
    sys.modules[module.__name__] = module
    try:
        exec(compile(code, "docs/writing-plugins.md", "exec"), module.__dict__)
        manager = PluginManager(autoload=False, extra_plugins={"norm": module})
        assert manager.failures == []
        loss = manager.loss("norm_kd")
        check_loss(loss, {"beta": 2.0})
        result = run_distillation_steps(module, loss="norm_kd", steps=2, directory=tmp_path)
    finally:
        sys.modules.pop(module.__name__, None)
    assert all({"loss_ce", "loss_kd", "loss_norms"} <= set(entry) for entry in result.summary["train_log"])


def test_the_attention_loss_of_writing_plugins_conforms_and_trains_with_kd(tmp_path):
    from kdkit.plugins.manager import PluginManager
    from kdkit.testing import check_loss, run_distillation_steps

    [(_, code)] = _marked_blocks(WRITING.read_text(), "attention-example")
    module = types.ModuleType("writing_plugins_attention_loss")
    sys.modules[module.__name__] = module
    try:
        exec(compile(code, "docs/writing-plugins.md", "exec"), module.__dict__)
        manager = PluginManager(autoload=False, extra_plugins={"cls_attention": module})
        assert manager.failures == []
        report = check_loss(manager.loss("cls_attention"), {"weight": 2.0})
        assert any("live teacher signals ['cls_attention']" in line for line in report.checks)
        result = run_distillation_steps(module, loss="kd+cls_attention", steps=2, directory=tmp_path)
    finally:
        sys.modules.pop(module.__name__, None)
    steps = [entry for entry in result.summary["train_log"] if "loss" in entry]
    assert steps and all({"loss_ce", "loss_kd", "loss_cls_attention"} <= set(entry) for entry in steps)
