"""kdkit: knowledge distillation for transformer classifiers.

The public Python API lives in :mod:`kdkit.api`; plugins implement the hook specs in
:mod:`kdkit.hookspecs` with the :data:`hookimpl` marker exported here.
"""

from kdkit.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = ["__version__", "hookimpl"]
