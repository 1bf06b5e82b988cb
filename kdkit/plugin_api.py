"""What a kdkit plugin imports: every name here is the plugin interface, documented in docs/plugins.md and
walked through in docs/writing-plugins.md; nothing else of kdkit is promised to plugins.

    from kdkit.plugin_api import DistillationLoss, LossNeeds, hookimpl

- the hooks: :data:`hookimpl` marks a plugin's hook implementations (:mod:`kdkit.hookspecs`);
- a loss: :class:`DistillationLoss`, what it asks for (:class:`LossNeeds`), what it is handed (:class:`Batch`,
  :class:`LossContext`), presets (:data:`PresetFunction`) and the shared formulas (task loss, KD term,
  temperatures, the supervised term's name);
- an attribution provider: :class:`AttributionProvider`, the embedding-block hooks providers share and the
  normalised token maps;
- layers: the layer list, depth and width of a model, the uniform layer map of intermediate-layer losses, and
  the attention dropout a loss comparing attention distributions turns off;
- an augmenter: :class:`Augmenter` and what it is handed (:class:`AugmentContext`);
- the task (:class:`TaskSpec`), the errors a component raises, and :class:`PluginManager` (to load a plugin in a
  test; ``kdkit.testing`` has the rest of the test kit).

This module imports torch (every component does); ``kdkit predict`` never imports it.
"""

from __future__ import annotations

from kdkit.attribution.base import (
    AttributionProvider,
    EmbeddingForward,
    NoOptions,
    capture_embedding_output,
    class_scores,
    embedding_block,
    layer_block,
    replace_embedding_output,
    token_maps,
)
from kdkit.data.augmentation import AugmentContext, Augmenter
from kdkit.data.tasks import TaskSpec
from kdkit.errors import ConfigError, DataError, KdkitError, ModelError, PluginError, TrainingError
from kdkit.hookspecs import hookimpl
from kdkit.losses.attention import attention_dropout_off
from kdkit.losses.base import Batch, DistillationLoss, LossContext, LossNeeds, PresetFunction, ProviderFactory
from kdkit.losses.formulas import (
    annealed_temperature,
    labelled,
    soft_distillation_loss,
    step_temperature,
    supervised_term,
    task_loss,
    tempered_kl,
)
from kdkit.losses.layer_map import LayerMapSpec, layer_pairs, uniform_layer, uniform_map
from kdkit.models.layers import hidden_size, layer_list, num_layers
from kdkit.plugins.manager import PluginManager

__all__ = [
    "AttributionProvider",
    "AugmentContext",
    "Augmenter",
    "Batch",
    "ConfigError",
    "DataError",
    "DistillationLoss",
    "EmbeddingForward",
    "KdkitError",
    "LayerMapSpec",
    "LossContext",
    "LossNeeds",
    "ModelError",
    "NoOptions",
    "PluginError",
    "PluginManager",
    "PresetFunction",
    "ProviderFactory",
    "TaskSpec",
    "TrainingError",
    "annealed_temperature",
    "attention_dropout_off",
    "capture_embedding_output",
    "class_scores",
    "embedding_block",
    "hidden_size",
    "hookimpl",
    "labelled",
    "layer_block",
    "layer_list",
    "layer_pairs",
    "num_layers",
    "replace_embedding_output",
    "soft_distillation_loss",
    "step_temperature",
    "supervised_term",
    "task_loss",
    "tempered_kl",
    "token_maps",
    "uniform_layer",
    "uniform_map",
]
