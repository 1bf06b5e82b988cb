"""The conformance check of augmenters (:class:`~kdkit.data.augmentation.Augmenter`): :func:`check_augmenter`."""

from __future__ import annotations

import random
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from kdkit.data.augmentation import AugmentContext, Augmenter
from kdkit.testing.conformance_base import ConformanceReport, fail
from kdkit.testing.models import TINY_WORDS, tiny_classifier, tiny_tokenizer

#: texts of the tiny vocabulary the check augments: one word, a few, many
SAMPLE_TEXTS: tuple[str, ...] = (
    TINY_WORDS[0],
    " ".join(TINY_WORDS[1:5]),
    " ".join(TINY_WORDS[: min(len(TINY_WORDS), 24)]),
)


def _context(augmenter_cls: type[Augmenter[Any]], directory: Path) -> AugmentContext:
    """A tiny BERT's tokenizer and (when the augmenter asks) its input embeddings."""
    tokenizer = tiny_tokenizer(directory)
    embeddings = None
    if augmenter_cls.needs_embeddings:
        model: Any = tiny_classifier("bert", vocab_size=len(tokenizer))
        embeddings = model.get_input_embeddings().weight.detach().float()
    return AugmentContext(tokenizer=tokenizer, embeddings=embeddings)


def _check_class(augmenter_cls: Any) -> str:
    name = getattr(augmenter_cls, "name", None)
    if not (isinstance(augmenter_cls, type) and issubclass(augmenter_cls, Augmenter)):
        raise fail(str(augmenter_cls), "class", "an augmenter must subclass kdkit.plugin_api.Augmenter")
    if not isinstance(name, str) or not name:
        raise fail(augmenter_cls.__name__, "class", "it has no 'name'")
    if not (isinstance(augmenter_cls.Options, type) and issubclass(augmenter_cls.Options, BaseModel)):
        raise fail(name, "class", "'Options' must be a pydantic model class")
    if not isinstance(augmenter_cls.description, str) or not isinstance(augmenter_cls.needs_embeddings, bool):
        raise fail(name, "class", "'description' must be a str and 'needs_embeddings' a bool")
    return name


def check_augmenter(
    augmenter_cls: type[Augmenter[Any]],
    options: Mapping[str, Any] | None = None,
    *,
    texts: Sequence[str] = SAMPLE_TEXTS,
    copies: Sequence[int] = (1, 3),
) -> ConformanceReport:
    """Run an augmenter as kdkit does and check its rules: for each text and number of copies it returns a list of
    exactly that many non-empty strings; the same ``random.Random`` state gives the same texts (kdkit seeds one per
    text from the run's seed); it draws nothing from the global ``random`` state; it changes some text of several
    words. Raises :class:`~kdkit.testing.ConformanceError` naming the broken rule."""
    name = _check_class(augmenter_cls)
    report = ConformanceReport(name)
    report.passed("class attributes: name, Options, description, needs_embeddings")
    with tempfile.TemporaryDirectory() as directory:
        instance = augmenter_cls(augmenter_cls.Options(**dict(options or {})), _context(augmenter_cls, Path(directory)))
        changed = False
        for text in texts:
            for count in copies:
                where = f"{count} copies of {text[:30]!r}"
                state = random.getstate()
                produced = instance.augment(text, count, random.Random(7))
                if random.getstate() != state:
                    raise fail(name, where, "it drew from the global random state: use the rng it is given")
                if not isinstance(produced, list) or len(produced) != count:
                    raise fail(name, where, f"returned {produced!r}, not a list of {count} texts")
                if not all(isinstance(new, str) and new.strip() for new in produced):
                    raise fail(name, where, f"returned an empty or non-string text: {produced!r}")
                if instance.augment(text, count, random.Random(7)) != produced:
                    raise fail(name, where, "the same rng state gave other texts: it must be deterministic")
                changed = changed or (len(text.split()) > 1 and any(new != text for new in produced))
        if not changed:
            raise fail(name, "texts", "no text of several words was changed")
    report.passed(f"{len(texts)} texts x copies {tuple(copies)}: lists of non-empty texts, deterministic, own rng")
    return report
