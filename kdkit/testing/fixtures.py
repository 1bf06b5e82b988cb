"""pytest fixtures for testing kdkit plugins. Activate them in your suite's ``conftest.py``::

    pytest_plugins = ["kdkit.testing.fixtures"]

Fixtures (all names start with ``kdkit_``, so they do not clash with yours):

- ``kdkit_home`` (autouse): an empty ``KDKIT_HOME`` for the session and a fresh process-wide plugin
  manager around each test; the Hugging Face libraries are set offline, so a missed download fails fast;
- ``kdkit_tiny_tokenizer``: the tiny WordPiece tokenizer (session);
- ``kdkit_tiny_classifier``: a factory of tiny random classifiers (``bert``, ``roberta``, ...);
- ``kdkit_tiny_teacher``: a saved tiny two-class BERT teacher directory (session);
- ``kdkit_tiny_csv``: ``(train.csv, validation.csv)`` with ``text,label`` columns (session);
- ``kdkit_plugin_manager``: a factory of plugin managers with your plugin registered in-process.

Needs pytest (``pip install "kdkit[testing]"``); the rest of :mod:`kdkit.testing` does not.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from kdkit.plugins.manager import PluginManager, set_plugin_manager
from kdkit.testing.models import (
    BINARY_TASK,
    perturb_parameters,
    save_tiny_classifier,
    tiny_classifier,
    tiny_tokenizer,
    write_tiny_csv,
)

for _variable in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_variable, "1")


@pytest.fixture(autouse=True)
def kdkit_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """``KDKIT_HOME`` in the session's temporary folder; the process-wide plugin manager is reset before and
    after each test (so a test's ``--disable-plugin`` or environment variables do not leak)."""
    home = tmp_path_factory.getbasetemp() / "kdkit-home"
    monkeypatch.setenv("KDKIT_HOME", str(home))
    set_plugin_manager(None)
    yield home
    set_plugin_manager(None)


@pytest.fixture(scope="session")
def kdkit_tiny_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> PreTrainedTokenizerBase:
    """The tiny BERT WordPiece tokenizer ([PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4)."""
    return tiny_tokenizer(tmp_path_factory.mktemp("kdkit-tokenizer"))


@pytest.fixture
def kdkit_tiny_classifier() -> Callable[..., PreTrainedModel]:
    """``make(architecture="bert", num_labels=2, *, seed=0, perturb=True, **config)``: a tiny random
    classifier in eval mode; ``perturb`` adds noise to every parameter so that outputs depend on every
    token; ``attn_implementation="eager"`` for a student that needs a double backward."""

    def make(
        architecture: str = "bert", num_labels: int = 2, *, seed: int = 0, perturb: bool = True, **config: Any
    ) -> PreTrainedModel:
        model = tiny_classifier(architecture, num_labels=num_labels, seed=seed, **config)
        return (perturb_parameters(model, seed) if perturb else model).eval()

    return make


@pytest.fixture(scope="session")
def kdkit_tiny_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny 2-layer BERT teacher for :data:`kdkit.testing.BINARY_TASK` (labels neg, pos): a model
    directory for ``kdkit distill --teacher`` (``kdkit_tiny_csv`` is its data)."""
    return save_tiny_classifier(tmp_path_factory.mktemp("kdkit-teacher") / "teacher", BINARY_TASK, num_layers=2)


@pytest.fixture(scope="session")
def kdkit_tiny_csv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(train.csv, validation.csv): 64 and 16 rows of ``text,label`` with labels pos/neg."""
    directory = tmp_path_factory.mktemp("kdkit-data")
    return (
        write_tiny_csv(directory / "train.csv", 64, seed=1),
        write_tiny_csv(directory / "validation.csv", 16, seed=2),
    )


@pytest.fixture
def kdkit_plugin_manager() -> Callable[..., PluginManager]:
    """``make(*plugins, enable=(), autoload=False)``: a plugin manager with the built-in plugin, the given
    modules registered in-process (under their ``__name__``) and the entry points named in ``enable``.
    Fails the test if a plugin could not be loaded."""

    def make(*plugins: Any, enable: Sequence[str] = (), autoload: bool = False) -> PluginManager:
        manager = PluginManager(
            autoload=autoload,
            enable=list(enable),
            extra_plugins={str(getattr(p, "__name__", type(p).__name__)): p for p in plugins},
        )
        if manager.failures:
            pytest.fail("; ".join(f"{f.name} ({f.source}): {f.error}" for f in manager.failures))
        return manager

    return make
