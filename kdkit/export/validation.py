"""Validating an ONNX export against PyTorch on real examples of the task (:mod:`kdkit.export` calls these).

Two checks, both in max |Δlogit| (``tolerance``, default 1e-4):

- :func:`check_parity`: onnxruntime on the fp32 graph vs PyTorch on four real batches of different shapes
  (:func:`parity_batches`: batch 1 shortest and longest; batch 32 as is and padded to ``max_length``);
- :func:`compare_engines`: the whole validation set through the deployment path
  (:class:`kdkit.export.inference.OnnxClassifier`: ``tokenizers`` + onnxruntime) vs PyTorch, with each engine's metrics
  and, with int8, how often int8 predicts PyTorch's class.

A difference over the tolerance is an :class:`~kdkit.errors.ExportError` (nothing is exported).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from kdkit.config import DataConfig
from kdkit.data.batching import DistillationCollator
from kdkit.data.metrics import compute_metrics, predictions_from_logits
from kdkit.data.tasks import TaskSpec
from kdkit.data.tokenizing import tokenize
from kdkit.errors import ExportError
from kdkit.export.inference import OnnxClassifier
from kdkit.export.manifest import ParityCase

#: the batch size of the larger parity batches
PARITY_BATCH = 32
#: a parity batch: its description and the model inputs, (B, L) each
Batch = tuple[str, dict[str, torch.Tensor]]


def texts(split: Any, task: TaskSpec) -> tuple[list[str], list[str] | None]:
    """The first text field of ``split`` and the second (None for single-text tasks)."""
    first = list(split[task.text_fields[0]])
    return first, (list(split[task.text_fields[1]]) if len(task.text_fields) == 2 else None)


def torch_logits(
    model: PreTrainedModel, dataset: Any, collator: DistillationCollator, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch logits (N, C) and gold labels (N,) of a tokenised split, in order (as ``kdkit evaluate``)."""
    model.eval()
    logits, labels = [], []
    loader = DataLoader(
        dataset.select_columns([c for c in dataset.column_names if c != "length"]),
        batch_size=batch_size,
        collate_fn=collator,
    )
    with torch.no_grad():
        for batch in loader:
            labels.append(batch.pop("labels").numpy())
            logits.append(model(**batch).logits.float().numpy())
    return np.concatenate(logits), np.concatenate(labels)


def parity_batches(
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    pairs: list[str] | None,
    max_length: int,
    input_names: Sequence[str],
) -> list[Batch]:
    """Real batches of several shapes: batch 1 (shortest, longest); batch 32 (as is, padded to max_length)."""

    def encode(indices: Sequence[int], padding: str | bool) -> dict[str, torch.Tensor]:
        first = [texts[i] for i in indices]
        second = [pairs[i] for i in indices] if pairs is not None else None
        encoded = tokenizer(first, second, truncation=True, max_length=max_length, padding=padding, return_tensors="pt")
        return {name: encoded[name] for name in input_names}

    lengths = [len(ids) for ids in tokenizer(texts, pairs, truncation=True, max_length=max_length)["input_ids"]]
    by_length = sorted(range(len(texts)), key=lambda i: lengths[i])
    size = min(PARITY_BATCH, len(texts))
    return [
        ("batch 1, shortest example", encode([by_length[0]], False)),
        ("batch 1, longest example", encode([by_length[-1]], False)),
        (f"batch {size}, padded to the longest", encode(list(range(size)), True)),
        (f"batch {size}, longest examples padded to {max_length}", encode(by_length[-size:], "max_length")),
    ]


