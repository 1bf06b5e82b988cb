"""The training loop: a :class:`transformers.Trainer` subclass that asks a loss plugin for its terms.

One step (``compute_loss``): split the collated batch into model inputs, labels and cached teacher
signals; compute missing teacher signals on the fly and the loss's live ones (frozen teacher, no grad);
run the student with the outputs the loss asks for (:mod:`kdkit.model_outputs`); call the loss; sum its
terms; check the sum is finite; record each term (and, for the first steps, each term's gradient norm) for
logging. Everything else (optimiser, schedule, gradient clipping, mixed precision, DDP, checkpoints,
resuming) is Trainer's; a loss's own trainable modules join them through :mod:`kdkit.loss_modules`.

The step never waits for the device: term sums stay on it until a log line needs them, and on an
accelerator the finiteness check is kept there too (the first bad step and its terms) and read when the
trainer logs, evaluates, saves a checkpoint or finishes; on CPU, where reading costs nothing, it raises in
the step itself. Training splits are read into numpy columns (:mod:`kdkit.batching`), so batches are built
without per-example Python.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager
from typing import Any

import datasets
import numpy as np
import torch
from torch import Tensor, nn
from transformers import EvalPrediction, Trainer, TrainingArguments
from transformers.trainer_pt_utils import LengthGroupedSampler

from kdkit.attribution import AttributionProvider
from kdkit.batching import ColumnarDataset
from kdkit.config import DEFAULT_LOGGING_STEPS, TrainingConfig
from kdkit.data import MODEL_INPUTS, TEACHER_PREFIX
from kdkit.errors import ConfigError, TrainingError
from kdkit.loss_modules import LossModulesMixin
from kdkit.losses import Batch, DistillationLoss, LossContext, task_loss
from kdkit.metrics import LOWER_IS_BETTER, compute_metrics
from kdkit.model_outputs import step_teacher_signals, student_step_forward
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
    checkpoint tracked by the task's main metric, logging through kdkit's own callbacks.

    No per-step host-device synchronisation: Trainer's NaN/inf loss filter is off (kdkit stops on a
    non-finite loss instead); on CUDA, batches are pinned and copied asynchronously. ``compile`` runs the
    student through ``torch.compile``."""
    device = resolve_device(training)
    precision = resolve_precision(training, device)
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
    if compiled and loss.needs_double_backward:
        raise ConfigError(
            f"--compile cannot run the '{loss.name}' loss: torch.compile has no double backward",
            "drop --compile for this loss",
        )


