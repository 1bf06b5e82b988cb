"""The ``kdkit`` command line: a thin Typer layer over :mod:`kdkit.api`, one module per command.

Every training command builds a pydantic config (defaults < ``--preset`` < ``--config FILE`` < flags, the
flags made from the config models by :mod:`kdkit.cli.flags`) and calls the API. A
:class:`~kdkit.errors.KdkitError`, or a bad option value, is printed as one line (``error: problem: fix``) with
exit status 2.

Importing this package does not import torch (the plugin host and the API are imported inside the commands),
so ``kdkit predict`` runs where only onnxruntime, tokenizers and numpy are installed besides the CLI's needs.
"""

import sys

from kdkit.cli.base import app

# importing a command's module registers the command; --help lists them in this order
# isort: off
from kdkit.cli import finetune, distill, evaluate, export, predict, explain, plugins, tasks  # noqa: F401
# isort: on

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point (as :func:`kdkit.entry.main`: SIGTERM handled like Ctrl-C, ``--debug``)."""
    from kdkit import entry

    entry.handle_sigterm()
    if "--debug" in sys.argv[1:]:
        entry.set_debug(True)
    entry.run(app)