def check_parity(model: PreTrainedModel, onnx_path: Path, batches: list[Batch], tolerance: float) -> list[ParityCase]:
    """Max |Δlogit| between ONNX (onnxruntime, fp32) and PyTorch per batch; ExportError over ``tolerance``."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    cases = []
    for name, batch in batches:
        with torch.no_grad():
            expected = model(**batch).logits.float().numpy()
        got = session.run(None, {k: v.numpy().astype(np.int64) for k, v in batch.items()})[0]
        diff = float(np.abs(got - expected).max())
        shape = tuple(batch["input_ids"].shape)
        cases.append(ParityCase(case=name, batch=shape[0], length=shape[1], max_abs_diff=diff))
        if not diff <= tolerance:
            raise ExportError(
                f"ONNX fp32 logits differ from PyTorch by {diff:.3g} (> tolerance {tolerance:g}) at {name} "
                f"(shape {shape[0]}x{shape[1]}); nothing was exported",
                "try the other --exporter or another --opset, or raise --tolerance if you accept it",
            )
    return cases


@dataclass
class EngineComparison:
    """PyTorch vs the ONNX engines over the validation splits.

    Attributes:
        metrics: ``{engine: {split: {metric: value}}}`` for ``pytorch``, ``onnx_fp32`` (and ``onnx_int8``).
        fp32_diff, int8_diff: the largest |Δlogit| against PyTorch over every example.
        agreement: per split, the fraction of examples where int8 predicts PyTorch's class (classification).
        logits: ``{engine: {split: (N, C) logits}}``, every engine's dev outputs in the data's order (what
            :mod:`kdkit.export.fidelity` reads: the one place where an export's dev predictions are computed).
        labels: ``{split: (N,) gold labels}``.
    """

    metrics: dict[str, dict[str, dict[str, float]]]
    fp32_diff: float = 0.0
    int8_diff: float = 0.0
    agreement: dict[str, float] = field(default_factory=dict)
    logits: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    labels: dict[str, np.ndarray] = field(default_factory=dict)

    def flat_metrics(self) -> dict[str, dict[str, float]]:
        """``{engine: {metric: value}}``; with several splits the keys are ``split/metric``."""
        return {engine: metrics_with_prefix(values) for engine, values in self.metrics.items()}


def compare_engines(
    classifier: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    task: TaskSpec,
    raw_splits: dict[str, Any],
    data: DataConfig,
    export_dir: Path,
    *,
    int8: bool,
    batch_size: int,
) -> EngineComparison:
    """Run every validation example through PyTorch and through the export folder's ONNX models."""
    collator = DistillationCollator(int(tokenizer.pad_token_id or 0))
    engines = ["pytorch", "onnx_fp32", *(["onnx_int8"] if int8 else [])]
    result = EngineComparison(metrics={engine: {} for engine in engines}, logits={engine: {} for engine in engines})
    onnx_fp32 = OnnxClassifier(export_dir, precision="fp32")
    onnx_int8 = OnnxClassifier(export_dir, precision="int8") if int8 else None
    for split_name, raw in raw_splits.items():
        reference, labels = torch_logits(classifier, tokenize(raw, task, tokenizer, data), collator, batch_size)
        split_texts, split_pairs = texts(raw, task)
        fp32_logits, _ = onnx_fp32.logits(split_texts, split_pairs, batch_size=batch_size, warn=False)
        result.fp32_diff = max(result.fp32_diff, float(np.abs(fp32_logits - reference).max()))
        result.metrics["pytorch"][split_name] = compute_metrics(task, reference, labels)
        result.metrics["onnx_fp32"][split_name] = compute_metrics(task, fp32_logits, labels)
        result.labels[split_name] = labels
        result.logits["pytorch"][split_name], result.logits["onnx_fp32"][split_name] = reference, fp32_logits
        if onnx_int8 is not None:
            int8_logits, _ = onnx_int8.logits(split_texts, split_pairs, batch_size=batch_size, warn=False)
            result.int8_diff = max(result.int8_diff, float(np.abs(int8_logits - reference).max()))
            result.metrics["onnx_int8"][split_name] = compute_metrics(task, int8_logits, labels)
            result.logits["onnx_int8"][split_name] = int8_logits
            if not task.is_regression:
                same = predictions_from_logits(task, int8_logits) == predictions_from_logits(task, reference)
                result.agreement[split_name] = float(np.mean(same))
    return result


def check_validation_parity(comparison: EngineComparison, tolerance: float) -> None:
    """ExportError when the deployment path's fp32 logits differ from PyTorch's by more than ``tolerance``."""
    if not comparison.fp32_diff <= tolerance:
        raise ExportError(
            f"through tokenizers + onnxruntime, ONNX fp32 logits differ from PyTorch by {comparison.fp32_diff:.3g} "
            f"(> tolerance {tolerance:g}) on the validation set; nothing was exported",
            "check that the tokenizer saved with the model is the one it was trained with",
        )


def int8_warnings(flat: dict[str, dict[str, float]], main_key: str, allowed_drop: float) -> list[str]:
    """A warning when int8 loses more than ``allowed_drop`` (a fraction) of ``main_key`` against PyTorch."""
    if "onnx_int8" not in flat:
        return []
    drop = flat["pytorch"][main_key] - flat["onnx_int8"][main_key]
    if drop <= allowed_drop:
        return []
    return [
        f"int8 loses {100 * drop:.2f} points of {main_key} ({100 * flat['pytorch'][main_key]:.2f} -> "
        f"{100 * flat['onnx_int8'][main_key]:.2f}); serve model.onnx (--precision fp32) if that matters"
    ]


def metrics_with_prefix(metrics: dict[str, dict[str, float]]) -> dict[str, float]:
    """``{split: {metric: value}}`` as ``{metric: value}`` for one split, ``{split/metric: value}`` for several."""
    if len(metrics) == 1:
        return next(iter(metrics.values()))
    return {f"{split}/{k}": v for split, values in metrics.items() for k, v in values.items()}
