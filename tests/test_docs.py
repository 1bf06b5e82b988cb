"""Documentation stays in step with the code."""

from __future__ import annotations

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
