"""Evaluation: a model's task metrics on the validation split(s) (``kdkit evaluate``, and a run's final
metrics).

``evaluate(RUN)`` needs no data flag: the task and data come from what the run recorded
(:mod:`kdkit.provenance`); flags override them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from transformers import PreTrainedModel

from kdkit.config import DataConfig, TrainingConfig
from kdkit.data.batching import DistillationCollator
from kdkit.data.metrics import compute_metrics
from kdkit.data.tasks import TaskSpec
from kdkit.data.tokenizing import TaskData, load_task_data
from kdkit.models.checks import check_token_types
from kdkit.models.loading import check_max_length, load_classifier, load_tokenizer, quiet_libraries
from kdkit.records.provenance import of_model
from kdkit.training.arguments import resolve_device


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


def evaluate(
    model: str | Path,
    data: DataConfig | None = None,
    *,
    device: str = "auto",
    batch_size: int = 64,
) -> tuple[TaskSpec, dict[str, float]]:
    """Evaluate a saved model (or a run directory's best model) on a task's validation split(s); the data
    options not given come from what the run recorded."""
    quiet_libraries()
    given = data or DataConfig()
    saved = of_model(model, hub_id_ok=given.task is not None or given.is_custom)
    options = saved.data_options(given)
    assert saved.model is not None
    check_max_length(saved.model, options.max_length)
    tokenizer = load_tokenizer(saved.model)
    task_data = load_task_data(options, tokenizer, need_train=False)
    classifier = load_classifier(saved.model, task_data.task)
    check_token_types(classifier.config, tokenizer, task_data.task, name=str(saved.model))
    target = resolve_device(TrainingConfig(device=device))
    collator = DistillationCollator(int(tokenizer.pad_token_id or 0))
    return task_data.task, evaluate_splits(classifier, task_data, collator, batch_size, torch.device(target))
