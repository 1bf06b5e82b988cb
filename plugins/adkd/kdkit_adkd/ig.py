"""The ``ig`` attribution provider: Integrated Gradients at the output of the model's embedding block
(or, with ``layer`` N, at the output of transformer layer N: E below is then that layer's output).

With E the embedding block's output (B, L, D), E' a baseline and F_c the score of class c
(:func:`kdkit.attribution.base.class_scores`: log p_c, or the raw output for regression)::

    IG_c(E)_{i,j} = (E_ij - E'_ij) · (1/m) Σ_{k=1..m} ∂F_c(E' + (k/m)(E - E')) / ∂E_ij

(the right Riemann sum of the reference code; m = 1 is gradient × (input − baseline)).

How it runs:

- the m·B path points are rows of one batch: the inputs are repeated m times and a forward hook on the
  embedding block (found through ``get_input_embeddings()``, not attribute paths) replaces its output by
  E' + α_k (E - E'); the rows are split into chunks of ``batch_size``;
- one ``torch.autograd.grad`` per view gives ∂F_c/∂(path point) for every row at once (examples are
  independent, so the gradient of Σ_b F_c(x_b) is the per-example gradient);
- ``create_graph=True`` keeps the graph, so a loss can differentiate through the attributions (a
  second-order backward; the student then needs an attention kernel with a double backward);
- given ``forward`` (a forward pass whose embeddings are in the graph), the α = 1 point reuses it and every
  other path point is built from its E: with m = 1 the student needs no extra forward at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import Tensor, nn

from kdkit.plugin_api import (
    AttributionProvider,
    EmbeddingForward,
    ModelError,
    PluginError,
    class_scores,
    embedding_block,
    replace_embedding_output,
)


class IGOptions(BaseModel):
    """Options of the ``ig`` provider."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(1, ge=1, le=1024, description="m, IG path points k/m (k=1..m); 1 = gradient x input")
    baseline: Literal["zero", "pad"] = Field(
        "zero", description="E': zero vector (reference code) or the embedding of [PAD] tokens (paper text)"
    )
    batch_size: int = Field(
        256, ge=1, description="rows (path points x examples) per forward pass; the m*B rows are chunked"
    )
    layer: Literal["embeddings"] | int = Field(
        "embeddings",
        description="attribute at the embedding output, or at transformer layer N's output (N >= 1; in AD-KD "
        "the student's layer N, the teacher's is mapped: adkd.teacher_layer)",
    )

    @field_validator("layer")
    @classmethod
    def _layer_from_one(cls, value: str | int) -> str | int:
        if isinstance(value, int) and value < 1:
            raise ValueError("a layer number is 1 or more (the embedding output is 'embeddings')")
        return value


class _StopForward(Exception):
    """Raised by a hook to end a forward pass once the embedding block has run."""

    def __init__(self, output: Tensor) -> None:
        super().__init__("embedding output captured")
        self.output = output


@contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def pad_token_id(model: nn.Module) -> int:
    """The model's [PAD] id (``config.pad_token_id``)."""
    pad = getattr(getattr(model, "config", None), "pad_token_id", None)
    if pad is None:
        raise ModelError(
            f"{type(model).__name__} has no config.pad_token_id, needed for the [PAD] baseline",
            "set --set ig.baseline=zero, or give the model a pad_token_id",
        )
    return int(pad)


def pad_baseline(model: nn.Module, inputs: dict[str, Tensor]) -> Tensor:
    """E' for the [PAD] baseline: the embedding block's output with every word embedding replaced by the
    [PAD] token's, positions and token types unchanged, (B, L, D).

    Only the embedding block runs (the forward pass is stopped after it), in eval mode (no dropout). The
    result is in the autograd graph of the model's parameters when grad is enabled.
    """
    words = model.get_input_embeddings()  # type: ignore[operator]
    assert isinstance(words, nn.Module)
    block = embedding_block(model)
    pad = pad_token_id(model)

    def pad_words(_module: nn.Module, _args: Any, output: Tensor) -> Tensor:
        return words.weight[pad].expand_as(output)  # type: ignore[index]

    def stop(_module: nn.Module, _args: Any, output: Any) -> None:
        raise _StopForward(output[0] if isinstance(output, tuple) else output)

    handles = [words.register_forward_hook(pad_words), block.register_forward_hook(stop)]
    try:
        with _eval_mode(block):
            model(**inputs)
    except _StopForward as stopped:
        return stopped.output
    finally:
        for handle in handles:
            handle.remove()
    raise ModelError(f"the embedding block of {type(model).__name__} did not run", "use an encoder classifier")


