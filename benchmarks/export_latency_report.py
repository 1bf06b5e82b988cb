"""What benchmarks/export_latency.py measured, and how it prints and records it: the engines' names, the model
and graphs under test, the markdown table, the issue's targets and the JSON record."""

from __future__ import annotations

import argparse
import os
import platform
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

TORCH_NAME = "PyTorch eager fp32"
FP32_NAME = "ORT fp32 (all graph opts, kdkit default)"
INT8_NAME = "ORT int8 (kdkit default, per-tensor)"
PREDICT_NAME = "kdkit predict path (tokenizers + ORT int8)"


@dataclass
class Student:
    """The model under test and the SST-2 dev sentences it is measured on."""

    directory: Path
    max_length: int
    tokenizer: Any
    model: Any
    names: list[str]
    task: Any
    sentences: list[str]
    labels: np.ndarray


@dataclass
class Graphs:
    """The ONNX files of the engines, and the fusions applied to make two of them."""

    export_dir: Path
    fp32: Path
    int8: Path
    int8_channel: Path
    bert_fused: Path
    ort_fused: Path
    ort_fused_int8: Path
    fusions: dict[str, int]
    ort_fusions: dict[str, int]


@dataclass
class Measured:
    """What the engines did: accuracy, median latency (ms) per batch size, file sizes and the load around it."""

    accuracy: dict[str, float]
    latency: dict[str, dict[int, float]]
    sizes: dict[str, int | None]
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]


def table(measured: Measured, b: int) -> list[str]:
    """The markdown table: one row per engine."""
    latency, sizes = measured.latency, measured.sizes
    header = ["engine", "file size", "SST-2 dev accuracy (%)", "batch 1 (ms)", f"batch {b} (ms)"]
    header += ["vs PyTorch, batch 1", f"vs PyTorch, batch {b}"]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for name in latency:
        size = sizes.get(name)
        cells = [
            name,
            f"{size / 1e6:.1f} MB" if size else "-",
            f"{100 * measured.accuracy[name]:.2f}",
            f"{latency[name][1]:.2f}",
            f"{latency[name][b]:.1f}",
            f"{latency[name][1] / latency[TORCH_NAME][1]:.2f}x",
            f"{latency[name][b] / latency[TORCH_NAME][b]:.2f}x",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def print_report(measured: Measured, graphs: Graphs, b: int) -> dict[str, float]:
    """Print the table and the issue's targets; return the targets' ratios."""
    from kdkit.export.stage import INT8_WARN_DROP

    latency, accuracy = measured.latency, measured.accuracy
    targets = {
        "ORT fp32 <= 0.4x PyTorch at batch 1": latency[FP32_NAME][1] / latency[TORCH_NAME][1],
        f"ORT fp32 <= 0.8x PyTorch at batch {b}": latency[FP32_NAME][b] / latency[TORCH_NAME][b],
        f"ORT int8 <= 0.5x ORT fp32 at batch {b}": latency[INT8_NAME][b] / latency[FP32_NAME][b],
    }
    limits = [0.4, 0.8, 0.5]
    drop = accuracy[TORCH_NAME] - accuracy[INT8_NAME]
    print("\n".join(table(measured, b)))
    print()
    for (text, ratio), limit in zip(targets.items(), limits, strict=True):
        print(f"- {text}: {ratio:.2f}x ({'met' if ratio <= limit else 'NOT met'})")
    verdict = "met" if drop <= INT8_WARN_DROP else "NOT met"
    print(f"- int8 accuracy loss <= 1 point: {100 * drop:+.2f} points ({verdict})")
    print(f"- onnxruntime.transformers BERT fusions applied: {graphs.fusions}")
    print(f"- onnxscript ORT fusions applied: {graphs.ort_fusions}")
    before, after = measured.load_before[0], measured.load_after[0]
    print(f"- load average before/after: {before:.2f} / {after:.2f} on {os.cpu_count()} CPUs")
    return targets


def results(
    args: argparse.Namespace, student: Student, graphs: Graphs, measured: Measured, targets: dict[str, float]
) -> dict[str, Any]:
    """The JSON record of the run."""
    return {
        "date": datetime.now().isoformat(timespec="seconds"),
        "model": str(student.directory),
        "export_dir": str(graphs.export_dir),
        "threads": args.threads,
        "ort_spinning": args.ort_spinning,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "block": args.block,
        "repeats": {"1": args.repeats, str(args.batch_size): args.repeats_batch},
        "dev_examples": len(student.sentences),
        "latency_ms_median": measured.latency,
        "accuracy": measured.accuracy,
        "sizes_bytes": measured.sizes,
        "ratios": targets,
        "int8_accuracy_drop": measured.accuracy[TORCH_NAME] - measured.accuracy[INT8_NAME],
        "bert_fusions": graphs.fusions,
        "onnxscript_ort_fusions": graphs.ort_fusions,
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "load_average_before": measured.load_before,
            "load_average_after": measured.load_after,
        },
        "versions": {
            "torch": torch.__version__,
            "onnxruntime": ort.__version__,
            "python": platform.python_version(),
        },
    }
