"""Layer maps of intermediate-layer losses, including uneven depths (6 -> 3, 6 -> 4)."""

from __future__ import annotations

import pytest

from kdkit.errors import ConfigError
from kdkit.losses.layer_map import layer_pairs, uniform_layer, uniform_map
from kdkit.models.students import evenly_spaced_layers


@pytest.mark.parametrize(
    ("student", "teacher", "expected"),
    [
        (3, 6, [2, 4, 6]),
        (4, 6, [2, 3, 5, 6]),  # 1.5 -> 2 and 4.5 -> 5: halves round up, not to even
        (6, 12, [2, 4, 6, 8, 10, 12]),
        (1, 6, [6]),
        (6, 6, [1, 2, 3, 4, 5, 6]),
        (4, 2, [1, 1, 2, 2]),  # a deeper student: layers share a teacher layer
    ],
)
def test_uniform_map(student: int, teacher: int, expected: list[int]):
    assert uniform_map(student, teacher) == expected
    assert layer_pairs("uniform", student, teacher) == list(zip(range(1, student + 1), expected))


@pytest.mark.parametrize(("student", "teacher"), [(3, 6), (4, 6), (2, 6), (5, 12)])
def test_uniform_map_matches_the_layers_copy_n_students_are_made_of(student: int, teacher: int):
    """Student layer k of copy:N was copied from teacher layer t(k) (0-based ids there, 1-based here)."""
    assert uniform_map(student, teacher) == [i + 1 for i in evenly_spaced_layers(teacher, student)]


def test_uniform_layer_of_the_embeddings_is_the_embeddings():
    assert uniform_layer(0, 3, 6) == 0


def test_explicit_lists():
    assert layer_pairs([1, 3, 6], 3, 6) == [(1, 1), (2, 3), (3, 6)]
    assert layer_pairs([0, 2, 5, 6], 4, 6) == [(1, 0), (2, 2), (3, 5), (4, 6)]


def test_explicit_lists_are_checked():
    with pytest.raises(ConfigError, match=r"hidden.layers lists 2 teacher layers for a student with 3.*\[2, 4, 6\]"):
        layer_pairs([2, 4], 3, 6, option="hidden.layers")
    with pytest.raises(ConfigError, match=r"names teacher layer\(s\) \[7\], but the teacher has layers 0..6"):
        layer_pairs([2, 4, 7], 3, 6)
    with pytest.raises(ConfigError, match=r"\[0\], but the teacher has layers 1..6"):
        layer_pairs([0, 4, 6], 3, 6, allow_embeddings=False)
