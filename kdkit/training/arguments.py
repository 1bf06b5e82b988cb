"""transformers' ``TrainingArguments`` of a run, from kdkit's :class:`~kdkit.config.TrainingConfig`: the device,
the precision, evaluation and checkpoints each epoch, the best checkpoint by the task's main metric; and the
options no loss may be combined with (``--compile`` with a double backward)."""

from __future__ import annotations

import torch
from transformers import TrainingArguments

from kdkit.config import DEFAULT_LOGGING_STEPS, TrainingConfig
from kdkit.data.metrics import LOWER_IS_BETTER
from kdkit.data.tasks import TaskSpec
from kdkit.errors import ConfigError, TrainingError
from kdkit.losses.base import DistillationLoss
from kdkit.training.precision import resolve_precision
from kdkit.training.tracking import PROJECT, integrations


def resolve_device(training: TrainingConfig) -> str:
    if training.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if training.device == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda was asked for but no CUDA device is available", "use --device cpu")
    return training.device


def training_arguments(
    training: TrainingConfig,
    task: TaskSpec,
    output_dir: str,
    *,
    has_eval: bool = True,
    first_split: str = "validation",
    eval_splits: int = 1,
    group_by_length: bool = False,
) -> TrainingArguments:
    """Trainer arguments for a run: evaluation and checkpoints each epoch (or every ``eval_steps``), best
    checkpoint tracked by the task's main metric, logging through kdkit's own callbacks.

    No per-step host-device synchronisation: Trainer's NaN/inf loss filter is off (kdkit stops on a
    non-finite loss instead); on CUDA, batches are pinned and copied asynchronously. ``compile`` runs the
    student through ``torch.compile``."""
    device = resolve_device(training)
    precision = resolve_precision(training.precision, device).name
    workers = training.dataloader_workers
    strategy = "steps" if training.eval_steps else "epoch"
    metric = task.main_metric if eval_splits == 1 else f"{first_split}_{task.main_metric}"
    return TrainingArguments(
        output_dir=output_dir,
        num_train_epochs=training.epochs,
        max_steps=training.max_steps or -1,
        per_device_train_batch_size=training.batch_size,
        per_device_eval_batch_size=training.eval_batch_size,
        learning_rate=training.learning_rate,
        weight_decay=training.weight_decay,
        warmup_steps=min(training.warmup_ratio, 0.999),
        max_grad_norm=training.max_grad_norm,
        gradient_accumulation_steps=training.gradient_accumulation_steps,
        seed=training.seed,
        data_seed=training.seed,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=device == "cpu",
        logging_steps=training.logging_steps or DEFAULT_LOGGING_STEPS,  # a run resolves it: logging_every
        eval_strategy=strategy if has_eval else "no",
        eval_steps=training.eval_steps,
        save_strategy=strategy,
        save_steps=training.eval_steps or 500,
        save_total_limit=2,
        metric_for_best_model=metric if has_eval else None,
        greater_is_better=task.main_metric not in LOWER_IS_BETTER,
        report_to=integrations(training.report_to),
        project=PROJECT,
        disable_tqdm=True,
        remove_unused_columns=False,
        dataloader_num_workers=workers,
        dataloader_persistent_workers=workers > 0,
        dataloader_pin_memory=device == "cuda",
        accelerator_config={"non_blocking": device == "cuda"},
        logging_nan_inf_filter=False,
        torch_compile=training.compile,
        train_sampling_strategy="group_by_length" if group_by_length else "random",
        length_column_name="length",
    )


def check_compile(loss: type[DistillationLoss], training: TrainingConfig | TrainingArguments) -> None:
    """``--compile`` with a loss that differentiates twice: a one-line error (torch.compile has no double
    backward)."""
    compiled = training.compile if isinstance(training, TrainingConfig) else training.torch_compile
    if compiled and loss.needs.double_backward:
        raise ConfigError(
            f"--compile cannot run the '{loss.name}' loss: torch.compile has no double backward",
            "drop --compile for this loss",
        )
