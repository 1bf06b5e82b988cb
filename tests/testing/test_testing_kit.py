"""kdkit.testing: the conformance checks pass kdkit's own components and catch broken ones; the pytest
fixtures plugin; a few distillation steps in-process."""

from __future__ import annotations

import json
import textwrap
import types
from collections.abc import Mapping
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from kdkit.attribution.base import AttributionProvider, capture_embedding_output
from kdkit.losses.base import Batch, DistillationLoss, LossContext, LossNeeds
from kdkit.losses.formulas import task_loss
from kdkit.losses.kd import CrossEntropy, VanillaKD
from kdkit.testing import (
    BINARY_TASK,
    THREE_CLASS_TASK,
    ConformanceError,
    check_attribution_provider,
    check_loss,
    run_distillation_steps,
)
from kdkit.testing.models import ARCHITECTURES  # every tiny family: BERT, ..., ALBERT, ModernBERT

pytest_plugins = ["pytester"]


# -- kdkit's own components pass -------------------------------------------------------------------------


@pytest.mark.parametrize("loss", [CrossEntropy, VanillaKD])
def test_builtin_losses_conform(loss: type[DistillationLoss]) -> None:
    report = check_loss(loss)
    assert report.component == loss.name
    for task in ("tiny", "tiny3", "tiny-regression"):
        assert f"{task}: gradients reach the student" in report.checks
    if loss.needs.teacher:
        assert "tiny: the teacher-signal cache reproduces the live signals" in report.checks
    check_loss(VanillaKD, {"alpha": 1.0, "temperature": 4.0}, tasks=(BINARY_TASK,))


def test_ig_provider_conforms_on_every_architecture() -> None:
    ig = pytest.importorskip("kdkit_adkd.ig")
    report = check_attribution_provider(ig.IntegratedGradients, architectures=ARCHITECTURES)
    for architecture in ARCHITECTURES:
        assert f"{architecture}: batch of 1 equals the padded batch" in report.checks
        assert any(c.startswith(f"{architecture}: differentiable") for c in report.checks)
    check_attribution_provider(ig.IntegratedGradients(ig.IGOptions(steps=3, baseline="pad", batch_size=5)))


def test_adkd_loss_conforms() -> None:
    pytest.importorskip("kdkit_adkd")
    from kdkit_adkd.ig import IntegratedGradients
    from kdkit_adkd.loss import ADKDLoss

    providers = {"ig": IntegratedGradients}
    report = check_loss(ADKDLoss, plugins=providers)
    assert "tiny3: terms ['attr', 'ce', 'kd'] are finite scalars" in report.checks
    check_loss(
        ADKDLoss,
        {"views": "gold", "top_k": 8, "distance": "smooth_l1"},
        plugins=providers,
        provider_options={"ig": {"steps": 2}},
        tasks=(THREE_CLASS_TASK,),
    )


# -- broken providers are caught, with the rule named -------------------------------------------------------


def _ones(inputs: dict[str, Tensor], targets: Tensor) -> Tensor:
    mask = inputs["attention_mask"].float()
    return mask[:, None, :, None].expand(-1, targets.shape[1], -1, 1).clone()


class WrongShape(AttributionProvider):
    name = "wrong_shape"

    def attribute(self, model, inputs, targets, *, create_graph=False, forward=None):  # type: ignore[no-untyped-def]
        return inputs["attention_mask"].float()


class PaddingNotZero(AttributionProvider):
    name = "padding_not_zero"

    def attribute(self, model, inputs, targets, *, create_graph=False, forward=None):  # type: ignore[no-untyped-def]
        return torch.ones(*inputs["attention_mask"].shape[:1], targets.shape[1], inputs["attention_mask"].shape[1], 1)


class Noisy(AttributionProvider):
    name = "noisy"

    def attribute(self, model, inputs, targets, *, create_graph=False, forward=None):  # type: ignore[no-untyped-def]
        return _ones(inputs, targets) * torch.rand(1)


class KeepsGraph(AttributionProvider):
    name = "keeps_graph"

    def attribute(self, model, inputs, targets, *, create_graph=False, forward=None):  # type: ignore[no-untyped-def]
        with capture_embedding_output(model) as captured:
            model(**inputs)
        assert captured.tensor is not None
        values = captured.tensor * inputs["attention_mask"][:, :, None]
        return values[:, None].expand(-1, targets.shape[1], -1, -1)


class DependsOnPadding(AttributionProvider):
    name = "depends_on_padding"

    def attribute(self, model, inputs, targets, *, create_graph=False, forward=None):  # type: ignore[no-untyped-def]
        return _ones(inputs, targets) * inputs["attention_mask"].shape[1]


