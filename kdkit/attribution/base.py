"""Attribution providers: per-token, per-hidden-dimension attributions at the embedding output.

A provider explains a classifier's score for chosen target classes in terms of ``E``, the output of the
model's embedding block (word + position + token-type embeddings after their LayerNorm), shape (B, L, D).
Providers are contributed by plugins through :func:`kdkit.hookspecs.kdkit_attribution_providers`.

This module also holds the model-agnostic plumbing that providers share: finding the embedding block
through the model's own API (:func:`embedding_block`), hooking its output (:func:`replace_embedding_output`,
:func:`capture_embedding_output`) and the score function (:func:`class_scores`).

A provider with a ``layer`` option may attribute at the output of transformer layer N instead (paper Table 3):
``layer_block(model, N)`` is that layer's module, ``replace_embedding_output(..., layer=N)`` hooks its output,
and :meth:`AttributionProvider.at_layer` points a provider at another layer (the teacher's mapped one).
"""

from __future__ import annotations

import abc
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, cast

import torch
from pydantic import BaseModel, ConfigDict
from torch import Tensor, nn
from typing_extensions import TypeVar

from kdkit.errors import ModelError, PluginError
from kdkit.models.layers import layer_list


class NoOptions(BaseModel):
    """Options model for components without options."""

    model_config = ConfigDict(extra="forbid")


#: the options model of a provider or loss: ``class MyLoss(DistillationLoss[MyOptions])`` types ``self.options``
#: as ``MyOptions``; a subclass without the parameter sees a plain ``BaseModel`` (the default), as before.
#: Covariant, so ``type[MyLoss]`` is a ``type[DistillationLoss]`` (what the hooks return).
OptionsT = TypeVar("OptionsT", bound=BaseModel, default=BaseModel, covariant=True)


@dataclass
class EmbeddingForward:
    """A forward pass whose embedding output is part of the autograd graph.

    Attributes:
        embeddings: E, the embedding block's output, (B, L, D), in the graph of ``logits`` (with ``layer`` N:
            the output of transformer layer N instead).
        logits: the model's output for E, (B, C).
        layer: ``None`` for the embedding block, else the layer whose output ``embeddings`` is.
    """

    embeddings: Tensor
    logits: Tensor
    layer: int | None = None


class AttributionProvider(abc.ABC, Generic[OptionsT]):
    """Base class of attribution providers.

    Subclasses set the class attributes and implement :meth:`attribute`; they may override the methods
    below that have a default (:meth:`cache_key`, :meth:`binary_views_equal`, :attr:`layer`, :meth:`at_layer`:
    docs/plugins.md lists them). They are built with their validated options:
    ``Provider(Provider.Options(**user_options))``; ``class Provider(AttributionProvider[ProviderOptions])``
    with ``Options = ProviderOptions`` types ``self.options`` as ``ProviderOptions``.
    """

    #: the name users refer to (``--set NAME.option=value``, loss options that pick a provider)
    name: ClassVar[str]
    #: pydantic model of the provider's options
    Options: ClassVar[type[BaseModel]] = NoOptions
    #: True if ``attribute(..., create_graph=True)`` returns attributions differentiable w.r.t. the
    #: model's parameters (needed for the student side of attribution distillation)
    differentiable: ClassVar[bool] = False
    #: one line for ``kdkit plugins``
    description: ClassVar[str] = ""

    def __init__(self, options: OptionsT | None = None) -> None:
        self.options: OptionsT = options if options is not None else cast(OptionsT, self.Options())

    @abc.abstractmethod
    def attribute(
        self,
        model: nn.Module,
        inputs: dict[str, Tensor],
        targets: Tensor,
        *,
        create_graph: bool = False,
        forward: EmbeddingForward | None = None,
    ) -> Tensor:
        """Attributions of ``model``'s score for each target class to each token and hidden dimension.

        Args:
            model: a sequence classifier (``model(**inputs).logits`` is (B, C)).
            inputs: model inputs; ``input_ids`` and ``attention_mask`` are (B, L).
            targets: (B, V) long tensor of the classes to explain, one column per view. For regression
                (C = 1) the single output is explained and the values are ignored.
            create_graph: build a graph through the attributions (only if ``differentiable``).
            forward: optionally, a forward pass of ``model`` on ``inputs`` whose embeddings are in the
                graph; providers may reuse it instead of running their own forward at the input itself.

        Returns:
            (B, V, L, D) attributions at the embedding output, D the hidden size (or 1 for providers that
            score whole tokens). Padding positions are exactly zero.
        """

    def cache_key(self) -> str:
        """Identity of this provider's behaviour, for the teacher-signal cache key."""
        return f"{self.name}:{self.options.model_dump_json()}"

    def binary_views_equal(self) -> bool:
        """True if, for a two-class model, the two views' maps (targets 0 and 1) are always equal after
        :func:`token_maps`, so a loss may compute one view instead of two (AD-KD's ``binary_single_view``).

        IG with one path point is such a provider: ∂log p_0/∂E = -(p_1/p_0) ∂log p_1/∂E, a per-example factor
        that the normalisation removes. Default: False, always safe; return True only when it holds for every
        input (:func:`kdkit.testing.check_attribution_provider` verifies it)."""
        return False

    @property
    def layer(self) -> int | None:
        """Where the provider attributes: ``None`` for the embedding block's output, N for the output of
        transformer layer N (from a ``layer`` option, ``"embeddings"`` or N; providers without one: ``None``)."""
        value = getattr(self.options, "layer", None)
        return None if value in (None, "embeddings", 0) else int(value)

    def at_layer(self, layer: int | None) -> AttributionProvider[OptionsT]:
        """A copy of this provider attributing at ``layer`` (``None``: the embedding block); it needs a ``layer``
        option. Losses use it to point the teacher's provider at the teacher layer mapped to the student's."""
        if layer == self.layer:
            return self
        if "layer" not in type(self.options).model_fields:
            raise PluginError(
                f"attribution provider '{self.name}' cannot attribute at layer {layer} (it has no 'layer' option)",
                "use a provider with a 'layer' option (ig), or attribute at the embeddings",
            )
        return type(self)(self.options.model_copy(update={"layer": "embeddings" if layer is None else layer}))


