"""``--precision``: what ``auto`` resolves to from the CPU's bf16 units (kdkit.training.precision), and the teacher's
attention in fp32 while its signals are differentiated in bf16 on the CPU."""

from __future__ import annotations

import pytest
import torch

from kdkit.testing import tiny_classifier
from kdkit.training import precision
from kdkit.training.precision import FP32_SDPA, autocast, resolve_precision, teacher_precision


@pytest.mark.parametrize(
    ("features", "expected"),
    [({"amx_bf16": True, "avx512_bf16": True}, "bf16"), ({"avx512_bf16": True}, "bf16"), ({"avx2": True}, "fp32")],
)
def test_auto_on_the_cpu_follows_its_bf16_units(
    monkeypatch: pytest.MonkeyPatch, features: dict[str, bool], expected: str
) -> None:
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: features, raising=False)
    resolved = resolve_precision("auto", "cpu")
    assert resolved.name == expected
    found = [name for name in precision.BF16_CPU_FEATURES if features.get(name)]
    assert resolved.reason == (
        f"auto: the CPU has {' and '.join(found)}"
        if found
        else "auto: the CPU has no bf16 matrix units (AMX-BF16, AVX512-BF16)"
    )


def test_an_asked_precision_is_kept_and_bf16_without_units_says_it_is_emulated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {}, raising=False)
    assert resolve_precision("fp32", "cpu").name == "fp32"
    emulated = resolve_precision("bf16", "cpu")
    assert emulated.name == "bf16" and "emulated" in emulated.reason


def test_autocast_runs_matrix_products_in_bf16_only_when_asked() -> None:
    a = torch.randn(4, 4)
    with autocast("bf16", "cpu"):
        assert (a @ a).dtype == torch.bfloat16
    with autocast("fp32", "cpu"):
        assert (a @ a).dtype == torch.float32


@pytest.mark.parametrize("differentiated", [True, False])
def test_a_differentiated_sdpa_teacher_runs_fp32_attention_in_bf16_and_gets_sdpa_back(differentiated: bool) -> None:
    teacher = tiny_classifier("bert", num_labels=2, seed=0, attn_implementation="sdpa").eval()
    ids = torch.tensor([[2, 10, 11, 12, 3]])
    seen: list[str] = []
    with teacher_precision(teacher, "bf16", "cpu", differentiated=differentiated):
        seen.append(teacher.config._attn_implementation)
        logits = teacher(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    assert seen == [FP32_SDPA if differentiated else "sdpa"]
    assert teacher.config._attn_implementation == "sdpa"  # restored
    reference = teacher(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    assert torch.allclose(logits.float(), reference, atol=0.05)  # bf16 elsewhere: close, not equal
    with pytest.raises(RuntimeError), teacher_precision(teacher, "bf16", "cpu", differentiated=True):
        raise RuntimeError("a failing pass")
    assert teacher.config._attn_implementation == "sdpa"  # restored after an error too
    with teacher_precision(teacher, "fp32", "cpu", differentiated=True):
        assert teacher.config._attn_implementation == "sdpa"  # fp32: nothing to swap
