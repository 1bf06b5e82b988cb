"""Hook specifications: the contract between kdkit and its plugins.

kdkit is a pluggy project named ``kdkit``. A plugin is any module or object with functions marked
``@hookimpl`` (:mod:`kdkit.plugin_api`) whose names match the specs below. Built-in plugins are registered
directly; external ones are found through the ``kdkit`` entry-point group (:mod:`kdkit.plugins.manager`).

Each hook is called once per plugin manager, with no arguments, and returns component *classes*; kdkit
instantiates them with their validated options. docs/plugins.md documents every hook (its purpose, signature,
when it is called, the component it returns, an example); a test checks that it does, and that each
docstring here points there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from kdkit.attribution.base import AttributionProvider
    from kdkit.data.augmentation import Augmenter
    from kdkit.losses.base import DistillationLoss

PROJECT_NAME = "kdkit"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def kdkit_losses() -> list[type[DistillationLoss]]:  # type: ignore[empty-body]
    """Contribute distillation losses: :class:`~kdkit.losses.base.DistillationLoss` subclasses.

    See docs/plugins.md, "kdkit_losses".
    """


@hookspec
def kdkit_attribution_providers() -> list[type[AttributionProvider]]:  # type: ignore[empty-body]
    """Contribute attribution providers: :class:`~kdkit.attribution.base.AttributionProvider` subclasses.

    See docs/plugins.md, "kdkit_attribution_providers".
    """


@hookspec
def kdkit_augmenters() -> list[type[Augmenter]]:  # type: ignore[empty-body]
    """Contribute augmenters: :class:`~kdkit.data.augmentation.Augmenter` subclasses, which turn a training text into
    new texts that the teacher labels (``kdkit distill --augment NAME``).

    See docs/plugins.md, "kdkit_augmenters".
    """
