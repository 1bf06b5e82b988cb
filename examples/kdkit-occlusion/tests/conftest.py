"""The plugin's tests use kdkit's pytest fixtures (``kdkit_tiny_classifier``, ``kdkit_plugin_manager``, ...)."""

pytest_plugins = ["kdkit.testing.fixtures"]