class IntegratedGradients(AttributionProvider[IGOptions]):
    """Integrated Gradients at the embedding output (see the module docstring)."""

    name = "ig"
    Options = IGOptions
    differentiable = True
    description = "Integrated Gradients at the embedding block's output (m path points in one batch)"

    def cache_key(self) -> str:
        """Steps, baseline and a layer other than the embeddings decide the values; the chunk size does not
        (so keys of runs at the embeddings are what they were)."""
        layer = f":layer={self.layer}" if self.layer is not None else ""
        return f"{self.name}:steps={self.options.steps}:baseline={self.options.baseline}{layer}"

    def binary_views_equal(self) -> bool:
        """For two classes, are the two views' maps equal after abs and normalisation?

        With m = 1, ∂log p_0/∂E = -(p_1/p_0) ∂log p_1/∂E per example, so |IG_0| and |IG_1| differ by a
        positive per-example factor that top-K (scale-invariant), the L2 norm and the normalisation remove.
        With m > 1 the factor differs between path points and the maps are only close.
        """
        return self.options.steps == 1

    def attribute(
        self,
        model: nn.Module,
        inputs: dict[str, Tensor],
        targets: Tensor,
        *,
        create_graph: bool = False,
        forward: EmbeddingForward | None = None,
    ) -> Tensor:
        """IG of ``model``'s score for each target class, (B, V, L, D); padding positions are zero.

        Args:
            model: a sequence classifier.
            inputs: model inputs, (B, L) each.
            targets: (B, V) classes to explain (ignored for regression).
            create_graph: keep the graph through the attributions (for the student).
            forward: a forward pass of ``model`` on ``inputs`` whose ``embeddings`` are in the graph of
                its ``logits``; reused as the α = 1 path point, and its E is the input of every path (only
                when its ``layer`` is the provider's: else IG runs its own forward).
        """
        opts = self.options
        mask = inputs["attention_mask"]
        batch = int(mask.shape[0])
        steps = opts.steps
        layer = self.layer
        if forward is not None and forward.layer != layer:
            forward = None
        if layer is not None and opts.baseline == "pad":
            raise PluginError(
                f"ig.baseline=pad is the [PAD] embedding, not defined at layer {layer}",
                "use --set ig.baseline=zero with ig.layer",
            )
        with torch.enable_grad():
            baseline = pad_baseline(model, inputs) if opts.baseline == "pad" else None
            if baseline is not None and not create_graph:
                baseline = baseline.detach()
            total: Tensor | None = None  # Σ_k (E - E') · ∂F/∂P_k, (B, V, L, D)
            alphas = [k / steps for k in range(1, steps + 1)]
            if forward is not None:
                embeddings = forward.embeddings if create_graph else forward.embeddings.detach()
                total = self._path_point(
                    forward.embeddings, embeddings, baseline, forward.logits, targets, create_graph
                )
                alphas = alphas[:-1]
            rows = len(alphas) * batch
            if rows:  # (with m = 1 and the step's forward there is nothing left to run)
                alpha_table = torch.tensor(alphas, dtype=torch.float64, device=mask.device)
            for start in range(0, rows, opts.batch_size):
                row = torch.arange(start, min(start + opts.batch_size, rows), device=mask.device)
                example = row % batch
                alpha = alpha_table[row // batch].view(-1, 1, 1)
                contribution = self._chunk(
                    model, inputs, targets, example, alpha, baseline, forward, create_graph, layer
                )
                total = _index_add(total, example, contribution, batch)
        assert total is not None
        attributions = total / steps * mask[:, None, :, None].to(total.dtype)
        return attributions if create_graph else attributions.detach()

    def _chunk(
        self,
        model: nn.Module,
        inputs: dict[str, Tensor],
        targets: Tensor,
        example: Tensor,
        alpha: Tensor,
        baseline: Tensor | None,
        forward: EmbeddingForward | None,
        create_graph: bool,
        layer: int | None = None,
    ) -> Tensor:
        """Run the path points ``alpha`` (n, 1, 1) of the examples ``example`` (n,) as one batch (at the
        output of ``layer``: None for the embedding block)."""
        held: dict[str, Tensor] = {}

        def path(block_output: Tensor) -> Tensor:
            source = forward.embeddings[example] if forward is not None else block_output
            if not create_graph:
                source = source.detach()
            base = baseline[example] if baseline is not None else None
            scale = alpha.to(source.dtype)
            point = scale * source if base is None else base + scale * (source - base)
            if not create_graph:
                point = point.detach().requires_grad_(True)
            held["point"], held["source"] = point, source
            return point

        rows = {key: value[example] for key, value in inputs.items()}
        with replace_embedding_output(model, path, layer=layer):
            logits = model(**rows).logits
        base = baseline[example] if baseline is not None else None
        return self._path_point(held["point"], held["source"], base, logits, targets[example], create_graph)

    @staticmethod
    def _path_point(
        point: Tensor,
        source: Tensor,
        base: Tensor | None,
        logits: Tensor,
        targets: Tensor,
        create_graph: bool,
    ) -> Tensor:
        """(E - E') · ∂F_v/∂P for each view v: (n, V, L, D)."""
        scores = class_scores(logits, targets)
        views = int(scores.shape[1])
        grads = []
        for view in range(views):
            (grad,) = torch.autograd.grad(
                scores[:, view].sum(),
                point,
                retain_graph=create_graph or view < views - 1,
                create_graph=create_graph,
            )
            grads.append(grad)
        difference = source if base is None else source - base
        return difference.unsqueeze(1) * torch.stack(grads, dim=1)


def _index_add(total: Tensor | None, example: Tensor, contribution: Tensor, batch: int) -> Tensor:
    if total is None:
        total = contribution.new_zeros((batch, *contribution.shape[1:]))
    return total.index_add(0, example, contribution)
