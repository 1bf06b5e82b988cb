"""The attribution distance and the choice of K: pure tensor functions (no models).

The normalised per-token maps themselves are kdkit's (``kdkit.plugin_api.token_maps``, shared with
``kdkit explain``). Shapes: B examples, V views, L tokens, D hidden dimensions.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

Distance = Literal["l2", "l1", "smooth_l1"]


def resolve_top_k(hidden_size: int, top_k: int | None = None, top_k_fraction: float | None = None) -> int | None:
    """The number of hidden dimensions the teacher's maps keep, or ``None`` for all of them.

    ``top_k`` is absolute and wins when both are set (so ``--set adkd.top_k=N`` overrides a preset's
    fraction); ``top_k_fraction`` is a share of the hidden size, rounded (the paper's K is "of 768": K = 640
    becomes ``top_k_fraction = 640/768`` for other hidden sizes). K >= D keeps all.
    """
    if top_k is None and top_k_fraction is None:
        return None
    k = top_k if top_k is not None else max(1, round(float(top_k_fraction or 1.0) * hidden_size))
    return None if k >= hidden_size else k


def map_distance(
    teacher_maps: Tensor,
    student_maps: Tensor,
    attention_mask: Tensor,
    *,
    distance: Distance = "l2",
    view_weights: Tensor | None = None,
    token_count: Tensor | None = None,
) -> Tensor:
    """L_attr: the distance between normalised maps, summed over views, averaged over real tokens.

        L_attr = Σ_v w_v · Σ_{b,i} mask_{b,i} · δ(â^t_{b,v,i} − â^s_{b,v,i}) / N

    with δ = d² (l2), |d| (l1) or smooth-L1 (β = 1), and N the number of real tokens in the batch (the
    reference code's "number of non-zero teacher entries" per view). So β weighs a per-token mean, whatever
    the batch's padding or sentence length.

    Args:
        teacher_maps, student_maps: (B, V, L).
        attention_mask: (B, L).
        view_weights: (V,) weights w_v (default 1 each).
        token_count: N, if it differs from this batch's count (data-parallel training uses the mean
            count over processes, so the averaged gradient equals the single-process one).
    """
    dtype = torch.promote_types(torch.promote_types(teacher_maps.dtype, student_maps.dtype), torch.float32)
    difference = (teacher_maps.to(dtype) - student_maps.to(dtype)).reshape(-1)
    if distance == "l2":
        per_entry = difference.pow(2)
    elif distance == "l1":
        per_entry = difference.abs()
    elif distance == "smooth_l1":
        per_entry = F.smooth_l1_loss(difference, torch.zeros_like(difference), reduction="none", beta=1.0)
    else:  # pragma: no cover - validated by the options model
        raise ValueError(f"unknown distance {distance!r}")
    per_entry = per_entry.view_as(teacher_maps) * attention_mask[:, None, :].to(per_entry.dtype)
    per_view = per_entry.sum(dim=(0, 2))
    if view_weights is not None:
        per_view = per_view * view_weights.to(per_view.dtype)
    count = attention_mask.sum().to(per_view.dtype) if token_count is None else token_count.to(per_view.dtype)
    return per_view.sum() / count.clamp_min(1.0)