class MixesViews(AttributionProvider):
    name = "mixes_views"

    def attribute(self, model, inputs, targets, *, create_graph=False, forward=None):  # type: ignore[no-untyped-def]
        return _ones(inputs, targets) * targets.shape[1]


class ClaimsDifferentiable(AttributionProvider):
    name = "claims_differentiable"
    differentiable = True

    def attribute(self, model, inputs, targets, *, create_graph=False, forward=None):  # type: ignore[no-untyped-def]
        return _ones(inputs, targets)


class LeavesAHook(AttributionProvider):
    name = "leaves_a_hook"

    def attribute(self, model, inputs, targets, *, create_graph=False, forward=None):  # type: ignore[no-untyped-def]
        if not getattr(model, "_hooked", False):
            model.classifier.register_forward_hook(lambda _m, _a, output: output * 2)
            model._hooked = True
        return _ones(inputs, targets)


@pytest.mark.parametrize(
    ("provider", "message"),
    [
        (WrongShape, r"expected \(B, V, L, D\)"),
        (PaddingNotZero, "padding positions must be exactly zero"),
        (Noisy, "not deterministic"),
        (KeepsGraph, "without create_graph the result must carry no graph"),
        (DependsOnPadding, "alone \\(batch of 1, no padding\\) differs from the padded batch"),
        (MixesViews, "view 0 alone"),
        (ClaimsDifferentiable, "create_graph=True gave no graph"),
        (LeavesAHook, "outputs changed after attribute"),
    ],
)
def test_broken_providers_fail_with_the_rule_they_break(provider: type[AttributionProvider], message: str) -> None:
    with pytest.raises(ConformanceError, match=message) as caught:
        check_attribution_provider(provider, regression=False)
    assert str(caught.value).startswith(f"{provider.name} [bert]: ")
    assert isinstance(caught.value, AssertionError)


class ClaimsEqualViews(AttributionProvider):
    """Says the two views' maps are equal, but weighs the positions by the class explained."""

    name = "claims_equal_views"

    def binary_views_equal(self) -> bool:
        return True

    def attribute(self, model, inputs, targets, *, create_graph=False, forward=None):  # type: ignore[no-untyped-def]
        mask = inputs["attention_mask"].float()
        positions = torch.arange(mask.shape[1], dtype=torch.float32)
        values = (1.0 + targets[:, :, None].float()) * positions + 1.0  # (B, V, L): class 0 flat, class 1 rising
        return (values * mask[:, None, :])[..., None]


class SaysMaybe(AttributionProvider):
    name = "says_maybe"

    def binary_views_equal(self):  # type: ignore[no-untyped-def]
        return "maybe"

    def attribute(self, model, inputs, targets, *, create_graph=False, forward=None):  # type: ignore[no-untyped-def]
        return _ones(inputs, targets)


def test_binary_views_equal_is_verified_when_a_provider_declares_it() -> None:
    ig = pytest.importorskip("kdkit_adkd.ig")
    report = check_attribution_provider(ig.IntegratedGradients, regression=False)  # steps=1: equal views
    assert "bert, two classes: binary_views_equal() holds (the two views' maps are equal)" in report.checks
    several = check_attribution_provider(ig.IntegratedGradients(ig.IGOptions(steps=2)), regression=False)
    assert not any("binary_views_equal() holds" in check for check in several.checks)
    with pytest.raises(ConformanceError, match=r"binary_views_equal\(\) is True, but the two views' token maps differ"):
        check_attribution_provider(ClaimsEqualViews, regression=False)
    with pytest.raises(ConformanceError, match=r"says_maybe \[class\]: binary_views_equal\(\) must return a bool"):
        check_attribution_provider(SaysMaybe, regression=False)


# -- broken losses are caught ------------------------------------------------------------------------------


class _Loss(DistillationLoss):
    needs = LossNeeds(teacher=False)

    def __call__(
        self, batch: Batch, student_logits: Tensor, teacher_signals: Mapping[str, Tensor], ctx: LossContext
    ) -> dict[str, Tensor]:
        return {"ce": task_loss(self.task, student_logits, batch.labels)}


class PerExample(_Loss):
    name = "per_example"

    def __call__(self, batch, student_logits, teacher_signals, ctx):  # type: ignore[no-untyped-def]
        return {"ce": torch.nn.functional.cross_entropy(student_logits, batch.labels.long(), reduction="none")}


class Constant(_Loss):
    name = "constant"

    def __call__(self, batch, student_logits, teacher_signals, ctx):  # type: ignore[no-untyped-def]
        return {"zero": torch.zeros(())}


