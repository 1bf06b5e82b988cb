"""The GLUE study's bookkeeping (benchmarks/glue_study.py): pairing by seed, the verdict, per-task budgets."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "glue_study.py"


@pytest.fixture(scope="module")
def study() -> ModuleType:
    spec = importlib.util.spec_from_file_location("glue_study", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["glue_study"] = module
    spec.loader.exec_module(module)
    return module


def run(task: str, method: str, seed: int, value: float) -> dict:
    return {"task": task, "method": method, "seed": seed, "metrics": {"mcc": value}}


def test_differences_are_paired_by_seed_and_skip_unpaired_seeds(study: ModuleType) -> None:
    runs = [run("cola", "adkd", 1, 0.30), run("cola", "kd", 1, 0.25), run("cola", "adkd", 2, 0.20)]
    runs += [run("cola", "kd", 2, 0.22), run("cola", "kd", 3, 0.5)]
    assert study.paired_difference(runs, "cola", "adkd", "kd") == pytest.approx([5.0, -2.0])


def test_verdict_needs_a_difference_beyond_the_spread_and_the_standard_error(study: ModuleType) -> None:
    assert study.verdict([2.0, 2.1, 1.9], spread=0.5) == "AD-KD better"
    assert study.verdict([-2.0, -2.1, -1.9], spread=0.5) == "AD-KD worse"
    assert study.verdict([2.0, 2.1, 1.9], spread=3.0).startswith("no clear difference")
    assert study.verdict([3.0, -2.0, 1.0], spread=0.1).startswith("no clear difference")
    assert study.verdict([2.0], spread=0.0) == "too few seeds to say"


def test_metric_values_and_mean_std_format(study: ModuleType) -> None:
    runs = [run("cola", "kd", 2, 0.2), run("cola", "kd", 1, 0.1), run("cola", "adkd", 1, 0.9)]
    assert study.metric_values(runs, "cola", "kd") == [0.1, 0.2]
    assert study.fmt([0.1, 0.2]) == "15.00 ± 7.07"
    assert study.fmt([]) == "–"


def test_teacher_epochs_per_task(study: ModuleType) -> None:
    args = argparse.Namespace(teacher_epochs=3, teacher_epochs_for="stsb=1,mrpc=2")
    assert [study.teacher_epochs(args, t) for t in ("cola", "stsb", "mrpc")] == [3, 1, 2]


def test_methods_share_everything_but_the_loss_options(study: ModuleType) -> None:
    ce, kd, adkd = study.method_runs("cola", 2, ["ce", "kd", "adkd"])
    assert (ce.loss, kd.loss, adkd.loss) == ("ce", "adkd", "adkd")
    assert kd.options == {"adkd": {"ablation": "no_attr"}} and adkd.options == {}
    assert {r.seed for r in (ce, kd, adkd)} == {2}
    assert kd.directory(Path("w")) == Path("w/cola/kd/seed-2")
