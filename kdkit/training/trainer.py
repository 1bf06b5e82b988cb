"""The training loop: a :class:`transformers.Trainer` subclass that asks a loss plugin for its terms.

One step (``compute_loss``): split the collated batch into model inputs, labels and cached teacher
signals; compute missing teacher signals on the fly and the loss's live ones (frozen teacher, no grad);
run the student with the outputs the loss asks for (:mod:`kdkit.training.step`); call the loss; sum its
terms; check the sum is finite; record each term (and, for the first steps, each term's gradient norm) for
logging. Everything else (optimiser, schedule, gradient clipping, mixed precision, DDP, checkpoints,
resuming) is Trainer's; a loss's own trainable modules join them through :mod:`kdkit.training.loss_modules`.

The step never waits for the device: term sums stay on it until a log line needs them, and on an
accelerator the finiteness check is kept there too (the first bad step and its terms) and read when the
trainer logs, evaluates, saves a checkpoint or finishes; on CPU, where reading costs nothing, it raises in
the step itself. Training splits are read into numpy columns (:mod:`kdkit.data.batching`), so batches are built
without per-example Python.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Any

import datasets
import numpy as np
import torch
from torch import Tensor, nn
from transformers import EvalPrediction, Trainer
from transformers.trainer_pt_utils import LengthGroupedSampler

from kdkit.data.batching import MODEL_INPUTS, TEACHER_PREFIX, ColumnarDataset
from kdkit.data.metrics import compute_metrics
from kdkit.data.sampling import MixedBatchSampler, unlabelled_rows
from kdkit.errors import NonFiniteLossError, TrainingError
from kdkit.losses.base import Batch, DistillationLoss, LossContext
from kdkit.losses.formulas import task_loss
from kdkit.training.loss_modules import LossModulesMixin
from kdkit.training.precision import teacher_precision
from kdkit.training.step import step_teacher_signals, student_step_forward


class DistillationTrainer(LossModulesMixin, Trainer):
    """Trainer whose loss comes from a :class:`~kdkit.losses.base.DistillationLoss` plugin.

    Args:
        loss: the loss plugin instance, prepared (``loss.prepare(context)``).
        context: the run's :class:`~kdkit.losses.base.LossContext` (task, student, providers); its ``teacher``
            is the frozen teacher the steps run (``None`` when the loss needs none or every signal is cached).
            Each step hands the loss a copy with the step's student, step and epoch.
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
        context: LossContext,
        term_grad_norm_steps: int = 0,
        transfer_ratio: float | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("compute_metrics", self._metrics)
        super().__init__(*args, **kwargs)
        # compute_loss returns the mean over the micro-batch and never sees num_items_in_batch, whatever the
        # model's forward accepts: Trainer divides it by the accumulation steps and counts no items (else a
        # batch of 4 x 2 steps would log and step twice the loss of a batch of 8, and DDP would scale it)
        self.model_accepts_loss_kwargs = False
        self.distillation_loss = loss
        self.setup_loss_modules()  # the loss's own trainable modules (kdkit.training.loss_modules)
        self.context = context
        self.term_grad_norm_steps = term_grad_norm_steps
        self.transfer_ratio = transfer_ratio  # unlabelled share of each batch (kdkit.data.sampling), or None
        self.term_grad_norms: list[dict[str, float]] = []
        self._term_sums: dict[str, Tensor] = {}  # on the step's device, read when a log line needs them
        self._term_count = 0
        self._bad_step: Tensor | None = None  # first non-finite step (-1: none yet), on the device
        self._bad_terms: dict[str, Tensor] = {}  # the terms of that step
        self._unwrapped: tuple[nn.Module, nn.Module] | None = None  # (model, unwrapped student)
        self._non_embedding_parameters: int | None = None
        self._read_into_columns()
        if context.teacher is not None:
            context.teacher.to(self.args.device)

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
        return compute_metrics(
            self.context.task, np.asarray(logits, dtype=np.float32), np.asarray(prediction.label_ids)
        )

    # -- the step --------------------------------------------------------------------------------

    def _context(self, model: nn.Module) -> LossContext:
        if self._unwrapped is None or self._unwrapped[0] is not model:  # unwrapping walks the whole model
            self._unwrapped = (model, self.accelerator.unwrap_model(model))
        return replace(
            self.context,
            student=self._unwrapped[1],
            step=self.state.global_step,
            epoch=math.floor(self.state.epoch or 0.0),
            num_epochs=max(1, int(self.state.num_train_epochs or 1)),
        )

    def teacher_autocast(self) -> AbstractContextManager[Any]:
        """Mixed precision for the teacher's live signals (the student's is handled by accelerate), with the
        teacher's attention in fp32 when they differentiate it in bf16 on the CPU
        (:func:`kdkit.training.precision.teacher_precision`)."""
        precision = "bf16" if self.args.bf16 else "fp16" if self.args.fp16 else "fp32"
        differentiated = bool(self.distillation_loss.providers_used())
        return teacher_precision(self.context.teacher, precision, self.args.device, differentiated=differentiated)

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
        signals = step_teacher_signals(loss, self.context.teacher, batch, signals, ctx, self.teacher_autocast)
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
        raise NonFiniteLossError(  # the run directory adds where the unfinished run is and how to start again
            f"the loss became non-finite at step {step} ({bad})", "lower --learning-rate, use fp32, or check the data"
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
        if self.transfer_ratio is not None and dataset is not None:  # --transfer-ratio: mixed batches
            labels = dataset.dense["labels"] if isinstance(dataset, ColumnarDataset) else np.asarray(dataset["labels"])
            size, ratio = self.args.train_batch_size, self.transfer_ratio
            return MixedBatchSampler(unlabelled_rows(labels), size, ratio, self.args.seed)
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
            loss = task_loss(self.context.task, logits, labels)
        return loss.detach(), (None if prediction_loss_only else logits.detach()), labels
