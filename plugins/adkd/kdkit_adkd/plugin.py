"""The ``adkd`` plugin's hook implementations (entry point ``kdkit: adkd = "kdkit_adkd.plugin"``)."""

from __future__ import annotations

from kdkit.plugin_api import AttributionProvider, DistillationLoss, hookimpl
from kdkit_adkd.ig import IntegratedGradients
from kdkit_adkd.loss import ADKDLoss


@hookimpl
def kdkit_losses() -> list[type[DistillationLoss]]:
    return [ADKDLoss]


@hookimpl
def kdkit_attribution_providers() -> list[type[AttributionProvider]]:
    return [IntegratedGradients]
