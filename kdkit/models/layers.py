"""A transformers model's layers, found through its own API (``config.num_hidden_layers``, ``config.hidden_size``)
rather than attribute paths: the layer list (what ``copy:N`` picks from and what attributions hook), how many
layers there are and how wide their hidden states are (what intermediate-layer losses map between).
"""

from __future__ import annotations

from torch import nn

from kdkit.errors import ModelError


def layer_list(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The transformer layer list (its state-dict prefix and the ModuleList): the ModuleList of the base
    model whose length is ``config.num_hidden_layers`` (``encoder.layer`` in BERT, ``transformer.layer`` in
    DistilBERT, ``layers`` in ModernBERT)."""
    config = model.config
    count = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layers", None)
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == count:
            return name, module
    raise ModelError(f"cannot find the layers of {type(model).__name__}", "use --student with a model path")


def num_layers(model: nn.Module) -> int:
    """The number of transformer layers of a transformers model (``config.num_hidden_layers``)."""
    count = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    if not isinstance(count, int) or count < 1:
        raise ModelError(f"{type(model).__name__} has no config.num_hidden_layers", "use a transformers encoder")
    return count


def hidden_size(model: nn.Module) -> int:
    """The width of a transformers model's hidden states (``config.hidden_size``)."""
    size = getattr(getattr(model, "config", None), "hidden_size", None)
    if not isinstance(size, int) or size < 1:
        raise ModelError(f"{type(model).__name__} has no config.hidden_size", "use a transformers encoder")
    return size
