"""AD-KD plugin tests: skipped unless the plugin is installed (``pip install -e plugins/adkd``)."""

from __future__ import annotations

import pytest

from kdkit.plugins.manager import PluginManager

pytest.importorskip("kdkit_adkd", reason="install the plugin: pip install -e plugins/adkd")


@pytest.fixture
def adkd_manager() -> PluginManager:
    """Built-ins plus the adkd plugin, loaded through its entry point."""
    manager = PluginManager(autoload=False, enable=["adkd"])
    assert "adkd" in manager.losses, [f.error for f in manager.failures]
    return manager
