"""Evaluation: a model's task metrics on the validation split(s), in length order (a run's final metrics, and
:func:`kdkit.api.evaluate` behind ``kdkit evaluate``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from transformers import PreTrainedModel

from kdkit.data.batching import DistillationCollator
from kdkit.data.metrics import compute_metrics
from kdkit.data.tasks import TaskSpec
from kdkit.data.tokenizing import TaskData


def by_length(split: Any) -> Any:
    """A validation split in order of length (batches of similar lengths: little padding). Its metrics do not
    depend on the order; a split without a ``length`` column is returned as it is."""
    if "length" not in split.column_names:
        return split
    return split.select(np.argsort(np.asarray(split["length"]), kind="stable"), keep_in_memory=True)


def evaluate_dataset(
    model: PreTrainedModel,
    dataset: Any,
    task: TaskSpec,
    collator: DistillationCollator,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Task metrics of ``model`` on a tokenised split (examples in length order: little padding)."""
    model.eval().to(device)
    logits, labels = [], []
    columns = [c for c in dataset.column_names if not c.startswith("teacher_")]
    loader = DataLoader(by_length(dataset.select_columns(columns)), batch_size=batch_size, collate_fn=collator)
    with torch.no_grad():
        for batch in loader:
            gold = batch.pop("labels")
            batch.pop("length", None)
            out = model(**{k: v.to(device) for k, v in batch.items()}).logits
            logits.append(out.float().cpu().numpy())
            labels.append(gold.numpy())
    return compute_metrics(task, np.concatenate(logits), np.concatenate(labels))


def evaluate_splits(
    model: PreTrainedModel, task_data: TaskData, collator: DistillationCollator, batch_size: int, device: torch.device
) -> dict[str, float]:
    """Metrics on every validation split (MNLI's keys prefixed by split)."""
    metrics: dict[str, float] = {}
    for name, split in task_data.validation.items():
        values = evaluate_dataset(model, split, task_data.task, collator, batch_size, device)
        prefix = "" if len(task_data.validation) == 1 else f"{name}/"
        metrics.update({f"{prefix}{k}": v for k, v in values.items()})
    return metrics
