"""The ``occlusion`` attribution provider: what the model loses when a token is hidden.

For an example x, a target class c and each real token i::

    score_i = log p_c(x) - log p_c(x with token i replaced by [MASK] (or [PAD]))

(the raw output instead of log p_c for regression). A positive score means the token supports class c.
Forward passes only, under ``torch.no_grad()``: it explains teachers whose gradients are not available
(an API, a quantised or compiled model), which is what AD-KD suggests for such teachers. Not
differentiable, so it serves the teacher's side of AD-KD (``--set adkd.teacher_provider=occlusion``); the
student's side stays Integrated Gradients.

- Every real token is occluded, [CLS] and [SEP] included (the same positions as IG attributes, so teacher
  and student maps cover the same tokens); padding positions are exactly zero.
- The occluded copies of a batch (one per real token, at most B·L) run as batches of ``batch_size`` rows,
  each cut after its last real token.
- The result is (B, V, L, 1): one score per token (D = 1), so AD-KD's top-K over D changes nothing.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from kdkit.plugin_api import AttributionProvider, EmbeddingForward, ModelError, PluginError, class_scores


class OcclusionOptions(BaseModel):
    """Options of the ``occlusion`` provider (``--set occlusion.NAME=VALUE``)."""

    model_config = ConfigDict(extra="forbid")

    replacement: Literal["mask", "pad"] = Field("mask", description="the token put in place of each token")
    token_id: int | None = Field(
        None, ge=0, description="id of the replacement token (default: found in the model's config or tokenizer)"
    )
    batch_size: int = Field(256, ge=1, description="occluded copies per forward pass")


class Occlusion(AttributionProvider[OcclusionOptions]):
    """Occlusion: the drop in the target's log-probability when a token is replaced (see the module doc)."""

    name = "occlusion"
    Options = OcclusionOptions
    differentiable = False
    description = "drop in log p(target) when a token is replaced by [MASK] or [PAD]; forward passes only"

    def __init__(self, options: OcclusionOptions | None = None) -> None:
        super().__init__(options)
        self._mask_ids: dict[str, int | None] = {}

    def cache_key(self) -> str:
        """The replacement decides the scores; the batch size does not."""
        return f"{self.name}:replacement={self.options.replacement}:token_id={self.options.token_id}"

    def attribute(
        self,
        model: nn.Module,
        inputs: dict[str, Tensor],
        targets: Tensor,
        *,
        create_graph: bool = False,
        forward: EmbeddingForward | None = None,
    ) -> Tensor:
        """Occlusion scores of ``model``'s score for each target class, (B, V, L, 1).

        Args:
            model: a sequence classifier.
            inputs: model inputs, (B, L) each.
            targets: (B, V) classes to explain (ignored for regression).
            create_graph: must be False (occlusion is not differentiable).
            forward: if given, its logits are reused for the unoccluded scores.
        """
        if create_graph:
            raise PluginError(
                "the occlusion provider is not differentiable",
                "use it for the teacher (--set adkd.teacher_provider=occlusion); the student needs ig",
            )
        mask = inputs["attention_mask"]
        batch, length = mask.shape
        replacement = self.replacement_id(model)
        with torch.no_grad():
            logits = forward.logits if forward is not None else model(**inputs).logits
            base = class_scores(logits.detach(), targets)  # (B, V)
            scores = base.new_zeros(batch, targets.shape[1], length)
            positions = mask.nonzero()  # (N, 2): (example, token) of every real token
            for chunk in positions.split(self.options.batch_size):
                example, token = chunk[:, 0], chunk[:, 1]
                width = int(mask[example].any(dim=0).nonzero().max()) + 1  # drop trailing padding
                rows = {key: value[example, :width] for key, value in inputs.items()}
                ids = rows["input_ids"].clone()
                ids[torch.arange(len(chunk), device=ids.device), token] = replacement
                rows["input_ids"] = ids
                occluded = class_scores(model(**rows).logits, targets[example])  # (n, V)
                scores[example, :, token] = base[example] - occluded
        return scores.unsqueeze(-1)

    def replacement_id(self, model: nn.Module) -> int:
        """The id put in place of each token: ``token_id`` if set; for ``pad`` the model's
        ``config.pad_token_id``; for ``mask`` ``config.mask_token_id`` or the [MASK] of the tokenizer saved
        with the model (kdkit saves teachers and students with their tokenizer)."""
        if self.options.token_id is not None:
            return self.options.token_id
        config = getattr(model, "config", None)
        if self.options.replacement == "pad":
            pad = getattr(config, "pad_token_id", None)
            if pad is None:
                raise ModelError(
                    f"{type(model).__name__} has no config.pad_token_id",
                    "set --set occlusion.token_id=ID, or --set occlusion.replacement=mask",
                )
            return int(pad)
        mask_id = getattr(config, "mask_token_id", None)
        if mask_id is not None:
            return int(mask_id)
        source = str(getattr(config, "name_or_path", "") or "")
        if source not in self._mask_ids:
            self._mask_ids[source] = _tokenizer_mask_id(source)
        found = self._mask_ids[source]
        if found is None:
            raise ModelError(
                f"cannot find the [MASK] token id of {type(model).__name__} '{source or 'in memory'}'",
                "set --set occlusion.token_id=ID, or --set occlusion.replacement=pad",
            )
        return found


def _tokenizer_mask_id(source: str) -> int | None:
    """The [MASK] id of the tokenizer at ``source`` (a model directory or hub id), or None."""
    if not source:
        return None
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)  # never run a folder's code
    except Exception:  # no tokenizer there (or offline): the caller reports it
        return None
    mask_id = getattr(tokenizer, "mask_token_id", None)
    return int(mask_id) if mask_id is not None else None