class NotANumber(_Loss):
    name = "not_a_number"

    def __call__(self, batch, student_logits, teacher_signals, ctx):  # type: ignore[no-untyped-def]
        return {"ce": student_logits.sum() * float("nan")}


class UndeclaredTokenSignal(_Loss):
    name = "undeclared_token_signal"
    needs = LossNeeds(teacher=True)

    def teacher_signals(self, teacher: nn.Module, batch: Batch, ctx: LossContext) -> dict[str, Tensor]:
        return {"mask": batch.attention_mask.float()}


class UsesTheTeacherInTheStep(_Loss):
    name = "uses_the_teacher"
    needs = LossNeeds(teacher=True)

    def __call__(self, batch, student_logits, teacher_signals, ctx):  # type: ignore[no-untyped-def]
        teacher_logits = ctx.teacher(**batch.inputs).logits
        return {"mse": (student_logits - teacher_logits).pow(2).mean()}


@pytest.mark.parametrize(
    ("loss", "message"),
    [
        (PerExample, r"terms must be scalars \(0-dim\)"),
        (Constant, "no term depends on the student"),
        (NotANumber, "is not a finite floating-point number"),
        (UndeclaredTokenSignal, "must be named in needs.token_signals"),
        (UsesTheTeacherInTheStep, "the loss raised"),
    ],
)
def test_broken_losses_fail_with_the_rule_they_break(loss: type[DistillationLoss], message: str) -> None:
    with pytest.raises(ConformanceError, match=message):
        check_loss(loss, tasks=(BINARY_TASK,))


def test_a_loss_naming_a_missing_provider_fails() -> None:
    class NeedsAProvider(_Loss):
        name = "needs_a_provider"

        def providers_used(self) -> list[str]:
            return ["nowhere"]

    with pytest.raises(ConformanceError, match=r"providers_used\(\) names \['nowhere'\]"):
        check_loss(NeedsAProvider, plugins={}, tasks=(BINARY_TASK,))


# -- the fixtures plugin and the run helper -----------------------------------------------------------------


def test_the_fixtures_plugin_works_in_a_plugin_authors_suite(pytester: pytest.Pytester) -> None:
    pytester.makeconftest('pytest_plugins = ["kdkit.testing.fixtures"]\n')
    pytester.makepyfile(
        my_plugin=textwrap.dedent(
            """
            from kdkit.plugin_api import hookimpl
            from kdkit.losses.kd import CrossEntropy


            class Again(CrossEntropy):
                name = "again"


            @hookimpl
            def kdkit_losses():
                return [Again]
            """
        ),
        test_mine=textwrap.dedent(
            """
            import os

            import my_plugin


            def test_fixtures(kdkit_home, kdkit_tiny_tokenizer, kdkit_tiny_classifier, kdkit_tiny_teacher,
                              kdkit_tiny_csv, kdkit_plugin_manager):
                assert os.environ["KDKIT_HOME"] == str(kdkit_home)
                assert kdkit_tiny_tokenizer.mask_token_id == 4
                model = kdkit_tiny_classifier("distilbert", num_labels=3)
                assert model.config.num_labels == 3 and not model.training
                assert (kdkit_tiny_teacher / "config.json").is_file()
                train, validation = kdkit_tiny_csv
                assert train.read_text().startswith("text,label")
                manager = kdkit_plugin_manager(my_plugin)
                assert {p.name: p.source for p in manager.plugins()}["my_plugin"] == "registered in-process"
                assert "again" in manager.losses
            """
        ),
    )
    result = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_run_distillation_steps_trains_with_an_in_process_plugin(tmp_path: Any) -> None:
    from kdkit.plugin_api import hookimpl

    plugin = types.ModuleType("my_plugin")  # a module built in memory, as a plugin author's would be imported

    class HalfKD(VanillaKD):
        name = "half_kd"

    def kdkit_losses() -> list[type[DistillationLoss]]:
        return [HalfKD]

    plugin.kdkit_losses = hookimpl(kdkit_losses)  # type: ignore[attr-defined]
    result = run_distillation_steps(
        plugin, loss="half_kd", options={"half_kd": {"alpha": 0.7}}, steps=2, directory=tmp_path
    )
    summary = json.loads((result.run_dir / "run.json").read_text())
    assert summary["loss"] == "half_kd" and summary["options"]["half_kd"]["alpha"] == 0.7
    assert summary["train"]["steps"] == 2
    assert [entry["step"] for entry in summary["train_log"]] == [1, 2]
    assert all({"loss_ce", "loss_kd"} <= set(entry) for entry in summary["train_log"])
    assert (tmp_path / "kdkit-home" / "teacher-signals").is_dir()  # the cache stayed in the run's folder
