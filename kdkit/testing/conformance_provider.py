"""The conformance check of attribution providers: :func:`check_attribution_provider`.

It runs a provider on tiny random classifiers the way kdkit's losses and teacher-signal cache do, and raises
:class:`~kdkit.testing.conformance_base.ConformanceError` naming the rule of :class:`kdkit.attribution.
AttributionProvider` that was broken (docs/plugins.md).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from pydantic import BaseModel
from torch import Tensor, nn

from kdkit.attribution.base import AttributionProvider, EmbeddingForward, capture_embedding_output, token_maps
from kdkit.testing.conformance_base import (
    BATCH_LENGTHS,
    ConformanceError,
    ConformanceReport,
    difference,
    fail,
    longest_length,
    model_inputs,
)
from kdkit.testing.models import perturb_parameters, tiny_classifier


def check_attribution_provider(
    provider: AttributionProvider | type[AttributionProvider],
    *,
    architectures: Sequence[str] = ("bert",),
    num_labels: int = 3,
    regression: bool = True,
    max_length: int | None = None,
    atol: float = 1e-5,
    rtol: float = 1e-4,
) -> ConformanceReport:
    """Check an attribution provider against the interface of :class:`kdkit.attribution.AttributionProvider`.

    On tiny random classifiers of each architecture (``bert``, ``roberta``, ``distilbert``, ``electra``,
    ``deberta-v2``), with a batch of B = 4 right-padded examples and targets (B, V) naming every class
    (V = ``num_labels``), it checks that ``attribute``:

    - returns a floating (B, V, L, D) tensor, D the embedding output's size or 1, finite and not all zero;
    - is exactly zero at padding positions;
    - carries no graph without ``create_graph`` and accumulates no ``.grad`` on the model's parameters;
    - is deterministic (a repeat gives the same values);
    - computes each view independently (targets[:, v:v+1] alone gives view v);
    - gives each example the same values alone (batch of 1, no padding) as inside the padded batch;
    - handles a sequence of the model's maximum length;
    - works on a frozen model under ``torch.no_grad()`` (how kdkit computes teacher signals);
    - gives the same values when handed the step's ``forward`` (an :class:`EmbeddingForward`);
    - when ``differentiable``: with ``create_graph=True`` (with and without ``forward``) the result has
      nonzero, finite gradients w.r.t. the model's parameters (AD-KD's student side);
    - leaves the model as it was (mode, ``requires_grad``, no leftover hooks: same logits);
    - when ``binary_views_equal()`` says so: on a two-class model the two views' token maps are equal;
    - with ``regression``: works on a one-output model (V = 1, targets ignored).

    Args:
        provider: the provider, or its class (built with default options).
        architectures: tiny model families to run on.
        num_labels: classes of the classification models (V = num_labels views).
        regression: also check a one-output (regression) model.
        max_length: the longest sequence to try (default: the model's position embeddings).
        atol, rtol: tolerances of the comparisons (atol is scaled by the largest |value|, at least 1).

    Raises:
        AssertionError (:class:`ConformanceError`): the first rule that does not hold.
    """
    instance = provider() if isinstance(provider, type) else provider
    report = _check_provider_class(instance)
    for architecture in architectures:
        _check_provider_on(instance, architecture, num_labels, max_length, atol, rtol, report)
        _check_binary_views(instance, architecture, atol, report)
        if regression:
            _check_provider_regression(instance, architecture, atol, rtol, report)
    return report


def _check_provider_class(instance: object) -> ConformanceReport:
    """The class attributes and the declared methods that take no model."""
    name = str(getattr(instance, "name", type(instance).__name__))
    report = ConformanceReport(name)
    if not isinstance(instance, AttributionProvider):
        raise fail(name, "class", f"{type(instance).__name__} is not an AttributionProvider subclass")
    if not isinstance(getattr(instance, "name", None), str) or not instance.name:
        raise fail(name, "class", "set the class attribute 'name' to a non-empty string")
    if not (isinstance(instance.Options, type) and issubclass(instance.Options, BaseModel)):
        raise fail(name, "class", "'Options' must be a pydantic BaseModel subclass")
    if not isinstance(instance.cache_key(), str):
        raise fail(name, "class", "cache_key() must return a str")
    if not isinstance(instance.binary_views_equal(), bool):
        raise fail(name, "class", "binary_views_equal() must return a bool")
    report.passed("class attributes: name, Options, differentiable, cache_key(), binary_views_equal()")
    return report


def _rotating_targets(batch: int, classes: int) -> Tensor:
    """(B, V = classes): each row lists every class, starting from a different one."""
    return torch.stack([torch.roll(torch.arange(classes), -b) for b in range(batch)])


@contextmanager
def _frozen(model: nn.Module) -> Iterator[None]:
    flags = [p.requires_grad for p in model.parameters()]
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, flag in zip(model.parameters(), flags, strict=True):
            parameter.requires_grad_(flag)


def _embedding_forward(model: nn.Module, inputs: dict[str, Tensor]) -> EmbeddingForward:
    """The forward pass the trainer hands a loss (``ctx.student_forward``): embeddings in the graph."""
    with torch.enable_grad(), capture_embedding_output(model) as captured:
        logits = model(**inputs).logits
    assert captured.tensor is not None
    return EmbeddingForward(captured.tensor, logits)


def _tiny_model(provider: AttributionProvider, architecture: str, num_labels: int) -> nn.Module:
    eager = "eager" if provider.differentiable else None  # CPU SDPA kernels have no double backward
    return perturb_parameters(tiny_classifier(architecture, num_labels=num_labels, attn_implementation=eager)).eval()


@dataclass
class _ProviderRun:
    """A provider on one tiny model with the test batch, and the tolerances of the comparisons."""

    provider: AttributionProvider
    model: nn.Module
    where: str
    inputs: dict[str, Tensor]
    targets: Tensor
    atol: float
    rtol: float

    def fail(self, message: str) -> ConformanceError:
        return fail(self.provider.name, self.where, message)

    def differs(self, actual: Tensor, expected: Tensor) -> str | None:
        return difference(actual, expected, atol=self.atol, rtol=self.rtol)

    def attribute(
        self,
        inputs: dict[str, Tensor] | None = None,
        targets: Tensor | None = None,
        *,
        create_graph: bool = False,
        forward: EmbeddingForward | None = None,
    ) -> Tensor:
        """``attribute`` on ``inputs`` and ``targets`` (default: the test batch and its targets)."""
        inputs = self.inputs if inputs is None else inputs
        targets = self.targets if targets is None else targets
        try:
            out = self.provider.attribute(self.model, inputs, targets, create_graph=create_graph, forward=forward)
        except Exception as exc:
            raise self.fail(f"attribute() raised {type(exc).__name__}: {exc}") from exc
        if not isinstance(out, Tensor):
            raise self.fail(f"attribute() returned {type(out).__name__}, not a Tensor")
        return out


def _check_provider_on(
    provider: AttributionProvider,
    architecture: str,
    num_labels: int,
    max_length: int | None,
    atol: float,
    rtol: float,
    report: ConformanceReport,
) -> None:
    model = _tiny_model(provider, architecture, num_labels)
    inputs = model_inputs(model, BATCH_LENGTHS)
    targets = _rotating_targets(inputs["attention_mask"].shape[0], num_labels)
    run = _ProviderRun(provider, model, architecture, inputs, targets, atol, rtol)
    with torch.no_grad():
        reference_logits = model(**inputs).logits.clone()
    flags = [p.requires_grad for p in model.parameters()]
    result = _check_result(run, report)
    _check_repeatable(run, result, report)
    _check_longest(run, max_length or longest_length(model), num_labels, report)
    _check_teacher_and_forward(run, result, report)
    if provider.differentiable:
        _check_differentiable(run, result, report)
    if model.training:
        raise run.fail("attribute() left the model in training mode")
    if [p.requires_grad for p in model.parameters()] != flags:
        raise run.fail("attribute() changed requires_grad of the model's parameters")
    with torch.no_grad():
        logits = model(**inputs).logits
    if difference(logits, reference_logits, atol=1e-6, rtol=1e-6):
        raise run.fail("the model's outputs changed after attribute() (a hook left behind?)")
    report.passed(f"{run.where}: model left unchanged")


def _check_result(run: _ProviderRun, report: ConformanceReport) -> Tensor:
    """The attributions of the test batch: shape, dtype, finite, padding zero, no graph, no ``.grad``."""
    mask = run.inputs["attention_mask"]
    batch, length = mask.shape
    embedding_size = int(_embedding_forward(run.model, run.inputs).embeddings.shape[-1])
    result = run.attribute()
    views = int(run.targets.shape[1])
    if result.dim() != 4 or tuple(result.shape[:3]) != (batch, views, length):
        raise run.fail(f"shape {tuple(result.shape)}, expected (B, V, L, D) = ({batch}, {views}, {length}, D)")
    if result.shape[-1] not in (1, embedding_size):
        raise run.fail(f"last dimension {result.shape[-1]}: expected D = {embedding_size} (hidden size) or 1")
    if not result.is_floating_point():
        raise run.fail(f"dtype {result.dtype}: attributions must be floating point")
    if not bool(torch.isfinite(result).all()):
        raise run.fail("attributions contain NaN or inf")
    report.passed(f"{run.where}: shape (B, V, L, D) = {tuple(result.shape)}, finite")
    padding = result[(mask == 0)[:, None, :, None].expand_as(result)]
    if padding.numel() and bool((padding != 0).any()):
        raise run.fail(f"padding positions must be exactly zero (max |value| {float(padding.abs().max()):.3g})")
    if not bool((result[(mask == 1)[:, None, :, None].expand_as(result)] != 0).any()):
        raise run.fail("every real token's attribution is zero")
    report.passed(f"{run.where}: padding exactly zero, real tokens not all zero")
    if result.requires_grad:
        raise run.fail("without create_graph the result must carry no graph (return it detached)")
    if any(p.grad is not None for p in run.model.parameters()):
        raise run.fail("attribute() accumulated .grad on the model's parameters (use torch.autograd.grad)")
    report.passed(f"{run.where}: no graph and no parameter .grad without create_graph")
    return result


def _check_repeatable(run: _ProviderRun, result: Tensor, report: ConformanceReport) -> None:
    """A repeat, each view alone and each example alone give the batch's values."""
    problem = run.differs(run.attribute(), result)
    if problem:
        raise run.fail(f"not deterministic: a repeat differs ({problem})")
    report.passed(f"{run.where}: deterministic")
    views = int(run.targets.shape[1])
    for view in range(views):
        problem = run.differs(run.attribute(targets=run.targets[:, view : view + 1]), result[:, view : view + 1])
        if problem:
            raise run.fail(f"view {view} alone (targets[:, {view}:{view + 1}]) differs from the batch ({problem})")
    report.passed(f"{run.where}: views independent (V = {views})")
    for example, real in enumerate(BATCH_LENGTHS):
        alone = {key: value[example : example + 1, :real] for key, value in run.inputs.items()}
        single = run.attribute(alone, run.targets[example : example + 1])
        problem = run.differs(single, result[example : example + 1, :, :real])
        if problem:
            raise run.fail(
                f"example {example} alone (batch of 1, no padding) differs from the padded batch ({problem})"
            )
    report.passed(f"{run.where}: batch of 1 equals the padded batch")


def _check_longest(run: _ProviderRun, longest: int, num_labels: int, report: ConformanceReport) -> None:
    """A sequence of ``longest`` tokens next to a short one."""
    views = int(run.targets.shape[1])
    long_inputs = model_inputs(run.model, (longest, 3), seed=1)
    long_result = run.attribute(long_inputs, _rotating_targets(2, num_labels))
    if tuple(long_result.shape[:3]) != (2, views, longest) or not bool(torch.isfinite(long_result).all()):
        raise run.fail(f"a sequence of {longest} tokens gave shape {tuple(long_result.shape)} or non-finite values")
    if bool((long_result[1, :, 3:] != 0).any()):
        raise run.fail("padding positions of the short example next to the longest one are not zero")
    report.passed(f"{run.where}: longest sequence ({longest} tokens)")


def _check_teacher_and_forward(run: _ProviderRun, result: Tensor, report: ConformanceReport) -> None:
    """A frozen model under ``no_grad`` (the teacher) and a handed ``forward=`` give the same values."""
    with _frozen(run.model), torch.no_grad():
        frozen = run.attribute()
    problem = run.differs(frozen, result)
    if problem:
        raise run.fail(f"on a frozen model under torch.no_grad() (the teacher) the values differ ({problem})")
    report.passed(f"{run.where}: frozen model under no_grad")
    reused = run.attribute(forward=_embedding_forward(run.model, run.inputs))
    problem = run.differs(reused, result)
    if problem:
        raise run.fail(f"with forward= (the step's EmbeddingForward) the values differ ({problem})")
    report.passed(f"{run.where}: forward= gives the same values")


def _check_differentiable(run: _ProviderRun, result: Tensor, report: ConformanceReport) -> None:
    """``create_graph=True`` (with and without ``forward=``): the same values, gradients reach the parameters."""
    for label, forward in (("", None), (" and forward=", _embedding_forward(run.model, run.inputs))):
        graph = run.attribute(create_graph=True, forward=forward)
        if not graph.requires_grad:
            raise run.fail(f"differentiable, but create_graph=True{label} gave no graph")
        problem = run.differs(graph.detach(), result)
        if problem:
            raise run.fail(f"create_graph=True{label} changes the values ({problem})")
        parameters = [p for p in run.model.parameters() if p.requires_grad]
        grads = torch.autograd.grad(graph.pow(2).sum(), parameters, allow_unused=True)
        present = [g for g in grads if g is not None]
        if not present or not any(bool((g != 0).any()) for g in present):
            raise run.fail(f"create_graph=True{label}: no gradient reaches the model's parameters")
        if not all(bool(torch.isfinite(g).all()) for g in present):
            raise run.fail(f"create_graph=True{label}: non-finite gradients")
    report.passed(f"{run.where}: differentiable (nonzero finite parameter gradients through the attributions)")


def _check_binary_views(
    provider: AttributionProvider, architecture: str, atol: float, report: ConformanceReport
) -> None:
    """When ``binary_views_equal()`` is True: on a two-class model the token maps of views 0 and 1 are equal."""
    if not provider.binary_views_equal():
        return
    where = f"{architecture}, two classes"
    model = _tiny_model(provider, architecture, 2)
    inputs = model_inputs(model, BATCH_LENGTHS)
    targets = _rotating_targets(inputs["attention_mask"].shape[0], 2)
    run = _ProviderRun(provider, model, where, inputs, targets, atol, 1e-4)
    maps = token_maps(run.attribute(), inputs["attention_mask"])
    problem = run.differs(maps[:, 0], maps[:, 1])
    if problem:
        raise run.fail(f"binary_views_equal() is True, but the two views' token maps differ ({problem})")
    report.passed(f"{where}: binary_views_equal() holds (the two views' maps are equal)")


def _check_provider_regression(
    provider: AttributionProvider, architecture: str, atol: float, rtol: float, report: ConformanceReport
) -> None:
    name = provider.name
    where = f"{architecture}, regression"
    model = _tiny_model(provider, architecture, 1)
    inputs = model_inputs(model, BATCH_LENGTHS)
    mask = inputs["attention_mask"]
    targets = torch.zeros(mask.shape[0], 1, dtype=torch.long)
    try:
        result = provider.attribute(model, inputs, targets)
    except Exception as exc:
        raise fail(name, where, f"attribute() raised {type(exc).__name__}: {exc}") from exc
    if tuple(result.shape[:3]) != (mask.shape[0], 1, mask.shape[1]) or not bool(torch.isfinite(result).all()):
        raise fail(name, where, f"shape {tuple(result.shape)} or non-finite values for a one-output model")
    if bool((result[(mask == 0)[:, None, :, None].expand_as(result)] != 0).any()):
        raise fail(name, where, "padding positions must be exactly zero")
    report.passed(f"{where}: one output, V = 1")