#: model -> (its word embeddings, their embedding block), while the model lives
_EMBEDDING_BLOCKS: weakref.WeakKeyDictionary[nn.Module, tuple[nn.Module, nn.Module]] = weakref.WeakKeyDictionary()


def embedding_block(model: nn.Module) -> nn.Module:
    """The module whose output is E: the owner of ``model.get_input_embeddings()``.

    Works for BERT, RoBERTa, DistilBERT, ELECTRA, DeBERTa and other encoders whose word embeddings sit
    inside an embeddings block, without relying on attribute paths such as ``.bert.embeddings``.
    """
    get_input_embeddings = getattr(model, "get_input_embeddings", None)
    if get_input_embeddings is None:
        raise ModelError(
            f"{type(model).__name__} has no get_input_embeddings()",
            "use a transformers sequence classifier",
        )
    word_embeddings = get_input_embeddings()
    known = _EMBEDDING_BLOCKS.get(model)
    if known is not None and known[0] is word_embeddings:  # the search walks every module: once per model
        return known[1]
    owners = [module for module in model.modules() if any(child is word_embeddings for child in module.children())]
    if not owners:
        raise ModelError(
            f"cannot find the embedding block of {type(model).__name__}",
            "use an encoder whose word embeddings live in an embeddings module",
        )
    _EMBEDDING_BLOCKS[model] = (word_embeddings, owners[-1])
    return owners[-1]


def layer_block(model: nn.Module, layer: int | None = None) -> nn.Module:
    """The module whose output is attributed: the embedding block (``layer`` None or 0), or transformer layer
    ``layer`` (1-based, the module whose output is ``hidden_states[layer]``)."""
    if not layer:
        return embedding_block(model)
    _, layers = layer_list(model)
    if not 1 <= layer <= len(layers):
        raise ModelError(
            f"{type(model).__name__} has layers 1..{len(layers)}, not {layer}",
            f"attribute at a layer between 1 and {len(layers)} (or at the embeddings)",
        )
    return layers[layer - 1]


@contextmanager
def replace_embedding_output(
    model: nn.Module, fn: Callable[[Tensor], Tensor], *, layer: int | None = None
) -> Iterator[None]:
    """Within the block, the embedding block's output E (with ``layer`` N: transformer layer N's output) is
    replaced by ``fn(E)`` on every forward."""

    def hook(_module: nn.Module, _args: Any, output: Any) -> Any:
        if isinstance(output, tuple):
            return (fn(output[0]), *output[1:])
        return fn(output)

    handle = layer_block(model, layer).register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


class _Captured:
    tensor: Tensor | None = None


@contextmanager
def capture_embedding_output(model: nn.Module) -> Iterator[_Captured]:
    """Record the embedding block's output of the forward passes run inside the block (the last one)."""
    captured = _Captured()

    def keep(embeddings: Tensor) -> Tensor:
        captured.tensor = embeddings
        return embeddings

    with replace_embedding_output(model, keep):
        yield captured


def class_scores(logits: Tensor, targets: Tensor) -> Tensor:
    """F_c: the score explained for each view, (B, V).

    Classification (C > 1): log p_c = log_softmax(logits)[c] (the reference code differentiates the
    log-probability). Regression (C = 1): the raw output, repeated for each view.
    """
    if logits.shape[-1] == 1:
        return logits[:, :1].expand(-1, targets.shape[1])
    # at least float32 (half-precision logits are upcast; float64 stays float64)
    upcast = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return torch.log_softmax(upcast, dim=-1).gather(1, targets)


def token_maps(attributions: Tensor, attention_mask: Tensor, *, top_k: int | None = None, eps: float = 1e-12) -> Tensor:
    """Normalised per-token attribution maps (AD-KD's Eq. 4-8; also what ``kdkit explain`` shows).

    Args:
        attributions: (B, V, L, D) attributions at the embedding output.
        attention_mask: (B, L), 1 for real tokens.
        top_k: keep the K largest |values| over D before the norm (AD-KD's teacher); ``None`` keeps all.
        eps: lower bound of the norm in the normalisation.

    Returns:
        (B, V, L): a_{v,i} = ‖TopK(|A_{v,i,:}|)‖₂ · mask_i and â_v = a_v / max(‖a_v‖₂, eps), so each map
        has unit L2 norm over the real tokens and is exactly zero at padding.
    """
    if top_k is not None and top_k < attributions.shape[-1]:
        values = attributions.abs().topk(top_k, dim=-1).values
    else:
        values = attributions
    norms = torch.linalg.vector_norm(values.to(torch.promote_types(values.dtype, torch.float32)), dim=-1)
    norms = norms * attention_mask[:, None, :].to(norms.dtype)
    return norms / torch.linalg.vector_norm(norms, dim=-1, keepdim=True).clamp_min(eps)
