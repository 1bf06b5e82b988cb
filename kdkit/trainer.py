"""The training loop: a :class:`transformers.Trainer` subclass that asks a loss plugin for its terms.

One step (``compute_loss``): split the collated batch into model inputs, labels and cached teacher
signals; compute missing teacher signals on the fly (frozen teacher, no grad); run the student (capturing
its embedding output if the loss asks); call the loss; sum its terms; check the sum is finite; record each
term (and, for the first steps, each term's gradient norm) for logging. Everything else (optimiser,
schedule, gradient clipping, mixed precision, DDP, checkpoints, resuming) is Trainer's.
"""

from __future__ import annotations

import math
from collections import defaultdict
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from transformers import EvalPrediction, Trainer, TrainingArguments

from kdkit.attribution import AttributionProvider, EmbeddingForward, capture_embedding_output
from kdkit.config import DEFAULT_LOGGING_STEPS, TrainingConfig
from kdkit.data import MODEL_INPUTS, TEACHER_PREFIX
from kdkit.errors import TrainingError
from kdkit.losses import Batch, DistillationLoss, LossContext, task_loss
from kdkit.metrics import LOWER_IS_BETTER, compute_metrics
from kdkit.tasks import TaskSpec
from kdkit.tracking import PROJECT, integrations


def resolve_precision(training: TrainingConfig, device: str) -> str:
    """auto -> bf16 on CUDA devices that support it, else fp32; fp16/bf16 need CUDA."""
    if training.precision == "auto":
        if device == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return "bf16"
        return "fp32"
    return training.precision


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
    checkpoint tracked by the task's main metric, logging through kdkit's own callbacks."""
    device = resolve_device(training)
    precision = resolve_precision(training, device)
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
        dataloader_num_workers=training.dataloader_workers,
        train_sampling_strategy="group_by_length" if group_by_length else "random",
        length_column_name="length",
    )


class DistillationTrainer(Trainer):
    """Trainer whose loss comes from a :class:`~kdkit.losses.DistillationLoss` plugin.

    Args:
        loss: the loss plugin instance.
        task: the task.
        teacher: the frozen teacher (``None`` when the loss needs none or every signal is cached).
        provider_factory: builds attribution providers by name with the run's options.
        term_grad_norm_steps: log each loss term's gradient norm w.r.t. the student for the first N steps.
        **kwargs: passed to :class:`transformers.Trainer`.
    """

    def __init__(
        self,
        *args: Any,
        loss: DistillationLoss,
        task: TaskSpec,
        teacher: nn.Module | None = None,
        provider_factory: Any = None,
        term_grad_norm_steps: int = 0,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("compute_metrics", self._metrics)
        super().__init__(*args, **kwargs)
        self.distillation_loss = loss
        self.task = task
        self.teacher = teacher
        self.provider_factory = provider_factory
        self.term_grad_norm_steps = term_grad_norm_steps
        self.term_grad_norms: list[dict[str, float]] = []
        self._term_sums: dict[str, Tensor] = defaultdict(lambda: torch.zeros((), dtype=torch.float64))
        self._term_count = 0
        if teacher is not None:
            teacher.to(self.args.device)

    # -- metrics ---------------------------------------------------------------------------------

    def _metrics(self, prediction: EvalPrediction) -> dict[str, float]:
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        return compute_metrics(self.task, np.asarray(logits, dtype=np.float32), np.asarray(prediction.label_ids))

    # -- the step --------------------------------------------------------------------------------

    def _context(self, model: nn.Module) -> LossContext:
        return LossContext(
            task=self.task,
            student=self.accelerator.unwrap_model(model),
            teacher=self.teacher,
            step=self.state.global_step,
            provider_factory=self.provider_factory,
        )

    def teacher_autocast(self) -> AbstractContextManager[Any]:
        """Mixed precision for the teacher's forward (the student's is handled by accelerate)."""
        return self.accelerator.autocast()

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        batch = Batch(inputs={k: inputs[k] for k in MODEL_INPUTS if k in inputs}, labels=inputs["labels"])
        signals = {k.removeprefix(TEACHER_PREFIX): v for k, v in inputs.items() if k.startswith(TEACHER_PREFIX)}
        ctx = self._context(model)
        loss = self.distillation_loss
        if loss.requires_teacher and not signals:
            if self.teacher is None:
                raise TrainingError("the loss needs teacher signals but there is no teacher", "give --teacher")
            with torch.no_grad(), self.teacher_autocast():
                signals = loss.teacher_signals(self.teacher, batch, ctx)
        if loss.captures_student_embeddings:
            with capture_embedding_output(ctx.student) as captured:
                outputs = model(**batch.inputs)
            assert captured.tensor is not None
            ctx.student_forward = EmbeddingForward(captured.tensor, outputs.logits)
        else:
            outputs = model(**batch.inputs)
        terms = loss(batch, outputs.logits, signals, ctx)
        if not terms:
            raise TrainingError(f"loss '{loss.name}' returned no terms", "fix the loss plugin")
        total: Tensor = sum(terms.values())  # type: ignore[assignment]
        if not torch.isfinite(total.detach()).all():
            bad = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in terms.items())
            raise TrainingError(
                f"the loss became non-finite at step {self.state.global_step} ({bad})",
                "lower --learning-rate, use fp32, or check the data; the unfinished run is kept for --resume",
            )
        if model.training:
            self._record_terms(terms, ctx.student)
        return (total, outputs) if return_outputs else total

    def _record_terms(self, terms: dict[str, Tensor], student: nn.Module) -> None:
        for name, value in terms.items():
            self._term_sums[name] = self._term_sums[name] + value.detach().double().cpu()
        self._term_count += 1
        if self.state.global_step < self.term_grad_norm_steps and len(terms) > 1 and self.args.world_size == 1:
            parameters = [p for p in student.parameters() if p.requires_grad]
            record: dict[str, float] = {"step": float(self.state.global_step)}
            for name, value in terms.items():
                if not value.requires_grad:
                    record[name] = 0.0
                    continue
                grads = torch.autograd.grad(value, parameters, retain_graph=True, allow_unused=True)
                squared = sum(float(g.detach().float().pow(2).sum()) for g in grads if g is not None)
                record[name] = math.sqrt(squared)
            self.term_grad_norms.append(record)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._term_count:
            for name, total in self._term_sums.items():
                logs[f"loss_{name}"] = float(total) / self._term_count
            self._term_sums.clear()
            self._term_count = 0
            if self.term_grad_norms and self.state.global_step <= self.term_grad_norm_steps:
                latest = self.term_grad_norms[-1]
                for name, value in latest.items():
                    if name != "step":
                        logs[f"grad_norm_{name}"] = value
        super().log(logs, start_time)

    # -- evaluation: the student alone, task loss only ---------------------------------------------

    def prediction_step(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
    ) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        inputs = self._prepare_inputs(inputs)
        model_inputs = {k: inputs[k] for k in MODEL_INPUTS if k in inputs}
        labels = inputs["labels"]
        with torch.no_grad():
            logits = model(**model_inputs).logits.float()
            loss = task_loss(self.task, logits, labels)
        return loss.detach(), (None if prediction_loss_only else logits.detach()), labels


def provider_factory(providers: dict[str, type[AttributionProvider]], options: dict[str, Any]) -> Any:
    """A cached ``name -> provider instance`` function over validated option objects."""
    built: dict[str, AttributionProvider] = {}

    def factory(name: str) -> AttributionProvider:
        if name not in built:
            from kdkit.errors import PluginError

            if name not in providers:
                raise PluginError(
                    f"unknown attribution provider '{name}'",
                    f"use one of: {', '.join(sorted(providers)) or 'none installed'}",
                )
            cls = providers[name]
            built[name] = cls(options.get(name) or cls.Options())
        return built[name]

    return factory
