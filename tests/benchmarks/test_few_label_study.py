"""The few-label study's bookkeeping (benchmarks/few_label_study.py): the labelled subsets and the pool, the soft-label
file it writes, the report table."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "few_label_study.py"


@pytest.fixture(scope="module")
def study() -> ModuleType:
    sys.path.insert(0, str(SCRIPT.parent))  # the scripts share study_common, beside them
    spec = importlib.util.spec_from_file_location("few_label_study", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["few_label_study"] = module
    spec.loader.exec_module(module)
    return module


def test_the_subset_has_k_per_class_and_the_pool_the_rest(study: ModuleType) -> None:
    train = [(f"text {i}", i % 2) for i in range(40)]
    labelled, pool = study._split(train, 3, seed=0, pool=None)
    assert sorted(label for _, label in labelled) == [0, 0, 0, 1, 1, 1]
    assert set(pool) == {text for text, _ in train} - {text for text, _ in labelled} and len(pool) == 34
    assert study._split(train, 3, seed=0, pool=None) == (labelled, pool)  # the same subset for a seed
    assert study._split(train, 3, seed=1, pool=None)[0] != labelled
    assert len(study._split(train, 3, seed=0, pool=5)[1]) == 5


def test_the_report_table_has_a_row_per_method_and_a_column_per_k(study: ModuleType) -> None:
    results = [
        {"row": "kd+transfer", "k": 16, "seed": 0, "accuracy": 0.80},
        {"row": "kd+transfer", "k": 16, "seed": 1, "accuracy": 0.82},
        {"row": "ce", "k": 64, "seed": 0, "accuracy": 0.7},
        {"row": "setfit", "k": 16, "seed": 0, "skipped": "setfit is not installed"},
    ]
    lines = study.report_lines(results)
    assert lines[0] == study.BEGIN and lines[-1] == study.END
    assert "| row | 16 labels/class | 64 labels/class |" in lines
    transfer = next(line for line in lines if line.startswith("| KD + transfer"))
    assert "81.00 ± 1.41 (2 seeds)" in transfer
    assert "skipped" in next(line for line in lines if line.startswith("| SetFit"))


def test_the_distill_configs_of_the_rows(study: ModuleType, tmp_path: Path) -> None:
    namespace = argparse.Namespace(
        steps=10, evals=5, max_length=32, augmenter="mask", augment_copies=3, work=tmp_path, transfer_ratio=0.5
    )
    files = {k: tmp_path / f"{k}.csv" for k in ("train", "validation")} | {"pool": tmp_path / "p.txt", "k": 16}
    files["soft"] = tmp_path / "soft.jsonl"
    configs = {row: study._distill_config(row, files, "teacher-dir", namespace, 0) for row in study.ROWS[:-1]}
    assert configs["ce"].loss == "ce" and configs["kd"].transfer_files == [] and configs["kd"].transfer_ratio is None
    assert configs["kd+transfer"].transfer_ratio == 0.5
    assert configs["kd+transfer"].transfer_files == [str(tmp_path / "p.txt")]
    assert (configs["kd+augment"].augment, configs["kd+augment"].augment_copies) == ("mask", 3)
    soft = configs["soft"]
    assert soft.teacher is None and soft.base_model == "teacher-dir" and soft.options == {"kd": {"alpha": 1.0}}
    assert configs["kd"].training.eval_steps == 2 and configs["kd"].data.label_names == ["negative", "positive"]
