"""The plugin module kdkit loads through the entry point ``[project.entry-points.kdkit] occlusion``."""

from __future__ import annotations

from kdkit.plugin_api import AttributionProvider, hookimpl
from kdkit_occlusion.provider import Occlusion


@hookimpl
def kdkit_attribution_providers() -> list[type[AttributionProvider]]:
    """Contribute the ``occlusion`` provider (kdkit calls this once, when it collects components)."""
    return [Occlusion]
