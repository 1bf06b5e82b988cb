"""The built-in plugin, registered before any other: the ``ce`` and ``kd`` losses (:mod:`kdkit.losses.kd`) and
the intermediate-layer losses ``hidden`` (:mod:`kdkit.losses.hidden`) and ``attention``
(:mod:`kdkit.losses.attention`), meant to be combined with ``kd`` or ``adkd`` (``--plugin kd --plugin hidden``,
:mod:`kdkit.losses.composite`); and the augmenters ``mask``, ``swap`` and ``neighbours`` (:mod:`kdkit.data.augmenters`).
It provides no attribution provider (AD-KD's ``ig`` is the adkd plugin's)."""

from __future__ import annotations

from kdkit.attribution.base import AttributionProvider
from kdkit.data.augmentation import Augmenter
from kdkit.data.augmenters import MaskAugmenter, NeighbourAugmenter, SwapAugmenter
from kdkit.hookspecs import hookimpl
from kdkit.losses.attention import AttentionLoss
from kdkit.losses.base import DistillationLoss
from kdkit.losses.hidden import HiddenStateLoss
from kdkit.losses.kd import CrossEntropy, VanillaKD


@hookimpl
def kdkit_losses() -> list[type[DistillationLoss]]:
    return [CrossEntropy, VanillaKD, HiddenStateLoss, AttentionLoss]


@hookimpl
def kdkit_attribution_providers() -> list[type[AttributionProvider]]:
    return []


@hookimpl
def kdkit_augmenters() -> list[type[Augmenter]]:
    return [MaskAugmenter, SwapAugmenter, NeighbourAugmenter]
