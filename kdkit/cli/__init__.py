"""The ``kdkit`` command line: a thin Typer layer over :mod:`kdkit.api`, one module per command.

Every training command builds a pydantic config (defaults < ``--preset`` < ``--config FILE`` < flags, the
flags made from the config models by :mod:`kdkit.cli.flags`) and calls the API. A
:class:`~kdkit.errors.KdkitError`, or a bad option value, is printed as one line (``error: problem: fix``) with
exit status 2.

Importing this package does not import torch (the plugin host and the API are imported inside the commands),
so ``kdkit predict`` runs where only onnxruntime, tokenizers and numpy are installed besides the CLI's needs.
"""

from kdkit.cli.base import app

# importing a command's module registers the command; --help lists them in this order
# isort: off
from kdkit.cli import finetune, distill, evaluate, export, predict, web, explain, plugins, tasks  # noqa: F401
from kdkit.cli import compress  # noqa: F401
# isort: on

__all__ = ["app"]
