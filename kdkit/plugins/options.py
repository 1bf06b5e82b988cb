"""Components built with their options: the values given to a loss or an attribution provider
(``--set NAME.OPTION=VALUE``, ``options.NAME`` in a config file) validated against the component's own
``Options`` model (one line naming a bad option; ``inf`` and ``nan`` refused), options given to a component the
run does not use, and the attribution providers a run builds by name (:func:`provider_factory`, the one place
that instantiates them)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel

from kdkit.attribution.base import AttributionProvider
from kdkit.config import DistillConfig, build_config, check_finite
from kdkit.data.tasks import TaskSpec
from kdkit.errors import ConfigError, KdkitWarning
from kdkit.losses.base import DistillationLoss, ProviderFactory
from kdkit.losses.composite import build_loss, loss_parts
from kdkit.plugins.manager import PluginManager


def validated_options(name: str, model: type[BaseModel], values: Mapping[str, Any] | None) -> BaseModel:
    """The options ``values`` of the component ``name`` validated into its ``model``."""
    check_finite(dict(values or {}), name)  # YAML's .inf and .nan
    validated: BaseModel = build_config(model, dict(values or {}), where=f"{name}.")
    check_finite(validated.model_dump(), name)  # "inf" or "nan", which a float field reads as such
    return validated


def resolve_options(plugins: PluginManager, config: DistillConfig) -> dict[str, BaseModel]:
    """Validate ``config.options`` against each component's options model (unknown names are errors)."""
    resolved: dict[str, BaseModel] = {}
    for name, values in config.options.items():
        options_model = plugins.component_options(name)
        if options_model is None:
            known = ", ".join(sorted([*plugins.losses, *plugins.providers, *plugins.augmenters]))
            raise ConfigError(f"unknown component '{name}' in --set/options", f"known components: {known}")
        resolved[name] = validated_options(name, options_model, values)
    for part in loss_parts(plugins.loss(config.loss)):  # each loss of a composite (kdkit.losses.composite)
        resolved.setdefault(part.name, part.Options())
    return resolved


def check_options_used(
    plugins: PluginManager, config: DistillConfig, options: dict[str, BaseModel], task: TaskSpec
) -> None:
    """Every component given options (``--set NAME.X=V``, ``options.NAME``) must be part of the chosen loss (else
    an error: they would be stored and never used); options of an attribution provider the loss does not use get
    a warning, unless they are the ``--preset``'s own (it sets them for a loss whose attribution term may then be
    turned off, e.g. ``adkd.ablation=no_attr``)."""
    loss_cls = plugins.loss(config.loss)
    parts = [part.name for part in loss_parts(loss_cls)]
    given = list(config.options)
    losses = [name for name in given if name not in parts and name not in plugins.providers and name != config.augment]
    if losses:
        raise ConfigError(
            f"options are given for '{losses[0]}' (--set {losses[0]}.OPTION or options.{losses[0]}), which is not "
            f"part of the chosen loss '{config.loss}'",
            f"drop them, or choose that loss (--plugin {losses[0]})",
        )
    preset = _preset_options(loss_cls, config)
    providers = [
        name
        for name in given
        if name in plugins.providers and name not in parts and config.options[name] != preset.get(name)
    ]
    if providers:
        used = build_loss(loss_cls, options, task).providers_used()
        unused = [name for name in providers if name not in used]
        if unused:
            uses = ", ".join(used) or "none"
            warnings.warn(
                f"the options of the attribution provider '{unused[0]}' are not used: the loss '{config.loss}' "
                f"does not use it (it uses: {uses})",
                KdkitWarning,
                stacklevel=2,
            )


def _preset_options(loss_cls: type[DistillationLoss], config: DistillConfig) -> dict[str, Any]:
    """The ``options`` the run's ``--preset`` sets for its task (empty without a preset)."""
    presets = loss_parts(loss_cls)[0].presets
    if not config.preset or config.preset not in presets or not config.data.task:
        return {}
    return dict(presets[config.preset](str(config.data.task)).get("options", {}))


def build_provider(plugins: PluginManager, name: str, values: Mapping[str, Any] | None = None) -> AttributionProvider:
    """The attribution provider ``name`` (``ig``, say, from the adkd plugin) built with the options ``values``."""
    cls = plugins.provider(name)
    return cls(validated_options(name, cls.Options, values))


def provider_factory(
    lookup: Callable[[str], type[AttributionProvider]], options: Mapping[str, BaseModel]
) -> ProviderFactory:
    """``name -> provider``, each built once, with its validated options in ``options`` (else its defaults);
    ``lookup`` finds the class (:meth:`PluginManager.provider`, which names the known ones when it fails)."""
    built: dict[str, AttributionProvider] = {}

    def factory(name: str) -> AttributionProvider:
        if name not in built:
            cls = lookup(name)
            built[name] = cls(options.get(name) or cls.Options())
        return built[name]

    return factory
