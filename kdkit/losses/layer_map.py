"""Layer maps: which teacher layer each student layer is matched with in intermediate-layer losses.

Layers are numbered as transformers numbers ``hidden_states``: 0 is the embedding block's output, k (1..L)
the output of transformer layer k. A map gives a teacher layer t(k) for every student layer k = 1..L_s:

- ``uniform``: t(k) = round(k · L_t / L_s), halves rounded up (TinyBERT's, PKD's and MiniLM's "uniform"
  strategy). The top layers are always matched, and for a ``copy:N`` student t(k) is the teacher layer that
  student layer k was copied from. 6 → 3: 2, 4, 6; 6 → 4: 2, 3, 5, 6; 12 → 6: 2, 4, ..., 12.
- an explicit list ``[t(1), ..., t(L_s)]`` of teacher layers (0 allowed where the loss accepts the
  embedding output).
"""

from __future__ import annotations

import math
from typing import Literal

from kdkit.errors import ConfigError

#: what users write: "uniform", or a list of one teacher layer per student layer
LayerMapSpec = Literal["uniform"] | list[int]


def uniform_layer(student_layer: int, student_layers: int, teacher_layers: int) -> int:
    """t(k) = floor(k · L_t / L_s + 1/2): the teacher layer of student layer k (0 maps to 0)."""
    return math.floor(student_layer * teacher_layers / student_layers + 0.5)


def layer_pairs(
    spec: LayerMapSpec,
    student_layers: int,
    teacher_layers: int,
    *,
    allow_embeddings: bool = True,
    option: str = "layers",
) -> list[tuple[int, int]]:
    """[(k, t(k)) for k = 1..L_s]: each student layer with its teacher layer.

    Raises:
        ConfigError: an explicit list of the wrong length, or naming a layer the teacher does not have.
    """
    if spec == "uniform":
        return [(k, uniform_layer(k, student_layers, teacher_layers)) for k in range(1, student_layers + 1)]
    teacher = list(spec)
    if len(teacher) != student_layers:
        raise ConfigError(
            f"{option} lists {len(teacher)} teacher layers for a student with {student_layers}",
            f"give one teacher layer per student layer, e.g. {option}={uniform_map(student_layers, teacher_layers)}",
        )
    lowest = 0 if allow_embeddings else 1
    bad = [t for t in teacher if not lowest <= t <= teacher_layers]
    if bad:
        raise ConfigError(
            f"{option} names teacher layer(s) {bad}, but the teacher has layers {lowest}..{teacher_layers}",
            f"use layers between {lowest} and {teacher_layers}"
            + (" (0 is the embedding output)" if allow_embeddings else ""),
        )
    return list(zip(range(1, student_layers + 1), teacher, strict=True))


def uniform_map(student_layers: int, teacher_layers: int) -> list[int]:
    """The teacher layers of the uniform map, [t(1), ..., t(L_s)]."""
    return [uniform_layer(k, student_layers, teacher_layers) for k in range(1, student_layers + 1)]
