"""Helpers of the AD-KD plugin tests: tiny models with non-trivial weights, batches, loss contexts."""

from __future__ import annotations

from collections.abc import Callable

import torch
from kdkit_adkd.ig import IGOptions, IntegratedGradients
from torch import nn
from transformers import PreTrainedModel

from kdkit.attribution.base import EmbeddingForward, capture_embedding_output
from kdkit.data.tasks import TaskSpec
from kdkit.losses.base import Batch, LossContext
from kdkit.testing import tiny_classifier
from kdkit.testing.models import ARCHITECTURES as ARCHITECTURES  # every tiny family

THREE_CLASSES = TaskSpec(
    name="three",
    text_fields=("text",),
    label_names=("a", "b", "c"),
    metrics=("accuracy",),
    main_metric="accuracy",
)
TWO_CLASSES = TaskSpec(
    name="two", text_fields=("text",), label_names=("neg", "pos"), metrics=("accuracy",), main_metric="accuracy"
)
REGRESSION = TaskSpec(name="reg", text_fields=("text",), label_names=None, metrics=("pearson",), main_metric="pearson")


def lively(model: PreTrainedModel, seed: int = 0, scale: float = 0.2) -> PreTrainedModel:
    """Perturb every parameter (random init has zero biases and near-uniform outputs, which makes maps and
    score differences degenerate)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            noise = torch.randn(parameter.shape, generator=generator, dtype=torch.float32)
            parameter.add_(noise.to(parameter.dtype) * scale)
    return model


def make_model(
    architecture: str = "bert",
    *,
    num_labels: int = 3,
    seed: int = 0,
    num_layers: int = 2,
    eager: bool = True,
    double: bool = False,
    perturb: bool = True,
) -> PreTrainedModel:
    """A tiny classifier in eval mode (eager attention by default, so it supports double backward)."""
    model = tiny_classifier(
        architecture,
        num_labels=num_labels,
        seed=seed,
        num_layers=num_layers,
        attn_implementation="eager" if eager else None,
    )
    if perturb:
        lively(model, seed)
    if double:
        model = model.double()
    return model.eval()


def frozen(model: nn.Module) -> nn.Module:
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model.eval()


def make_batch(pad_id: int = 0, labels: tuple[int, ...] = (0, 2, 1)) -> Batch:
    """Three examples of lengths 7, 4 and 5 (ids from the tiny vocabulary), right-padded with ``pad_id``."""
    rows = [[2, 10, 11, 12, 13, 14, 3], [2, 20, 21, 3], [2, 30, 31, 32, 3]]
    rows = rows[: len(labels)]
    length = max(len(r) for r in rows)
    ids = torch.tensor([r + [pad_id] * (length - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (length - len(r)) for r in rows])
    return Batch(inputs={"input_ids": ids, "attention_mask": mask}, labels=torch.tensor(labels))


def provider_factory(**options: object) -> Callable[[str], IntegratedGradients]:
    provider = IntegratedGradients(IGOptions(**options))  # type: ignore[arg-type]
    return lambda name: provider


def student_context(
    task: TaskSpec, student: nn.Module, teacher: nn.Module | None, batch: Batch, **ig: object
) -> tuple[LossContext, torch.Tensor]:
    """A loss context with the student's forward captured as the trainer does; returns (ctx, logits)."""
    with capture_embedding_output(student) as captured:
        logits = student(**batch.inputs).logits
    assert captured.tensor is not None
    ctx = LossContext(
        task=task,
        student=student,
        teacher=teacher,
        student_forward=EmbeddingForward(captured.tensor, logits),
        provider_factory=provider_factory(**ig),
    )
    return ctx, logits
