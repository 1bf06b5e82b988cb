"""The ``repeat`` augmenter: copies of a text with random words repeated ("a good film" -> "a good good film").

A third-party augmenter as docs/plugins.md, "kdkit_augmenters", describes it: a subclass of
``kdkit.plugin_api.Augmenter`` returned by the ``kdkit_augmenters`` hook, registered under the ``kdkit`` entry-point
group (pyproject.toml). It imports kdkit.plugin_api alone.
"""

from __future__ import annotations

import random

from pydantic import BaseModel, ConfigDict, Field

from kdkit.plugin_api import Augmenter, hookimpl


class RepeatOptions(BaseModel):
    """Options of the ``repeat`` augmenter (``--set repeat.times=2``)."""

    model_config = ConfigDict(extra="forbid")

    times: int = Field(1, ge=1, le=5, description="how many words are repeated in each copy")


class RepeatWord(Augmenter[RepeatOptions]):
    """Repeat ``times`` random words of the text in each copy; all randomness from the ``rng`` kdkit gives."""

    name = "repeat"
    Options = RepeatOptions
    description = "repeats random words (an example augmenter plugin)"

    def augment(self, text: str, copies: int, rng: random.Random) -> list[str]:
        out = []
        for _ in range(copies):
            words = text.split() or [text]
            for _ in range(self.options.times):
                position = rng.randrange(len(words))
                words.insert(position, words[position])
            out.append(" ".join(words))
        return out


@hookimpl
def kdkit_augmenters() -> list[type[Augmenter]]:
    return [RepeatWord]
