"""The conformance check of distillation losses: :func:`check_loss`.

It runs a loss with tiny random models the way kdkit's trainer and teacher-signal cache do, and raises
:class:`~kdkit.testing.conformance_base.ConformanceError` naming the rule of :class:`kdkit.losses.
DistillationLoss` that was broken (docs/plugins.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from pydantic import BaseModel
from torch import Tensor, nn
from transformers import PreTrainedModel

from kdkit.attribution.base import AttributionProvider
from kdkit.data.batching import TEACHER_PREFIX, DistillationCollator
from kdkit.data.tasks import TaskSpec
from kdkit.losses.base import Batch, DistillationLoss, LossContext, LossNeeds
from kdkit.testing.conformance_base import (
    BATCH_LENGTHS,
    ConformanceError,
    ConformanceReport,
    as_batch,
    batch_features,
    difference,
    fail,
    pad_id,
)
from kdkit.testing.models import (
    BINARY_TASK,
    REGRESSION_TASK,
    THREE_CLASS_TASK,
    perturb_parameters,
    tiny_classifier,
)
from kdkit.training.step import forward_with_outputs, student_step_forward

#: the tasks :func:`check_loss` runs a loss on by default
DEFAULT_TASKS: tuple[TaskSpec, ...] = (BINARY_TASK, THREE_CLASS_TASK, REGRESSION_TASK)


def check_loss(
    loss: type[DistillationLoss],
    options: Mapping[str, Any] | BaseModel | None = None,
    *,
    tasks: Sequence[TaskSpec] = DEFAULT_TASKS,
    plugins: Any = None,
    provider_options: Mapping[str, Mapping[str, Any] | BaseModel] | None = None,
    atol: float = 1e-5,
) -> ConformanceReport:
    """Check a loss plugin against the interface of :class:`kdkit.losses.base.DistillationLoss`.

    For each task (two classes, three classes and regression by default) it builds the loss with
    ``options``, a frozen tiny teacher (2 layers) and a tiny student (1 layer; eager attention when the loss
    needs a double backward or ``attentions``), calls ``prepare`` with both, builds a right-padded batch of
    B = 4 examples, runs the models as the trainer does (the ``output_*`` flags of ``needs.student_outputs`` /
    ``needs.teacher_outputs``) and checks that:

    - the class attributes are consistent (``name``, ``Options``, ``needs`` a :class:`LossNeeds`; ``prepare``
      succeeds, ``teacher_signal_key()`` a str, every name in ``providers_used()`` provided by a plugin);
    - ``teacher_signals`` (with ``needs.teacher``) returns tensors whose first dimension is B, finite and
      without a graph; per-token signals (``needs.token_signals``) have the sequence last and zero padding; a
      repeat gives the same values;
    - the teacher-signal cache reproduces them: :func:`kdkit.training.teacher_cache.compute_signals` on each example
      alone (no padding), collated with the batch's padding, gives the live values;
    - ``live_teacher_signals`` (with ``needs.teacher_outputs``) returns tensors whose first dimension is B,
      finite and without a graph, named apart from the cached signals;
    - the loss returns a non-empty dict of named scalar (0-dim), finite, floating terms;
    - gradients of their sum reach the student (some nonzero, all finite);
    - the terms computed from cached signals, with no teacher in the context (as in a cached run), equal the
      terms from live signals;
    - a batch of one example works.

    Args:
        loss: the loss class.
        options: its options (a dict for ``loss.Options``, or an options object).
        tasks: the tasks to run on (:mod:`kdkit.testing` has ``BINARY_TASK``, ``THREE_CLASS_TASK`` and
            ``REGRESSION_TASK``; pass fewer if the loss does not support regression, say).
        plugins: where the providers of ``providers_used()`` come from: a
            :class:`~kdkit.plugins.PluginManager` or a ``{name: provider class}`` dict (default: a
            plugin manager with the installed plugins).
        provider_options: ``{provider name: options}`` for those providers.
        atol: tolerance of the comparisons (scaled by the largest |value|, at least 1).

    Raises:
        AssertionError (:class:`ConformanceError`): the first rule that does not hold.
    """
    report = _check_loss_class(loss)
    for task in tasks:
        _check_loss_on(loss, _loss_options(loss, options), task, plugins, provider_options or {}, atol, report)
    return report


def _check_loss_class(loss: Any) -> ConformanceReport:
    """The class attributes."""
    name = str(getattr(loss, "name", loss.__name__))
    report = ConformanceReport(name)
    if not (isinstance(loss, type) and issubclass(loss, DistillationLoss)):
        raise fail(name, "class", f"{loss!r} is not a DistillationLoss subclass")
    if not isinstance(getattr(loss, "name", None), str) or not loss.name:
        raise fail(name, "class", "set the class attribute 'name' to a non-empty string")
    if not (isinstance(loss.Options, type) and issubclass(loss.Options, BaseModel)):
        raise fail(name, "class", "'Options' must be a pydantic BaseModel subclass")
    if not isinstance(loss.needs, LossNeeds):
        raise fail(name, "class", "'needs' must be a LossNeeds (needs = LossNeeds(...))")
    if not all(isinstance(signal, str) for signal in loss.needs.token_signals):
        raise fail(name, "class", "needs.token_signals must be a set of signal names")
    report.passed("class attributes: name, Options, needs")
    return report


@dataclass
class _LossRun:
    """A loss on one task: its prepared models, the test batch (and its features), the comparisons' tolerance."""

    loss: DistillationLoss
    task: TaskSpec
    teacher: PreTrainedModel
    student: PreTrainedModel
    factory: Callable[[str], AttributionProvider] | None
    features: list[dict[str, Any]]
    collator: DistillationCollator
    batch: Batch
    atol: float
    report: ConformanceReport

    @property
    def where(self) -> str:
        return self.task.name

    def fail(self, message: str) -> ConformanceError:
        return fail(self.loss.name, self.where, message)

    def context(self, *, with_teacher: bool = True) -> LossContext:
        teacher = self.teacher if with_teacher else None
        return LossContext(task=self.task, student=self.student, teacher=teacher, provider_factory=self.factory)


