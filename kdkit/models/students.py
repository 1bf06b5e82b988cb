"""Students: ``copy:N`` built from the teacher's own layers, or a model id/path with a head for the task.

``copy:N`` builds an N-layer student from the teacher: same configuration with N layers, the teacher's
embeddings, pooler and classifier head, and N of its layers at evenly spaced depths
(layer ``round_half_up((i + 1) * L / N) - 1`` for i = 0..N-1, so the top layer is always kept; 6 -> 3 takes
layers 1, 3, 5). Per-layer settings follow the copied layers (ModernBERT's ``layer_types``: global or
sliding-window attention); ModernBERT's first layer has no attention norm, so a copied layer that becomes the
student's first runs without its own; ALBERT (one set of weights shared by all layers) is refused. Anything else
is a hub id or a local path of a model sharing the teacher's vocabulary.

The model families kdkit is tested on, and what ``copy:N`` does for each: docs/architecture.md.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

from kdkit.config import StudentSpec
from kdkit.data.tasks import TaskSpec
from kdkit.errors import ModelError
from kdkit.models.checks import check_model_path, load_failure
from kdkit.models.layers import layer_list
from kdkit.models.loading import load_base_for_task, load_classifier, load_config


def shares_layers(config: Any) -> bool:
    """True for models whose layers share weights (ALBERT: ``num_hidden_groups`` < ``num_hidden_layers``)."""
    groups = getattr(config, "num_hidden_groups", None)
    return isinstance(groups, int) and groups < int(getattr(config, "num_hidden_layers", 0) or 0)


def evenly_spaced_layers(num_teacher_layers: int, num_student_layers: int) -> list[int]:
    """Teacher layer ids for a copy:N student: ``floor((i + 1) * L / N + 0.5) - 1``, i = 0..N-1."""
    return [math.floor((i + 1) * num_teacher_layers / num_student_layers + 0.5) - 1 for i in range(num_student_layers)]


def _student_config(teacher: PreTrainedModel, chosen: list[int], attn_implementation: str | None) -> Any:
    """The teacher's configuration with ``len(chosen)`` layers; per-layer settings (``layer_types``: ModernBERT's
    global or sliding-window attention, with its own rotary base) follow the copied layers."""
    config = teacher.config.__class__.from_dict(teacher.config.to_dict())
    layer_types = getattr(teacher.config, "layer_types", None)
    config.num_hidden_layers = len(chosen)
    if isinstance(layer_types, list) and len(layer_types) == teacher.config.num_hidden_layers:
        config.layer_types = [layer_types[i] for i in chosen]
    if attn_implementation is not None:
        config._attn_implementation = attn_implementation
    return config


def _copied_state(teacher: PreTrainedModel, prefix: str, chosen: list[int]) -> dict[str, torch.Tensor]:
    """The teacher's state dict with layer ``chosen[i]`` renamed to layer i and the other layers left out."""
    state = {}
    pattern = re.compile(rf"^{re.escape(prefix)}\.(\d+)\.(.*)$")
    for key, value in teacher.state_dict().items():
        match = pattern.match(key)
        if match is None:
            state[key] = value
        elif int(match.group(1)) in chosen:
            state[f"{prefix}.{chosen.index(int(match.group(1)))}.{match.group(2)}"] = value
    return state


def _identities_in_student(student: nn.Module, keys: list[str]) -> list[str]:
    """Of ``keys``, those whose module is an ``nn.Identity`` in ``student`` by construction: ModernBERT's first
    layer has no attention norm (its input is the embedding norm's output), so when another teacher layer becomes
    the student's first, that layer's ``attn_norm`` weight has no place (the student's first layer runs without)."""
    modules = dict(student.named_modules())
    return [key for key in keys if isinstance(modules.get(key.rsplit(".", 1)[0]), nn.Identity)]


def copy_student(
    teacher: PreTrainedModel, num_layers: int, *, attn_implementation: str | None = None
) -> PreTrainedModel:
    """An N-layer student initialised from the teacher (see the module docstring)."""
    if shares_layers(teacher.config):
        raise ModelError(
            f"copy:{num_layers} cannot copy layers of {type(teacher).__name__}: its "
            f"{teacher.config.num_hidden_layers} layers share one set of weights",
            "use --student with a model of the teacher's vocabulary (a smaller model of the same family)",
        )
    prefix, layers = layer_list(teacher)
    if not 1 <= num_layers <= len(layers):
        raise ModelError(
            f"copy:{num_layers} needs 1 to {len(layers)} layers (the teacher has {len(layers)})",
            f"use copy:N with N <= {len(layers)}",
        )
    chosen = evenly_spaced_layers(len(layers), num_layers)
    student = type(teacher)(_student_config(teacher, chosen, attn_implementation))
    state = _copied_state(teacher, prefix, chosen)
    missing, unexpected = student.load_state_dict(state, strict=False)
    dropped = _identities_in_student(student, [key for key in unexpected if key.startswith(f"{prefix}.0.")])
    unexpected = [key for key in unexpected if key not in dropped]
    if unexpected or [m for m in missing if "position_ids" not in m]:
        raise ModelError(
            f"copying teacher weights into the student failed (missing {missing[:3]}, unexpected {unexpected[:3]})",
            "use --student with a model path instead",
        )
    student.config.kdkit_copied_layers = chosen
    return student


def build_student(
    spec: StudentSpec | str,
    teacher: PreTrainedModel | None,
    task: TaskSpec,
    *,
    attn_implementation: str | None = None,
    seed: int = 42,
) -> PreTrainedModel:
    """The student for ``spec`` (``copy:N`` of ``teacher``, or a model id/path with a head for ``task``, its
    initial weights set by ``seed``)."""
    spec = StudentSpec.parse(spec)
    if spec.layers is not None:
        if teacher is None:
            raise ModelError(f"student {spec} needs a teacher to copy", "pass --teacher")
        return copy_student(teacher, spec.layers, attn_implementation=attn_implementation)
    name = str(spec.model)
    check_model_path(name, "student")
    try:
        config = load_config(name)
    except Exception as exc:
        known = load_failure(name, exc, "student")
        if known is not None:
            raise known from None
        raise ModelError(
            f"cannot load the student '{name}'", "use copy:N, a saved model directory or a valid hub id"
        ) from None
    fine_tuned_head = (config.architectures or [""])[0].endswith("ForSequenceClassification")
    if fine_tuned_head and Path(name).exists():
        return load_classifier(name, task, attn_implementation=attn_implementation, role="student")
    return load_base_for_task(name, task, attn_implementation=attn_implementation, seed=seed)
