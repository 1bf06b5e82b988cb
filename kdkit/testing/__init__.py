"""A test kit for kdkit plugins (and kdkit itself): tiny models and data, conformance checks, fixtures.

- :mod:`kdkit.testing.models`: tiny random classifiers, a tiny WordPiece tokenizer, tiny CSV data sets;
  nothing is downloaded.
- :mod:`kdkit.testing.conformance_provider` and :mod:`kdkit.testing.conformance_loss` (what they share:
  :mod:`kdkit.testing.conformance_base`): :func:`check_attribution_provider` and :func:`check_loss`, which run a
  component the way kdkit does and fail with a message naming the broken rule.
- :mod:`kdkit.testing.run`: :func:`run_distillation_steps`, a few real distillation steps in-process.
- :mod:`kdkit.testing.fixtures`: pytest fixtures; activate them in your ``conftest.py`` with
  ``pytest_plugins = ["kdkit.testing.fixtures"]`` (needs pytest: ``pip install "kdkit[testing]"``).

See docs/writing-plugins.md.
"""

from kdkit.testing.conformance_augmenter import check_augmenter
from kdkit.testing.conformance_base import ConformanceError, ConformanceReport, model_inputs
from kdkit.testing.conformance_loss import check_loss
from kdkit.testing.conformance_provider import check_attribution_provider
from kdkit.testing.models import (
    BINARY_TASK,
    REGRESSION_TASK,
    THREE_CLASS_TASK,
    TINY_CLS_ID,
    TINY_MASK_ID,
    TINY_PAD_ID,
    TINY_SEP_ID,
    TINY_UNK_ID,
    TINY_WORDS,
    perturb_parameters,
    save_tiny_classifier,
    tiny_classifier,
    tiny_config,
    tiny_tokenizer,
    write_tiny_csv,
)
from kdkit.testing.run import TinyRun, run_distillation_steps

__all__ = [
    "BINARY_TASK",
    "REGRESSION_TASK",
    "THREE_CLASS_TASK",
    "TINY_CLS_ID",
    "TINY_MASK_ID",
    "TINY_PAD_ID",
    "TINY_SEP_ID",
    "TINY_UNK_ID",
    "TINY_WORDS",
    "ConformanceError",
    "ConformanceReport",
    "TinyRun",
    "check_attribution_provider",
    "check_augmenter",
    "check_loss",
    "model_inputs",
    "perturb_parameters",
    "run_distillation_steps",
    "save_tiny_classifier",
    "tiny_classifier",
    "tiny_config",
    "tiny_tokenizer",
    "write_tiny_csv",
]