def _check_loss_on(
    loss_cls: type[DistillationLoss],
    options: BaseModel,
    task: TaskSpec,
    plugins: Any,
    provider_options: Mapping[str, Mapping[str, Any] | BaseModel],
    atol: float,
    report: ConformanceReport,
) -> None:
    loss = loss_cls(options, task)
    factory = _provider_factory(loss, plugins, provider_options)
    teacher, student = _prepared_models(loss, task, factory)
    key = loss.teacher_signal_key()
    if not isinstance(key, str):
        raise fail(loss.name, task.name, f"teacher_signal_key() returned {type(key).__name__}, not a str")
    pad = pad_id(teacher)
    features = batch_features(task, BATCH_LENGTHS, int(teacher.config.vocab_size), pad)
    collator = DistillationCollator(pad, token_signals=sorted(loss.needs.token_signals))
    run = _LossRun(
        loss, task, teacher, student, factory, features, collator, as_batch(collator(features)), atol, report
    )
    signals: dict[str, Tensor] = {}
    cached: dict[str, Tensor] = {}
    if loss.needs.teacher:
        signals = _checked_teacher_signals(run)
        cached = _cache_round_trip(run, signals)
    live = _live_signals(loss, teacher, run.batch, run.context())
    if live:
        clash = sorted(set(live) & set(signals))
        if clash:
            raise run.fail(f"live teacher signals {clash} have the names of cached ones")
        report.passed(f"{run.where}: live teacher signals {sorted(live)} (first dim B, finite, no graph)")
    terms = _terms(run, {**signals, **live}, with_teacher=True)
    report.passed(f"{run.where}: terms {sorted(terms)} are finite scalars")
    _check_gradients(run, terms)
    if loss.needs.teacher:
        _check_cached_terms(run, {**cached, **live}, terms)  # live signals: the teacher runs in every step
    single = as_batch(collator(features[:1]))
    one: dict[str, Tensor] = {}
    if loss.needs.teacher:
        with torch.no_grad():
            one = loss.teacher_signals(teacher, single, run.context())
    _terms(run, {**one, **_live_signals(loss, teacher, single, run.context())}, with_teacher=True, batch=single)
    report.passed(f"{run.where}: batch of 1")


