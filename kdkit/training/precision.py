"""The numeric precision of a run: what ``--precision auto`` resolves to on this machine and why, and the autocast
context that applies it outside the Trainer's own step (the teacher-signal pass, the final evaluation).

``auto`` resolves to bf16 on a CUDA device that supports it and on a CPU with bf16 matrix units (Intel AMX-BF16 or
AVX512-BF16: ``torch.cpu.get_capabilities()``), else to fp32. bf16 is autocast (mixed precision): matrix products
run in bf16, reductions, norms and the loss in fp32, and the master weights and AdamW's state stay fp32
(docs/benchmarks.md, "bf16 on the CPU", measures the speed and the dev scores that justify the choice).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

#: the attention kernel of a teacher whose signals are differentiated in bf16 on the CPU (:func:`teacher_precision`)
FP32_SDPA = "kdkit_sdpa_fp32"
#: the CPU features that make bf16 matrix products faster than fp32 ones (without them bf16 is emulated: slower)
BF16_CPU_FEATURES = ("amx_bf16", "avx512_bf16")
PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class ResolvedPrecision:
    """The precision a run uses (``fp32``, ``bf16`` or ``fp16``) and the reason, as recorded in run.json."""

    name: str
    reason: str


def cpu_bf16_features() -> list[str]:
    """This CPU's bf16 matrix units among :data:`BF16_CPU_FEATURES` (empty when torch cannot tell)."""
    capabilities = getattr(torch.cpu, "get_capabilities", None)
    try:
        found: dict[str, Any] = capabilities() if capabilities is not None else {}
    except (RuntimeError, OSError):  # pragma: no cover - a torch build without the probe
        found = {}
    return [name for name in BF16_CPU_FEATURES if found.get(name)]


def resolve_precision(asked: str, device: str) -> ResolvedPrecision:
    """``asked`` (``auto`` or a precision) on ``device`` (``cpu`` or ``cuda``): the precision and its reason."""
    if asked != "auto":
        if asked == "bf16" and device == "cpu" and not cpu_bf16_features():
            return ResolvedPrecision(asked, "asked for (this CPU has no bf16 units: emulated, slower than fp32)")
        return ResolvedPrecision(asked, "asked for")
    if device == "cuda":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return ResolvedPrecision("bf16", "auto: the GPU supports bf16")
        return ResolvedPrecision("fp32", "auto: the GPU has no bf16")
    features = cpu_bf16_features()
    if features:
        return ResolvedPrecision("bf16", f"auto: the CPU has {' and '.join(features)}")
    return ResolvedPrecision("fp32", "auto: the CPU has no bf16 matrix units (AMX-BF16, AVX512-BF16)")


def autocast(precision: str, device: str | torch.device) -> AbstractContextManager[Any]:
    """Mixed precision for code that runs outside the Trainer's step (which accelerate autocasts itself):
    ``torch.autocast`` in bf16 or fp16, nothing in fp32."""
    device_type = torch.device(device).type
    if precision == "bf16":
        return torch.autocast(device_type, dtype=torch.bfloat16)
    if precision == "fp16":
        return torch.autocast(device_type, dtype=torch.float16)
    return nullcontext()


def _sdpa_in_fp32(
    module: nn.Module, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None, **kwargs: Any
) -> Any:
    """transformers' SDPA attention with autocast off and its inputs in fp32 (the rest of the model stays bf16)."""
    with torch.autocast(query.device.type, enabled=False):
        if mask is not None and mask.is_floating_point():
            mask = mask.float()
        return sdpa_attention_forward(module, query.float(), key.float(), value.float(), mask, **kwargs)


AttentionInterface.register(FP32_SDPA, _sdpa_in_fp32)


@contextmanager
def teacher_precision(
    teacher: nn.Module | None, precision: str, device: str | torch.device, *, differentiated: bool
) -> Iterator[None]:
    """:func:`autocast` for the teacher's signals. When they are ``differentiated`` (attribution maps: gradients
    through the frozen teacher) in bf16 on the CPU and the teacher runs SDPA attention, its attention runs in fp32
    meanwhile: torch's CPU flash-attention backward is about 5x slower in bf16 than in fp32, which made AD-KD's
    teacher maps barely faster in bf16 (1.11x; 1.86x with this, docs/benchmarks.md)."""
    swap = (
        differentiated
        and precision == "bf16"
        and torch.device(device).type == "cpu"
        and teacher is not None
        and getattr(getattr(teacher, "config", None), "_attn_implementation", None) == "sdpa"
    )
    with autocast(precision, device):
        if not swap:
            yield
            return
        assert teacher is not None
        teacher.set_attn_implementation(FP32_SDPA)  # type: ignore[operator]
        try:
            yield
        finally:
            teacher.set_attn_implementation("sdpa")  # type: ignore[operator]
