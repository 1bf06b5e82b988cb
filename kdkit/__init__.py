"""kdkit: knowledge distillation for transformer classifiers.

The Python API is :mod:`kdkit.api` (``finetune``, ``distill``, ``evaluate``) with the options of
:mod:`kdkit.config`; a plugin imports :mod:`kdkit.plugin_api`. Importing ``kdkit`` itself loads nothing else.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