def _checked_teacher_signals(run: _LossRun) -> dict[str, Tensor]:
    """``teacher_signals`` of the batch: tensors, first dimension B, no graph, finite, per-token ones padded with
    zeros; a repeat gives the same values."""
    loss, ctx = run.loss, run.context()
    try:
        with torch.no_grad():
            signals = loss.teacher_signals(run.teacher, run.batch, ctx)
    except Exception as exc:
        raise run.fail(f"teacher_signals() raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(signals, Mapping) or not signals:
        raise run.fail("teacher_signals() must return a non-empty dict of tensors")
    for signal, value in signals.items():
        _check_teacher_signal(run, signal, value)
    run.report.passed(f"{run.where}: teacher signals {sorted(signals)} (first dim B, finite, no graph, padding zero)")
    with torch.no_grad():
        again = loss.teacher_signals(run.teacher, run.batch, ctx)
    for signal, value in signals.items():
        problem = difference(again[signal], value, atol=run.atol, rtol=0.0)
        if problem:
            raise run.fail(f"teacher signal '{signal}' is not deterministic ({problem})")
    run.report.passed(f"{run.where}: teacher signals deterministic")
    return dict(signals)


def _check_teacher_signal(run: _LossRun, signal: str, value: Any) -> None:
    mask = run.batch.attention_mask
    size, length = mask.shape
    if not isinstance(value, Tensor):
        raise run.fail(f"teacher signal '{signal}' is a {type(value).__name__}, not a Tensor")
    if value.dim() == 0 or value.shape[0] != size:
        raise run.fail(f"teacher signal '{signal}' has shape {tuple(value.shape)}: first dim must be B = {size}")
    if value.requires_grad:
        raise run.fail(f"teacher signal '{signal}' carries a graph (detach it)")
    if not bool(torch.isfinite(value).all()):
        raise run.fail(f"teacher signal '{signal}' contains NaN or inf")
    if signal in run.loss.needs.token_signals:
        if value.shape[-1] != length:
            raise run.fail(f"per-token signal '{signal}' has shape {tuple(value.shape)}: last dim must be L = {length}")
        padding = mask.view(size, *([1] * (value.dim() - 2)), length).expand_as(value) == 0
        if bool((value[padding] != 0).any()):
            raise run.fail(f"per-token signal '{signal}' is not zero at padding positions")


def _cache_round_trip(run: _LossRun, signals: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The signals as a cached run sees them: each example alone (the cache's batches have other padding), then
    collated with the batch's padding; they must equal the live ``signals``."""
    from kdkit.training.teacher_cache import compute_signals

    pad = pad_id(run.teacher)
    stored: dict[str, list[Any]] = {}
    ctx = run.context()
    for feature in run.features:
        computed = compute_signals(
            run.loss, run.teacher, [feature], ctx, torch.device("cpu"), DistillationCollator(pad)
        )
        for column, values in computed.items():
            stored.setdefault(column, []).extend(values)
    with_signals = [
        {**feature, **{column: values[i] for column, values in stored.items()}}
        for i, feature in enumerate(run.features)
    ]
    try:
        collated = run.collator(with_signals)
    except Exception as exc:
        raise run.fail(
            f"cached teacher signals cannot be padded into a batch ({type(exc).__name__}: {exc}); a signal "
            "whose last dimension is the sequence must be named in needs.token_signals",
        ) from exc
    cached = {k.removeprefix(TEACHER_PREFIX): v for k, v in collated.items() if k.startswith(TEACHER_PREFIX)}
    for signal, value in signals.items():
        if signal not in cached:
            raise run.fail(f"teacher signal '{signal}' is missing after the cache round trip")
        problem = difference(cached[signal], value.float(), atol=run.atol, rtol=1e-4)
        if problem:
            raise run.fail(
                f"teacher signal '{signal}' from the cache (each example alone, then padded) differs from the "
                f"live batch ({problem}); is '{signal}' per token but missing from needs.token_signals, or does it "
                "depend on padding?",
            )
    run.report.passed(f"{run.where}: the teacher-signal cache reproduces the live signals")
    return cached


def _terms(
    run: _LossRun, signals: Mapping[str, Tensor], *, with_teacher: bool, batch: Batch | None = None
) -> dict[str, Tensor]:
    """The loss's terms for ``batch`` (default: the test batch) after the trainer's student forward; each a
    finite floating scalar."""
    loss, batch = run.loss, run.batch if batch is None else batch
    ctx = run.context(with_teacher=with_teacher and loss.needs.teacher)
    try:
        with torch.enable_grad():  # the trainer's forward: the outputs the loss asks for (ctx.student_outputs)
            logits = student_step_forward(run.student, batch, loss, ctx).logits
    except Exception as exc:
        needs = sorted(loss.needs.student_outputs)
        raise run.fail(f"the student's forward with {needs} failed: {exc}") from exc
    try:
        terms = loss(batch, logits, signals, ctx)
    except Exception as exc:
        raise run.fail(f"the loss raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(terms, Mapping) or not terms:
        raise run.fail("the loss must return a non-empty dict of named terms")
    for term, value in terms.items():
        if not isinstance(term, str) or not isinstance(value, Tensor):
            raise run.fail(f"term {term!r} must map a str to a Tensor")
        if value.dim() != 0:
            raise run.fail(f"term '{term}' has shape {tuple(value.shape)}: terms must be scalars (0-dim)")
        if not value.is_floating_point() or not bool(torch.isfinite(value).all()):
            raise run.fail(f"term '{term}' = {value!r} is not a finite floating-point number")
    return dict(terms)


def _check_gradients(run: _LossRun, terms: Mapping[str, Tensor]) -> None:
    """The sum of the terms has nonzero, finite gradients w.r.t. the student's parameters."""
    total: Tensor = sum(terms.values())  # type: ignore[assignment]
    if not total.requires_grad:
        raise run.fail("no term depends on the student (the sum has no graph)")
    parameters = [p for p in run.student.parameters() if p.requires_grad]
    grads = [g for g in torch.autograd.grad(total, parameters, allow_unused=True) if g is not None]
    if not grads or not any(bool((g != 0).any()) for g in grads):
        raise run.fail("no gradient reaches the student's parameters")
    if not all(bool(torch.isfinite(g).all()) for g in grads):
        raise run.fail("non-finite gradients in the student")
    run.report.passed(f"{run.where}: gradients reach the student")


def _check_cached_terms(run: _LossRun, cached: Mapping[str, Tensor], terms: Mapping[str, Tensor]) -> None:
    """The terms from cached signals, with no teacher in the context (a cached run), equal the live ones."""
    from_cache = _terms(run, cached, with_teacher=False)
    if set(from_cache) != set(terms):
        raise run.fail(f"cached signals give terms {sorted(from_cache)}, live ones {sorted(terms)}")
    for term, value in terms.items():
        problem = difference(from_cache[term], value, atol=run.atol, rtol=1e-4)
        if problem:
            raise run.fail(f"term '{term}' from cached signals (no teacher) differs from live ({problem})")
    run.report.passed(f"{run.where}: cached signals without a teacher give the live terms")


def _loss_options(loss: type[DistillationLoss], options: Mapping[str, Any] | BaseModel | None) -> BaseModel:
    if isinstance(options, BaseModel):
        return options
    return loss.Options(**dict(options or {}))


def _provider_factory(
    loss: DistillationLoss,
    plugins: Any,
    provider_options: Mapping[str, Mapping[str, Any] | BaseModel],
) -> Callable[[str], AttributionProvider] | None:
    from kdkit.plugins.options import provider_factory

    used = loss.providers_used()
    if not used and plugins is None:
        return None
    if plugins is None:
        from kdkit.plugins.manager import PluginManager

        plugins = PluginManager()
    classes: Mapping[str, type[AttributionProvider]] = getattr(plugins, "providers", plugins)
    missing = [name for name in used if name not in classes]
    if missing:
        raise fail(loss.name, "providers", f"providers_used() names {missing}, which no plugin provides")
    built: dict[str, Any] = {}
    for name, values in provider_options.items():
        cls = classes[name]
        built[name] = values if isinstance(values, BaseModel) else cls.Options(**dict(values))
    factory: Callable[[str], AttributionProvider] = provider_factory(classes.__getitem__, built)
    return factory


def _prepared_models(
    loss: DistillationLoss, task: TaskSpec, factory: Callable[[str], AttributionProvider] | None
) -> tuple[PreTrainedModel, PreTrainedModel]:
    """(frozen 2-layer teacher, 1-layer student), each on eager attention where the loss needs it, and the loss
    prepared with them (``prepare``), as kdkit's ``distill`` does."""
    cls = type(loss)
    teacher = tiny_classifier(
        "bert", num_labels=task.num_labels, num_layers=2, seed=0, attn_implementation=cls.needs.teacher_attention
    )
    teacher = perturb_parameters(teacher).eval()
    teacher.requires_grad_(False)
    attn = cls.needs.student_attention
    student = tiny_classifier("bert", num_labels=task.num_labels, num_layers=1, seed=1, attn_implementation=attn)
    student = perturb_parameters(student, seed=1).eval()
    try:
        loss.prepare(LossContext(task=task, student=student, teacher=teacher, provider_factory=factory))
    except Exception as exc:
        raise fail(loss.name, task.name, f"prepare() raised {type(exc).__name__}: {exc}") from exc
    return teacher, student


def _live_signals(loss: DistillationLoss, teacher: nn.Module, batch: Batch, ctx: LossContext) -> dict[str, Tensor]:
    """``live_teacher_signals`` of a teacher forward with the loss's ``needs.teacher_outputs``, checked like the
    cacheable ones (tensors, first dimension B, finite, no graph)."""
    if not loss.needs.teacher_outputs:
        return {}
    name, size = loss.name, batch.size
    try:
        with torch.no_grad():
            outputs = forward_with_outputs(teacher, batch.inputs, loss.needs.teacher_outputs, "teacher")
            live = loss.live_teacher_signals(outputs, batch, ctx)
    except Exception as exc:
        raise fail(name, "live signals", f"live_teacher_signals() raised {type(exc).__name__}: {exc}") from exc
    for signal, value in live.items():
        if not isinstance(value, Tensor) or value.dim() == 0 or value.shape[0] != size:
            raise fail(name, "live signals", f"live teacher signal '{signal}' must be a tensor, first dim B = {size}")
        if value.requires_grad or not bool(torch.isfinite(value).all()):
            raise fail(name, "live signals", f"live teacher signal '{signal}' carries a graph or is not finite")
    return dict(live)
