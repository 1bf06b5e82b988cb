"""The training examples of a distillation beyond the labelled ones (issue 27, labels optional): transfer texts
(:mod:`kdkit.data.transfer`), augmented copies of the training texts, and a teacher
given as a file of soft labels (:mod:`kdkit.data.soft_labels`).

:func:`load_inputs` reads and checks them before anything expensive runs; :func:`training_data` appends them to the
tokenised training set, in this order: labelled, transfer, augmented. With soft labels the set gets the file's
``teacher_logits`` column, and no teacher model runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset
from pydantic import BaseModel
from torch import nn
from transformers import PreTrainedTokenizerBase

from kdkit.config import DataConfig, DistillConfig
from kdkit.data.augmentation import AugmentContext, Augmenter, augment_split
from kdkit.data.batching import TEACHER_PREFIX
from kdkit.data.loading import RawData
from kdkit.data.soft_labels import SoftLabels, read_soft_labels
from kdkit.data.tokenizing import TaskData, add_unlabelled
from kdkit.data.transfer import load_transfer
from kdkit.errors import ConfigError
from kdkit.losses.base import DistillationLoss


@dataclass(frozen=True)
class DistillInputs:
    """What a distillation trains on, loaded and checked: the labelled data, the transfer texts (the task's text
    fields, or ``None``), the soft labels (or ``None``: the teacher model labels what has no label) and the
    augmenter."""

    raw: RawData
    transfer: Dataset | None = None
    soft_labels: SoftLabels | None = None
    #: the augmenter class of ``--augment`` (built when the teacher is there), or ``None``
    augmenter: type[Augmenter[Any]] | None = None

    def texts(self) -> list[Any]:
        """Each training example's text (a ``(text, pair)`` tuple for sentence pairs): labelled, then transfer."""
        fields = self.raw.task.text_fields
        rows: list[Any] = []
        for split in (self.raw.train, self.transfer):
            if split is not None:
                columns = [split[field] for field in fields]
                rows += columns[0] if len(fields) == 1 else list(zip(*columns, strict=True))
        return rows

    def counts(self, augmented: int = 0) -> dict[str, int]:
        """``run.json``'s ``examples``: the training examples by source."""
        return {"labelled": len(self.raw.train or ()), "transfer": len(self.transfer or ()), "augmented": augmented}


def check_soft_label_loss(config: DistillConfig, loss_cls: type[DistillationLoss]) -> None:
    """With ``--soft-labels`` the file is the teacher: no ``--teacher``, and a loss that needs only the teacher's
    logits (a one-line error naming what else it needs)."""
    if config.soft_labels is None:
        return
    if config.teacher:
        raise ConfigError("--soft-labels and --teacher both given: the file is the teacher", "give one of them")
    needs = loss_cls.needs
    if not needs.teacher:
        raise ConfigError(
            f"--soft-labels given with the '{loss_cls.name}' loss, which uses no teacher", "use --plugin kd"
        )
    if config.augment:
        raise ConfigError(
            "--augment given with --soft-labels: no teacher model is there to label the new texts",
            "drop --augment, or give the teacher model with --teacher instead of --soft-labels",
        )
    wanted = sorted(needs.token_signals | needs.teacher_outputs)
    if wanted:
        raise ConfigError(
            f"the '{loss_cls.name}' loss needs the teacher's model ({', '.join(wanted)}), and --soft-labels gives only "
            "its probabilities",
            "use --plugin kd with --soft-labels, or give the teacher model with --teacher",
        )


def load_inputs(
    config: DistillConfig,
    loss_cls: type[DistillationLoss],
    raw: RawData,
    augmenter: type[Augmenter[Any]] | None = None,
) -> DistillInputs:
    """The transfer texts and the soft labels of ``config``, read and checked (one-line errors) before training;
    ``augmenter``: the class of ``--augment``."""
    unlabelled = [
        flag for flag, given in (("--transfer-file", config.transfer_files), ("--augment", config.augment)) if given
    ]
    if unlabelled and not loss_cls.needs.teacher:
        raise ConfigError(
            f"{unlabelled[0]} given with the '{loss_cls.name}' loss, which uses no teacher: its examples have no "
            "labels, so nothing would be learnt from them",
            f"use a loss with a teacher (kd, adkd ...), or drop {unlabelled[0]}",
        )
    if config.transfer_ratio is not None and not unlabelled:
        raise ConfigError(
            "--transfer-ratio given without unlabelled examples", "add --transfer-file or --augment, or drop it"
        )
    check_soft_label_loss(config, loss_cls)
    transfer = load_transfer([Path(path) for path in config.transfer_files], raw.task, config.data)
    inputs = DistillInputs(raw, transfer, augmenter=augmenter)
    if config.soft_labels is None:
        return inputs
    soft = read_soft_labels(Path(config.soft_labels), raw.task, inputs.texts())
    return DistillInputs(raw, transfer, soft, augmenter)


def augmented_texts(
    inputs: DistillInputs,
    options: BaseModel,
    config: DistillConfig,
    tokenizer: PreTrainedTokenizerBase,
    teacher: nn.Module | None,
) -> Dataset:
    """``config.augment_copies`` copies of each labelled training text made by the augmenter (built here with its
    validated ``options``, the teacher's tokenizer and, when it asks, the teacher's input embeddings)."""
    augmenter_cls = inputs.augmenter
    assert augmenter_cls is not None and inputs.raw.train is not None
    embeddings = None
    if augmenter_cls.needs_embeddings:
        if teacher is None:
            raise ConfigError(f"augmenter '{augmenter_cls.name}' needs the teacher's embeddings", "give a teacher")
        embeddings = teacher.get_input_embeddings().weight.detach().float().cpu()  # type: ignore[operator]
    augmenter = augmenter_cls(options, AugmentContext(tokenizer=tokenizer, embeddings=embeddings))
    return augment_split(inputs.raw.train, inputs.raw.task, augmenter, config.augment_copies, config.training.seed)


def training_data(
    inputs: DistillInputs,
    task_data: TaskData,
    tokenizer: PreTrainedTokenizerBase,
    data: DataConfig,
    augmented: Dataset | None = None,
) -> TaskData:
    """``task_data`` (the labelled data, tokenised) with the transfer and ``augmented`` texts appended, unlabelled,
    and the soft labels as its ``teacher_logits`` column."""
    for texts in (inputs.transfer, augmented):
        if texts is not None:
            task_data = add_unlabelled(task_data, texts, tokenizer, data)
    if inputs.soft_labels is not None:
        assert task_data.train is not None
        column = [row.tolist() for row in inputs.soft_labels.logits]
        train = task_data.train.add_column(f"{TEACHER_PREFIX}logits", column)
        task_data = TaskData(task=task_data.task, train=train, validation=task_data.validation)
    return task_data
