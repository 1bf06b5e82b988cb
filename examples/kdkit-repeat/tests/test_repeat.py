"""The example augmenter passes kdkit's conformance check and is found through a plugin manager."""

from __future__ import annotations

import random

from kdkit_repeat import augmenter
from kdkit_repeat.augmenter import RepeatWord

from kdkit.plugin_api import PluginManager
from kdkit.testing import check_augmenter


def test_it_conforms() -> None:
    check_augmenter(RepeatWord, {"times": 2})


def test_it_repeats_words_deterministically() -> None:
    repeat = RepeatWord(RepeatWord.Options(times=1), context=None)  # type: ignore[arg-type]
    first = repeat.augment("a good film", 3, random.Random(0))
    assert first == repeat.augment("a good film", 3, random.Random(0))
    assert all(len(text.split()) == 4 and set(text.split()) == {"a", "good", "film"} for text in first)


def test_the_plugin_manager_finds_it() -> None:
    manager = PluginManager(autoload=False, extra_plugins={"repeat": augmenter})
    assert manager.augmenter("repeat") is RepeatWord
