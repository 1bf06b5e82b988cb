"""Augmentation (issue 27): an augmenter turns a training text into N new texts, which the teacher labels.

A plugin contributes augmenters through the hook :func:`kdkit.hookspecs.kdkit_augmenters` (docs/plugins.md,
"kdkit_augmenters"); ``kdkit distill --augment NAME --augment-copies N`` adds N copies of each labelled training
example, made by the augmenter ``NAME`` (its options: ``--set NAME.OPTION=VALUE``), without labels: the teacher's
signals are their targets, as for transfer texts (:mod:`kdkit.data.transfer`). The built-in augmenters are in
:mod:`kdkit.data.augmenters`.

Determinism: every text gets its own :class:`random.Random`, seeded by the run's ``--seed``, the example's
position and the text field (:func:`example_rng`), so a run's augmented set is the same each time, whatever the
order the texts are augmented in.
"""

from __future__ import annotations

import abc
import random
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from datasets import Dataset
from pydantic import BaseModel, ConfigDict
from torch import Tensor

from kdkit.data.tasks import TaskSpec
from kdkit.errors import PluginError


class NoAugmenterOptions(BaseModel):
    """The options of an augmenter that has none."""

    model_config = ConfigDict(extra="forbid")


OptionsT = TypeVar("OptionsT", bound=BaseModel)


@dataclass(frozen=True)
class AugmentContext:
    """What an augmenter may use besides its options.

    Attributes:
        tokenizer: the teacher's tokenizer (its vocabulary, its mask token), or ``None``.
        embeddings: the teacher's input-embedding matrix (V, D), float32 on the CPU, when the augmenter declares
            ``needs_embeddings`` (else ``None``).
    """

    tokenizer: Any = None
    embeddings: Tensor | None = field(default=None, repr=False)


class Augmenter(abc.ABC, Generic[OptionsT]):
    """Base class of augmenters contributed through :func:`kdkit.hookspecs.kdkit_augmenters`.

    Built once per run with its validated options and the :class:`AugmentContext`:
    ``Augmenter(Augmenter.Options(...), context)``. Subclasses implement :meth:`augment`.
    """

    #: the name users select (``--augment NAME``) and the ``--set NAME.option`` prefix
    name: ClassVar[str]
    #: pydantic model of the options
    Options: ClassVar[type[BaseModel]] = NoAugmenterOptions
    #: one line for ``kdkit plugins``
    description: ClassVar[str] = ""
    #: the augmenter reads the teacher's input embeddings (``context.embeddings``)
    needs_embeddings: ClassVar[bool] = False

    def __init__(self, options: OptionsT, context: AugmentContext) -> None:
        self.options: OptionsT = options
        self.context = context

    @abc.abstractmethod
    def augment(self, text: str, copies: int, rng: random.Random) -> list[str]:
        """``copies`` new texts made from ``text`` (each non-empty), drawing all randomness from ``rng`` (so the
        same ``rng`` state gives the same texts)."""


def example_rng(seed: int, position: int, text_field: str) -> random.Random:
    """The random stream of one text: seeded by the run's seed, the example's position and its text field."""
    return random.Random(f"kdkit-augment:{seed}:{position}:{text_field}")


def _checked(augmenter: Augmenter[Any], produced: Any, copies: int) -> list[str]:
    if (
        not isinstance(produced, list)
        or len(produced) != copies
        or not all(isinstance(text, str) and text.strip() for text in produced)
    ):
        raise PluginError(
            f"augmenter '{augmenter.name}' returned {type(produced).__name__} "
            f"{str(produced)[:80]} instead of {copies} non-empty texts",
            "fix the augmenter (kdkit.testing.check_augmenter tests one)",
        )
    return produced


def augment_split(split: Dataset, task: TaskSpec, augmenter: Augmenter[Any], copies: int, seed: int) -> Dataset:
    """``copies`` augmented copies of each example of ``split`` (its task's text fields only, no labels): example
    i's copies follow each other; each text field is augmented on its own."""
    columns: dict[str, list[str]] = {name: [] for name in task.text_fields}
    for name in task.text_fields:
        for position, text in enumerate(split[name]):
            produced = augmenter.augment(text, copies, example_rng(seed, position, name))
            columns[name] += _checked(augmenter, produced, copies)
    return Dataset.from_dict(columns)
