"""The ``attention`` loss: KL divergence between teacher and student self-attention distributions.

For the layer map (k, t(k)), k = 1..L_s (:mod:`kdkit.losses.layer_map`; layer 0, the embeddings, has no attention),
attention probabilities A^s_k, A^t_{t(k)} of shape (B, H, L, L) (query i, key j, softmax over j), P = L_s
pairs, H heads and N real query tokens in the batch::

    L_attention = 1/(P·H·N) Σ_k Σ_h Σ_{b, i real} KL(A^t_{t(k),b,h,i,:} ‖ A^s_{k,b,h,i,:})
    KL(t ‖ s)   = Σ_{j real} t_j · (log t_j − log max(s_j, eps))

(TinyBERT and MiniLM transfer self-attention; MiniLM uses this KL, per head, on the last layer.) Padding queries
are skipped and padding keys carry no probability. With ``heads=mean`` the distributions are averaged over
heads first (H = 1), so teacher and student may have different numbers of heads. The term is
``weight · L_attention`` (named ``attention``).

Attention weights need the eager kernel (SDPA returns none): kdkit switches teacher and student to it when this
loss is on (docs/benchmarks.md measures the cost). The weights transformers returns are taken *after* the
attention-probability dropout, so they are not distributions in training mode: :meth:`AttentionLoss.prepare`
turns that dropout off in the student (hidden-state dropout stays), and every step checks that the student's
rows sum to 1. MiniLM's value-relation term is not provided (transformers models do not return the values).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from kdkit.errors import ConfigError, TrainingError
from kdkit.losses.base import Batch, DistillationLoss, LossContext, LossNeeds
from kdkit.losses.layer_map import LayerMapSpec, layer_pairs
from kdkit.models.layers import num_layers


class AttentionOptions(BaseModel):
    """Options of the ``attention`` loss (``--set attention.NAME=VALUE``)."""

    model_config = ConfigDict(extra="forbid")

    weight: float = Field(1.0, ge=0.0, description="weight of the attention term")
    layers: LayerMapSpec = Field(
        "uniform",
        description="teacher layer of each student layer: uniform = round(k*L_t/L_s), halves up; or a list of "
        "L_s teacher layers (1..L_t)",
    )
    heads: Literal["each", "mean"] = Field(
        "each", description="each: KL per head (same head count); mean: of the head-averaged distributions"
    )
    eps: float = Field(1e-12, gt=0.0, description="floor of the student's probabilities inside the log")


def _attention_classes(model: nn.Module) -> tuple[type, ...]:
    """The self-attention classes of ``model``: those transformers records ``attentions`` from, else (models
    without that record, as DeBERTa-v2's) the classes named ``...SelfAttention``."""
    recorded = (getattr(model, "_can_record_outputs", None) or {}).get("attentions")
    classes = tuple(c for c in (recorded if isinstance(recorded, list) else [recorded]) if isinstance(c, type))
    if classes:
        return classes
    return tuple({type(m) for m in model.modules() if type(m).__name__.endswith("SelfAttention")})


def attention_dropout_off(model: nn.Module) -> int:
    """Set the attention-probability dropout of ``model``'s self-attention modules to 0; returns how many were
    changed. It is their ``attention_dropout`` where they have one (ALBERT's module, ModernBERT's rate), else
    their ``dropout`` (BERT, RoBERTa, DistilBERT, ELECTRA, DeBERTa-v2)."""
    classes = _attention_classes(model)
    changed = 0
    for module in model.modules():
        if not (classes and isinstance(module, classes)):
            continue
        name = "attention_dropout" if hasattr(module, "attention_dropout") else "dropout"
        dropout = getattr(module, name, None)
        if isinstance(dropout, nn.Dropout) and dropout.p > 0:
            dropout.p = 0.0
            changed += 1
        elif isinstance(dropout, (int, float)) and dropout > 0:  # a rate handed to the attention kernel
            setattr(module, name, 0.0)
            changed += 1
    return changed


def attention_kl(student: Tensor, teacher: Tensor, attention_mask: Tensor, *, eps: float = 1e-12) -> Tensor:
    """L_attention (module docstring) of stacked distributions.

    Args:
        student: (B, P, H, L, L) student attention probabilities.
        teacher: (B, P, H, L, L) the teacher's, same shape.
        attention_mask: (B, L), 1 for real tokens.
    """
    student, teacher = student.float(), teacher.float()
    keys = attention_mask[:, None, None, None, :].to(student.dtype)  # (B, 1, 1, 1, L)
    queries = attention_mask[:, None, None, :].to(student.dtype)  # (B, 1, 1, L)
    pointwise = (torch.xlogy(teacher, teacher) - teacher * student.clamp_min(eps).log()) * keys
    per_query = pointwise.sum(dim=-1) * queries  # (B, P, H, L)
    pairs, heads = student.shape[1], student.shape[2]
    return per_query.sum() / (attention_mask.sum().to(student.dtype).clamp_min(1.0) * pairs * heads)


def check_distributions(attentions: Tensor, attention_mask: Tensor, tolerance: float = 1e-2) -> None:
    """A :class:`TrainingError` unless the rows of real queries sum to 1 over real keys: (B, P, H, L, L), within
    ``tolerance``: 0.01 covers bf16 (weights rounded to 8 bits: measured up to 0.003 off), and dropout is far off
    (p = 0.1 leaves a row at (1 − dropped mass) / 0.9, about 1.11, unless it dropped about a tenth of its mass)."""
    keys = attention_mask[:, None, None, None, :].to(torch.float32)
    sums = (attentions.float() * keys).sum(dim=-1)  # (B, P, H, L)
    real = attention_mask[:, None, None, :].expand_as(sums).bool()
    worst = float((sums[real] - 1).abs().max()) if bool(real.any()) else 0.0
    if worst > tolerance:
        raise TrainingError(
            f"the student's attention rows do not sum to 1 (off by up to {worst:.3g}): attention dropout is on",
            "the attention loss needs the student's attention-probability dropout at 0 (prepare() sets it)",
        )


class AttentionLoss(DistillationLoss[AttentionOptions]):
    """weight · L_attention between mapped self-attention distributions (see the module docstring)."""

    name = "attention"
    Options = AttentionOptions
    description = "KL between teacher and student attention distributions of mapped layers; use with kd or adkd"
    needs = LossNeeds(student_outputs={"attentions"}, teacher_outputs={"attentions"})

    def prepare(self, ctx: LossContext) -> None:
        """Check the layer map and the heads; turn the student's attention-probability dropout off."""
        if ctx.teacher is None:
            raise TrainingError("the attention loss needs the teacher's layers", "give --teacher")
        layer_pairs(
            self.options.layers,
            num_layers(ctx.student),
            num_layers(ctx.teacher),
            allow_embeddings=False,
            option="attention.layers",
        )
        heads = [getattr(m.config, "num_attention_heads", None) for m in (ctx.student, ctx.teacher)]
        if self.options.heads == "each" and heads[0] != heads[1]:
            raise ConfigError(
                f"the student has {heads[0]} attention heads, the teacher {heads[1]}",
                "compare head-averaged distributions: --set attention.heads=mean",
            )
        attention_dropout_off(ctx.student)

    def live_teacher_signals(self, teacher_outputs: Any, batch: Batch, ctx: LossContext) -> dict[str, Tensor]:
        """``attention``: the teacher's distributions of the mapped layers, (B, P, H, L, L) (H = 1 with
        ``heads=mean``)."""
        attentions = teacher_outputs.attentions
        pairs = layer_pairs(
            self.options.layers,
            num_layers(ctx.student),
            len(attentions),
            allow_embeddings=False,
            option="attention.layers",
        )
        return {"attention": self._heads(torch.stack([attentions[t - 1] for _, t in pairs], dim=1).float())}

    def _heads(self, attentions: Tensor) -> Tensor:
        return attentions.mean(dim=2, keepdim=True) if self.options.heads == "mean" else attentions

    def __call__(
        self, batch: Batch, student_logits: Tensor, teacher_signals: Mapping[str, Tensor], ctx: LossContext
    ) -> dict[str, Tensor]:
        student = torch.stack(list(ctx.student_outputs.attentions), dim=1)  # (B, L_s, H, L, L)
        check_distributions(student.detach(), batch.attention_mask)
        distance = attention_kl(
            self._heads(student), teacher_signals["attention"], batch.attention_mask, eps=self.options.eps
        )
        return {"attention": self.options.weight * distance}
