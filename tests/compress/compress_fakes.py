"""Helpers of the compress tests: a tiny 3-layer teacher with its data, and a fake trial runner (measured values
that follow the plan, so the search and its bookkeeping are tested without training)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from kdkit.compress import Budget, CompressOptions
from kdkit.compress.space import Plan
from kdkit.compress.trial import TrialSetup
from kdkit.config import DataConfig
from kdkit.testing.models import BINARY_TASK, save_tiny_classifier, write_tiny_csv

#: the teacher's measured reference the fake tests use (score 0.9, p95 10 ms, 50 MB)
FAKE_TEACHER: dict[str, Any] = {
    "score": 0.9, "metrics": {"accuracy": 0.9}, "main_metric": "accuracy", "agreement": None, "p50_ms": 8.0,
    "p95_ms": 10.0, "latency": {"threads": 1}, "size_bytes": 50_000_000, "precision": "fp32", "export": "",
    "engine_scores": {}, "predictions": [0] * 16,
}  # fmt: skip


def make_inputs(root: Path) -> tuple[Path, DataConfig]:
    """A saved tiny 3-layer teacher and its CSV data in ``root`` (made once)."""
    teacher = root / "teacher"
    if not teacher.is_dir():
        save_tiny_classifier(teacher, BINARY_TASK, num_layers=3)
    train, dev = root / "train.csv", root / "validation.csv"
    if not train.is_file():
        write_tiny_csv(train, 40, seed=1)
        write_tiny_csv(dev, 16, seed=2)
    data = DataConfig(task="tiny", train_file=train, validation_file=dev, label_names=["neg", "pos"], max_length=32)
    return teacher, data


def fake_measure(plan: Plan) -> dict[str, Any]:
    """What a trial of ``plan`` 'measures': deeper is slower, bigger and more accurate; int8 is faster."""
    return {
        "score": 0.6 + 0.1 * plan.depth, "metrics": {}, "main_metric": "accuracy", "agreement": 0.95,
        "p50_ms": plan.depth * (0.5 if plan.precision == "int8" else 1.0),
        "p95_ms": plan.depth * (0.6 if plan.precision == "int8" else 1.2), "latency": {"threads": 1},
        "size_bytes": plan.depth * 4_000_000, "precision": plan.precision,
        "engine_scores": {"onnx_fp32": 0.6 + 0.1 * plan.depth}, "vocab_size": None, "seconds": 0.0,
    }  # fmt: skip


class FakeRunner:
    """A trial runner that records its calls, writes an 'export' folder, and can fail on chosen calls (an
    exception instance to raise on call number ``n``, counting from 0)."""

    def __init__(self, fail: dict[int, BaseException] | None = None, delay: float = 0.0) -> None:
        self.calls: list[Plan] = []
        self.fail = fail or {}
        self.delay = delay

    def __call__(self, plan: Plan, setup: TrialSetup, directory: Path) -> dict[str, Any]:
        number = len(self.calls)
        time.sleep(self.delay)
        self.calls.append(plan)
        if number in self.fail:
            raise self.fail[number]
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "kdkit_export.json").write_text(json.dumps(plan.to_dict()))
        return {**fake_measure(plan), "export": str(directory)}


def options(root: Path, output: Path, **changes: Any) -> CompressOptions:
    teacher, data = make_inputs(root)
    values: dict[str, Any] = {"teacher": teacher, "data": data, "output": output, "budget": Budget(), "trials": 2,
                              "max_epochs": 1, "exporter": "torchscript", "seed": 0}  # fmt: skip
    values.update(changes)
    return CompressOptions(**values)


def _main() -> None:
    """``python compress_fakes.py ROOT OUTPUT TRIALS``: one process of the shared-study test (a fake teacher)."""
    from unittest import mock

    from kdkit.compress import compress

    root, output, trials = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    runner = FakeRunner(delay=1.0)  # long enough for the two processes' trials to interleave
    with mock.patch("kdkit.compress.search.measure_teacher", return_value=FAKE_TEACHER):
        compress(options(root, output, trials=trials, seed=None), runner=runner)
    print(json.dumps({"pid": os.getpid(), "calls": len(runner.calls)}))


if __name__ == "__main__":
    _main()