class DistillationTrainer(LossModulesMixin, Trainer):
    """Trainer whose loss comes from a :class:`~kdkit.losses.DistillationLoss` plugin.

    Args:
        loss: the loss plugin instance.
        task: the task.
        teacher: the frozen teacher (``None`` when the loss needs none or every signal is cached).
        provider_factory: builds attribution providers by name with the run's options.
        term_grad_norm_steps: log each loss term's gradient norm w.r.t. the student for the first N steps.
        **kwargs: passed to :class:`transformers.Trainer`.
    """

    #: compute_loss returns a micro-batch's mean: Trainer divides it by the gradient accumulation steps
    loss_is_scaled_for_ga = False

    #: keep the non-finite check on the device and read it at the next log, evaluation, checkpoint or the
    #: end (None: on accelerators; on CPU the step itself raises)
    defer_finite_check: bool | None = None

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
        # compute_loss returns the mean over the micro-batch and never sees num_items_in_batch, whatever the
        # model's forward accepts: Trainer divides it by the accumulation steps and counts no items (else a
        # batch of 4 x 2 steps would log and step twice the loss of a batch of 8, and DDP would scale it)
        self.model_accepts_loss_kwargs = False
        check_compile(type(loss), self.args)
        self.distillation_loss = loss
        self.setup_loss_modules()  # the loss's own trainable modules (kdkit.loss_modules)
        self.task = task
        self.teacher = teacher
        self.provider_factory = provider_factory
        self.term_grad_norm_steps = term_grad_norm_steps
        self.term_grad_norms: list[dict[str, float]] = []
        self._term_sums: dict[str, Tensor] = {}  # on the step's device, read when a log line needs them
        self._term_count = 0
        self._bad_step: Tensor | None = None  # first non-finite step (-1: none yet), on the device
        self._bad_terms: dict[str, Tensor] = {}  # the terms of that step
        self._unwrapped: tuple[nn.Module, nn.Module] | None = None  # (model, unwrapped student)
        self._non_embedding_parameters: int | None = None
        self._read_into_columns()
        if teacher is not None:
            teacher.to(self.args.device)

    def _read_into_columns(self) -> None:
        """Training and evaluation splits as numpy columns, when the collator takes row blocks."""
        if not getattr(self.data_collator, "accepts_row_blocks", False):
            return
        token_columns = set(getattr(self.data_collator, "token_signals", ()))

        def columns(dataset: Any) -> Any:
            if not isinstance(dataset, datasets.Dataset):
                return dataset
            try:
                return ColumnarDataset.from_dataset(dataset, token_columns)
            except ValueError:  # an unusual layout: keep datasets' row-by-row path
                return dataset

        self.train_dataset = columns(self.train_dataset)
        if isinstance(self.eval_dataset, dict):
            self.eval_dataset = {name: columns(split) for name, split in self.eval_dataset.items()}
        else:
            self.eval_dataset = columns(self.eval_dataset)

    # -- metrics ---------------------------------------------------------------------------------

    def _metrics(self, prediction: EvalPrediction) -> dict[str, float]:
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        return compute_metrics(self.task, np.asarray(logits, dtype=np.float32), np.asarray(prediction.label_ids))

    # -- the step --------------------------------------------------------------------------------

    def _context(self, model: nn.Module) -> LossContext:
        if self._unwrapped is None or self._unwrapped[0] is not model:  # unwrapping walks the whole model
            self._unwrapped = (model, self.accelerator.unwrap_model(model))
        return LossContext(
            task=self.task,
            student=self._unwrapped[1],
            teacher=self.teacher,
            step=self.state.global_step,
            epoch=math.floor(self.state.epoch or 0.0),
            num_epochs=max(1, int(self.state.num_train_epochs or 1)),
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
        signals = step_teacher_signals(loss, self.teacher, batch, signals, ctx, self.teacher_autocast)
        outputs = student_step_forward(model, batch, loss, ctx)  # the outputs the loss needs, as ctx.student_outputs
        terms = loss(batch, outputs.logits, signals, ctx)
        if not terms:
            raise TrainingError(f"loss '{loss.name}' returned no terms", "fix the loss plugin")
        total: Tensor = sum(terms.values())  # type: ignore[assignment]
        self._check_finite(total, terms)
        if model.training:
            self._record_terms(terms, ctx.student)
        return (total, outputs) if return_outputs else total

    # -- the non-finite check: at once on CPU, without a device sync on accelerators --------------

    def _check_finite(self, total: Tensor, terms: dict[str, Tensor]) -> None:
        finite = torch.isfinite(total.detach()).all()
        defer = self.defer_finite_check if self.defer_finite_check is not None else total.device.type != "cpu"
        if not defer:
            if not bool(finite):
                self._raise_non_finite(self.state.global_step, {k: float(v.detach()) for k, v in terms.items()})
            return
        if self._bad_step is None:
            self._bad_step = torch.full((), -1, dtype=torch.long, device=total.device)
        first = ~finite & (self._bad_step < 0)
        self._bad_step = torch.where(first, self.state.global_step, self._bad_step)
        for name, value in terms.items():
            kept = self._bad_terms.get(name, torch.full_like(value.detach(), math.nan))
            self._bad_terms[name] = torch.where(first, value.detach(), kept)

    def raise_if_non_finite(self) -> None:
        """Raise the TrainingError of the first non-finite step recorded on the device, if any (one sync)."""
        if self._bad_step is not None and int(self._bad_step) >= 0:
            self._raise_non_finite(int(self._bad_step), {k: float(v) for k, v in self._bad_terms.items()})

    @staticmethod
    def _raise_non_finite(step: int, terms: dict[str, float]) -> None:
        bad = ", ".join(f"{name}={value:.4g}" for name, value in terms.items())
        raise TrainingError(
            f"the loss became non-finite at step {step} ({bad})",
            "lower --learning-rate, use fp32, or check the data; the unfinished run is kept for --resume",
        )

    def train(self, *args: Any, **kwargs: Any) -> Any:
        output = super().train(*args, **kwargs)
        self.raise_if_non_finite()
        return output

    def _save_checkpoint(self, model: nn.Module, trial: Any) -> None:
        self.raise_if_non_finite()  # never checkpoint weights that a non-finite step has updated
        super()._save_checkpoint(model, trial)

    # -- logging -----------------------------------------------------------------------------------

    def _record_terms(self, terms: dict[str, Tensor], student: nn.Module) -> None:
        for name, value in terms.items():
            current = self._term_sums.get(name)
            value = value.detach().double()
            self._term_sums[name] = value if current is None else current + value
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
        self.raise_if_non_finite()
        if "loss" in logs and self._term_count:
            sums = torch.stack(list(self._term_sums.values())).tolist()  # one device read for all terms
            for name, total in zip(self._term_sums, sums, strict=True):
                logs[f"loss_{name}"] = total / self._term_count
            self._term_sums.clear()
            self._term_count = 0
            if self.term_grad_norms and self.state.global_step <= self.term_grad_norm_steps:
                latest = self.term_grad_norms[-1]
                for name, value in latest.items():
                    if name != "step":
                        logs[f"grad_norm_{name}"] = value
        super().log(logs, start_time)

    # -- per-step host work that Trainer repeats -----------------------------------------------------

    def floating_point_ops(self, inputs: dict[str, Any]) -> int:
        """Trainer's estimate (6 · tokens · non-embedding parameters), with the parameter count kept: Trainer
        recounts it by walking the model at every step."""
        model: Any = self.model
        main_input = getattr(model, "main_input_name", "input_ids")
        if main_input not in inputs or not hasattr(model, "num_parameters"):
            return 0
        if self._non_embedding_parameters is None:
            self._non_embedding_parameters = int(model.num_parameters(exclude_embeddings=True))
        return 6 * inputs[main_input].numel() * self._non_embedding_parameters

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        """Trainer's sampler; with length grouping, over a plain list of lengths (``datasets`` would answer
        each length lookup with a query of its own: 0.3 ms per example and epoch, 20 s per SST-2 epoch)."""
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.args.train_sampling_strategy != "group_by_length" or dataset is None:
            return super()._get_train_sampler(train_dataset)
        if isinstance(dataset, ColumnarDataset):
            lengths = dataset.lengths()
        elif isinstance(dataset, datasets.Dataset) and self.args.length_column_name in dataset.column_names:
            lengths = dataset.select_columns([self.args.length_column_name]).to_dict()[self.args.length_column_name]
        else:
            return super()._get_train_sampler(train_dataset)
        size = self.args.train_batch_size * self.args.gradient_accumulation_steps
        return LengthGroupedSampler(size, lengths=lengths)

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
