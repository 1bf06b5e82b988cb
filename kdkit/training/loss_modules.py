"""Trainable modules of a loss: trained with the student, checkpointed, never saved with it.

A loss may own modules that learn during distillation but are not part of the student, such as the ``hidden``
loss's projection between hidden sizes (``DistillationLoss.trainable_modules()``, built in ``prepare``).
:class:`LossModulesMixin`, mixed into the trainer, makes transformers' ``Trainer``:

- **optimise** them: one more AdamW parameter group (the run's learning rate, schedule and weight decay);
  their gradients are clipped to ``max_grad_norm`` on their own and cleared after each optimiser step (the
  Trainer clears only the model's);
- **checkpoint** them: ``loss_modules.safetensors`` in every ``checkpoint-N/``, loaded back (and checked)
  by ``--resume``;
- leave them out of ``best/`` and ``last/``: only the student is saved there;
- **refuse DDP**: their gradients would not be averaged across processes, so a run whose loss has trainable
  modules must use one process (a ``hidden`` loss between equal widths has none and runs under DDP).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from kdkit.errors import TrainingError
from kdkit.losses.base import DistillationLoss

#: the file of a checkpoint that holds the loss's trainable modules
LOSS_MODULES_FILE = "loss_modules.safetensors"


def loss_module_dict(loss: DistillationLoss) -> nn.ModuleDict:
    """The loss's trainable modules as one ModuleDict (names made safe for it)."""
    return nn.ModuleDict({name.replace(".", "_"): module for name, module in loss.trainable_modules().items()})


def save_loss_modules(modules: nn.ModuleDict, directory: str) -> None:
    """Write the modules' state to ``directory/loss_modules.safetensors``."""
    state = {key: value.detach().cpu().contiguous() for key, value in modules.state_dict().items()}
    save_file(state, os.path.join(directory, LOSS_MODULES_FILE))


def load_loss_modules(modules: nn.ModuleDict, directory: str) -> None:
    """Load the modules' state from a checkpoint, or a :class:`TrainingError` when it is missing or does not fit."""
    path = os.path.join(directory, LOSS_MODULES_FILE)
    if not os.path.isfile(path):
        raise TrainingError(
            f"checkpoint {directory} has no {LOSS_MODULES_FILE} for the loss's trainable modules",
            "resume with the --plugin/--set of the interrupted run, or start again with --overwrite",
        )
    try:
        state = load_file(path)
        modules.load_state_dict(state, strict=True)
    except (RuntimeError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrainingError(
            f"cannot restore the loss's trainable modules from {path} ({first})",
            "resume with the --plugin/--set of the interrupted run, or start again with --overwrite",
        ) from None


class LossModulesMixin:
    """Trainer mixin: the distillation loss's trainable modules (see the module docstring).

    Expects ``self.distillation_loss`` to be set before :meth:`setup_loss_modules` is called (in ``__init__``).
    """

    args: Any
    optimizer: Any
    distillation_loss: DistillationLoss

    def setup_loss_modules(self) -> None:
        """Collect the loss's modules, move them to the device, refuse DDP when there are any."""
        self.loss_modules = loss_module_dict(self.distillation_loss).to(self.args.device)
        if len(self.loss_modules) and self.args.world_size > 1:
            names = ", ".join(self.loss_modules)
            raise TrainingError(
                f"the loss trains its own modules ({names}), which are not synchronised across "
                f"{self.args.world_size} processes",
                "run on one process (no torchrun), or use a loss without them (hidden: equal hidden sizes)",
            )

    def create_optimizer(self, model: Any = None) -> Any:
        optimizer = super().create_optimizer(model)  # type: ignore[misc]
        parameters = [p for p in self.loss_modules.parameters() if p.requires_grad]
        if parameters and not getattr(self, "_loss_modules_in_optimizer", False):
            optimizer.add_param_group({"params": parameters, "weight_decay": self.args.weight_decay})
            max_norm = float(self.args.max_grad_norm or 0.0)

            def clip(*_: Any) -> None:
                if max_norm > 0:
                    torch.nn.utils.clip_grad_norm_(parameters, max_norm)

            def clear(*_: Any) -> None:
                for parameter in parameters:
                    parameter.grad = None

            optimizer.register_step_pre_hook(clip)
            optimizer.register_step_post_hook(clear)
            self._loss_modules_in_optimizer = True
        return optimizer

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        super()._save_optimizer_and_scheduler(output_dir)  # type: ignore[misc]
        if len(self.loss_modules) and self.args.should_save:
            save_loss_modules(self.loss_modules, output_dir)

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        super()._load_optimizer_and_scheduler(checkpoint)  # type: ignore[misc]
        if checkpoint is not None and len(self.loss_modules):
            load_loss_modules(self.loss_modules, checkpoint)
