"""Conformance checks for plugin components, to run in a plugin's own test suite.

    from kdkit.testing import check_attribution_provider, check_loss

    def test_my_provider_conforms():
        check_attribution_provider(MyProvider)            # or an instance built with options

    def test_my_loss_conforms():
        check_loss(MyLoss, {"weight": 0.5})

Each check builds tiny random models in memory (no download, a second or two on a CPU), uses the component
the way kdkit's trainer and teacher-signal cache do, and raises :class:`AssertionError` naming the rule that
was broken and what was seen. On success it returns a :class:`ConformanceReport` listing what was checked.

The rules are the contracts of :mod:`kdkit.attribution` and :mod:`kdkit.losses` (docs/plugins.md).
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from pydantic import BaseModel
from torch import Tensor, nn
from transformers import PreTrainedModel

from kdkit.attribution import AttributionProvider, EmbeddingForward, capture_embedding_output
from kdkit.data import MODEL_INPUTS, TEACHER_PREFIX, DistillationCollator
from kdkit.losses import Batch, DistillationLoss, LossContext
from kdkit.model_outputs import attention_kernel, check_needs, forward_with_outputs, student_step_forward
from kdkit.tasks import TaskSpec
from kdkit.testing.models import (
    BINARY_TASK,
    REGRESSION_TASK,
    THREE_CLASS_TASK,
    TINY_CLS_ID,
    TINY_SEP_ID,
    perturb_parameters,
    tiny_classifier,
)

#: the tasks :func:`check_loss` runs a loss on by default
DEFAULT_TASKS: tuple[TaskSpec, ...] = (BINARY_TASK, THREE_CLASS_TASK, REGRESSION_TASK)
#: real-token lengths of the examples of the test batch (right-padded to the longest)
BATCH_LENGTHS: tuple[int, ...] = (7, 4, 5, 2)
#: model types whose position ids start after the padding id (the usable length is 2 shorter)
_OFFSET_POSITIONS = frozenset({"roberta", "xlm-roberta", "camembert"})


@dataclass
class ConformanceReport:
    """What a conformance check verified.

    Attributes:
        component: the component's name.
        checks: one line per rule that held (architecture or task included).
    """

    component: str
    checks: list[str] = field(default_factory=list)

    def passed(self, rule: str) -> None:
        self.checks.append(rule)


class ConformanceError(AssertionError):
    """A component broke a rule of its interface (an :class:`AssertionError`, so pytest shows it plainly)."""


def _fail(component: str, where: str, message: str) -> ConformanceError:
    return ConformanceError(f"{component} [{where}]: {message}")


def _close(actual: Tensor, expected: Tensor, *, atol: float, rtol: float) -> str | None:
    """None when close, else a description of the largest difference (atol scales with |expected|)."""
    if actual.shape != expected.shape:
        return f"shape {tuple(actual.shape)} instead of {tuple(expected.shape)}"
    a = actual.detach().double()
    b = expected.detach().double()
    scale = max(1.0, float(b.abs().max())) if b.numel() else 1.0
    difference = (a - b).abs()
    allowed = atol * scale + rtol * b.abs()
    if bool((difference <= allowed).all()):
        return None
    return f"max |difference| {float(difference.max()):.3g} (values up to {float(b.abs().max()):.3g})"


# -- inputs ---------------------------------------------------------------------------------------------


def _accepts_token_type_ids(model: nn.Module) -> bool:
    return "token_type_ids" in inspect.signature(model.forward).parameters


def _pad_id(model: nn.Module) -> int:
    pad = getattr(getattr(model, "config", None), "pad_token_id", None)
    return int(pad) if pad is not None else 0


def _token_rows(lengths: Sequence[int], vocab_size: int, pad_id: int, seed: int = 0) -> list[list[int]]:
    """[CLS] w ... w [SEP] rows of the given lengths, words drawn from the non-special ids."""
    rng = random.Random(seed)
    words = [i for i in range(5, vocab_size) if i != pad_id]
    rows = []
    for length in lengths:
        if length < 2:
            rows.append([rng.choice(words) for _ in range(length)])
        else:
            rows.append([TINY_CLS_ID, *(rng.choice(words) for _ in range(length - 2)), TINY_SEP_ID])
    return rows


def model_inputs(model: nn.Module, lengths: Sequence[int], *, seed: int = 0) -> dict[str, Tensor]:
    """A right-padded batch for ``model``: ``input_ids``, ``attention_mask`` (and ``token_type_ids`` when the
    model takes them), each (B, L) with L = max(lengths)."""
    pad = _pad_id(model)
    config: Any = model.config
    vocab = int(config.vocab_size)
    rows = _token_rows(lengths, vocab, pad, seed)
    width = max(lengths)
    inputs = {
        "input_ids": torch.tensor([r + [pad] * (width - len(r)) for r in rows]),
        "attention_mask": torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows]),
    }
    if _accepts_token_type_ids(model):
        inputs["token_type_ids"] = torch.zeros_like(inputs["input_ids"])
    return inputs


def longest_length(model: nn.Module) -> int:
    """The longest input ``model`` accepts (its position embeddings; two fewer for RoBERTa-style models)."""
    config: Any = model.config
    longest = int(config.max_position_embeddings)
    if config.model_type in _OFFSET_POSITIONS:
        longest -= _pad_id(model) + 1
    return longest


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


# -- attribution providers ------------------------------------------------------------------------------


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
    name = str(getattr(instance, "name", type(instance).__name__))
    report = ConformanceReport(name)
    if not isinstance(instance, AttributionProvider):
        raise _fail(name, "class", f"{type(instance).__name__} is not an AttributionProvider subclass")
    if not isinstance(getattr(instance, "name", None), str) or not instance.name:
        raise _fail(name, "class", "set the class attribute 'name' to a non-empty string")
    if not (isinstance(instance.Options, type) and issubclass(instance.Options, BaseModel)):
        raise _fail(name, "class", "'Options' must be a pydantic BaseModel subclass")
    if not isinstance(instance.cache_key(), str):
        raise _fail(name, "class", "cache_key() must return a str")
    report.passed("class attributes: name, Options, differentiable, cache_key()")
    for architecture in architectures:
        _check_provider_on(instance, architecture, num_labels, max_length, atol, rtol, report)
        if regression:
            _check_provider_regression(instance, architecture, atol, rtol, report)
    return report


def _check_provider_on(
    provider: AttributionProvider,
    architecture: str,
    num_labels: int,
    max_length: int | None,
    atol: float,
    rtol: float,
    report: ConformanceReport,
) -> None:
    name = provider.name
    where = architecture
    eager = "eager" if provider.differentiable else None  # CPU SDPA kernels have no double backward
    model = perturb_parameters(tiny_classifier(architecture, num_labels=num_labels, attn_implementation=eager))
    model.eval()
    inputs = model_inputs(model, BATCH_LENGTHS)
    mask = inputs["attention_mask"]
    batch, length = mask.shape
    targets = _rotating_targets(batch, num_labels)
    with torch.no_grad():
        reference_logits = model(**inputs).logits.clone()
    flags = [p.requires_grad for p in model.parameters()]
    embedding_size = int(_embedding_forward(model, inputs).embeddings.shape[-1])

    def attribute(
        inputs: dict[str, Tensor], targets: Tensor, *, create_graph: bool = False, forward: Any = None
    ) -> Tensor:
        try:
            out = provider.attribute(model, inputs, targets, create_graph=create_graph, forward=forward)
        except Exception as exc:
            raise _fail(name, where, f"attribute() raised {type(exc).__name__}: {exc}") from exc
        if not isinstance(out, Tensor):
            raise _fail(name, where, f"attribute() returned {type(out).__name__}, not a Tensor")
        return out

    result = attribute(inputs, targets)
    views = int(targets.shape[1])
    if result.dim() != 4 or tuple(result.shape[:3]) != (batch, views, length):
        raise _fail(
            name, where, f"shape {tuple(result.shape)}, expected (B, V, L, D) = ({batch}, {views}, {length}, D)"
        )
    if result.shape[-1] not in (1, embedding_size):
        raise _fail(name, where, f"last dimension {result.shape[-1]}: expected D = {embedding_size} (hidden size) or 1")
    if not result.is_floating_point():
        raise _fail(name, where, f"dtype {result.dtype}: attributions must be floating point")
    if not bool(torch.isfinite(result).all()):
        raise _fail(name, where, "attributions contain NaN or inf")
    report.passed(f"{where}: shape (B, V, L, D) = {tuple(result.shape)}, finite")
    padding = result[(mask == 0)[:, None, :, None].expand_as(result)]
    if padding.numel() and bool((padding != 0).any()):
        raise _fail(
            name, where, f"padding positions must be exactly zero (max |value| {float(padding.abs().max()):.3g})"
        )
    if not bool((result[(mask == 1)[:, None, :, None].expand_as(result)] != 0).any()):
        raise _fail(name, where, "every real token's attribution is zero")
    report.passed(f"{where}: padding exactly zero, real tokens not all zero")
    if result.requires_grad:
        raise _fail(name, where, "without create_graph the result must carry no graph (return it detached)")
    if any(p.grad is not None for p in model.parameters()):
        raise _fail(name, where, "attribute() accumulated .grad on the model's parameters (use torch.autograd.grad)")
    report.passed(f"{where}: no graph and no parameter .grad without create_graph")

    problem = _close(attribute(inputs, targets), result, atol=atol, rtol=rtol)
    if problem:
        raise _fail(name, where, f"not deterministic: a repeat differs ({problem})")
    report.passed(f"{where}: deterministic")

    for view in range(views):
        problem = _close(
            attribute(inputs, targets[:, view : view + 1]), result[:, view : view + 1], atol=atol, rtol=rtol
        )
        if problem:
            raise _fail(
                name, where, f"view {view} alone (targets[:, {view}:{view + 1}]) differs from the batch ({problem})"
            )
    report.passed(f"{where}: views independent (V = {views})")

    for example, real in enumerate(BATCH_LENGTHS):
        alone = {key: value[example : example + 1, :real] for key, value in inputs.items()}
        single = attribute(alone, targets[example : example + 1])
        problem = _close(single, result[example : example + 1, :, :real], atol=atol, rtol=rtol)
        if problem:
            raise _fail(
                name,
                where,
                f"example {example} alone (batch of 1, no padding) differs from the padded batch ({problem})",
            )
    report.passed(f"{where}: batch of 1 equals the padded batch")

    longest = max_length or longest_length(model)
    long_inputs = model_inputs(model, (longest, 3), seed=1)
    long_result = attribute(long_inputs, _rotating_targets(2, num_labels))
    if tuple(long_result.shape[:3]) != (2, views, longest) or not bool(torch.isfinite(long_result).all()):
        raise _fail(
            name, where, f"a sequence of {longest} tokens gave shape {tuple(long_result.shape)} or non-finite values"
        )
    if bool((long_result[1, :, 3:] != 0).any()):
        raise _fail(name, where, "padding positions of the short example next to the longest one are not zero")
    report.passed(f"{where}: longest sequence ({longest} tokens)")

    with _frozen(model), torch.no_grad():
        frozen = attribute(inputs, targets)
    problem = _close(frozen, result, atol=atol, rtol=rtol)
    if problem:
        raise _fail(name, where, f"on a frozen model under torch.no_grad() (the teacher) the values differ ({problem})")
    report.passed(f"{where}: frozen model under no_grad")

    reused = attribute(inputs, targets, forward=_embedding_forward(model, inputs))
    problem = _close(reused, result, atol=atol, rtol=rtol)
    if problem:
        raise _fail(name, where, f"with forward= (the step's EmbeddingForward) the values differ ({problem})")
    report.passed(f"{where}: forward= gives the same values")

    if provider.differentiable:
        for label, forward in (("", None), (" and forward=", _embedding_forward(model, inputs))):
            graph = attribute(inputs, targets, create_graph=True, forward=forward)
            if not graph.requires_grad:
                raise _fail(name, where, f"differentiable, but create_graph=True{label} gave no graph")
            problem = _close(graph.detach(), result, atol=atol, rtol=rtol)
            if problem:
                raise _fail(name, where, f"create_graph=True{label} changes the values ({problem})")
            parameters = [p for p in model.parameters() if p.requires_grad]
            grads = torch.autograd.grad(graph.pow(2).sum(), parameters, allow_unused=True)
            present = [g for g in grads if g is not None]
            if not present or not any(bool((g != 0).any()) for g in present):
                raise _fail(name, where, f"create_graph=True{label}: no gradient reaches the model's parameters")
            if not all(bool(torch.isfinite(g).all()) for g in present):
                raise _fail(name, where, f"create_graph=True{label}: non-finite gradients")
        report.passed(f"{where}: differentiable (nonzero finite parameter gradients through the attributions)")

    if model.training:
        raise _fail(name, where, "attribute() left the model in training mode")
    if [p.requires_grad for p in model.parameters()] != flags:
        raise _fail(name, where, "attribute() changed requires_grad of the model's parameters")
    with torch.no_grad():
        logits = model(**inputs).logits
    if _close(logits, reference_logits, atol=1e-6, rtol=1e-6):
        raise _fail(name, where, "the model's outputs changed after attribute() (a hook left behind?)")
    report.passed(f"{where}: model left unchanged")


def _check_provider_regression(
    provider: AttributionProvider, architecture: str, atol: float, rtol: float, report: ConformanceReport
) -> None:
    name = provider.name
    where = f"{architecture}, regression"
    eager = "eager" if provider.differentiable else None
    model = perturb_parameters(tiny_classifier(architecture, num_labels=1, attn_implementation=eager)).eval()
    inputs = model_inputs(model, BATCH_LENGTHS)
    mask = inputs["attention_mask"]
    targets = torch.zeros(mask.shape[0], 1, dtype=torch.long)
    try:
        result = provider.attribute(model, inputs, targets)
    except Exception as exc:
        raise _fail(name, where, f"attribute() raised {type(exc).__name__}: {exc}") from exc
    if tuple(result.shape[:3]) != (mask.shape[0], 1, mask.shape[1]) or not bool(torch.isfinite(result).all()):
        raise _fail(name, where, f"shape {tuple(result.shape)} or non-finite values for a one-output model")
    if bool((result[(mask == 0)[:, None, :, None].expand_as(result)] != 0).any()):
        raise _fail(name, where, "padding positions must be exactly zero")
    report.passed(f"{where}: one output, V = 1")


# -- losses ---------------------------------------------------------------------------------------------


def _loss_options(loss: type[DistillationLoss], options: Mapping[str, Any] | BaseModel | None) -> BaseModel:
    if isinstance(options, BaseModel):
        return options
    return loss.Options(**dict(options or {}))


def _provider_factory(
    loss: DistillationLoss,
    plugins: Any,
    provider_options: Mapping[str, Mapping[str, Any] | BaseModel],
) -> Callable[[str], AttributionProvider] | None:
    from kdkit.trainer import provider_factory

    used = loss.providers_used()
    if not used and plugins is None:
        return None
    if plugins is None:
        from kdkit.plugins import PluginManager

        plugins = PluginManager()
    classes: Mapping[str, type[AttributionProvider]] = getattr(plugins, "providers", plugins)
    missing = [name for name in used if name not in classes]
    if missing:
        raise _fail(loss.name, "providers", f"providers_used() names {missing}, which no plugin provides")
    built: dict[str, Any] = {}
    for name, values in provider_options.items():
        cls = classes[name]
        built[name] = values if isinstance(values, BaseModel) else cls.Options(**dict(values))
    factory: Callable[[str], AttributionProvider] = provider_factory(dict(classes), built)
    return factory


def _features(task: TaskSpec, lengths: Sequence[int], vocab_size: int, pad_id: int) -> list[dict[str, Any]]:
    rows = _token_rows(lengths, vocab_size, pad_id, seed=3)
    features = []
    for index, row in enumerate(rows):
        label: Any = 0.25 * index - 0.3 if task.is_regression else index % task.num_labels
        features.append(
            {"input_ids": row, "attention_mask": [1] * len(row), "token_type_ids": [0] * len(row), "labels": label}
        )
    return features


def _batch(collated: Mapping[str, Tensor]) -> Batch:
    return Batch(inputs={k: collated[k] for k in MODEL_INPUTS if k in collated}, labels=collated["labels"])


def check_loss(
    loss: type[DistillationLoss],
    options: Mapping[str, Any] | BaseModel | None = None,
    *,
    tasks: Sequence[TaskSpec] = DEFAULT_TASKS,
    plugins: Any = None,
    provider_options: Mapping[str, Mapping[str, Any] | BaseModel] | None = None,
    atol: float = 1e-5,
) -> ConformanceReport:
    """Check a loss plugin against the interface of :class:`kdkit.losses.DistillationLoss`.

    For each task (two classes, three classes and regression by default) it builds the loss with
    ``options``, a frozen tiny teacher (2 layers) and a tiny student (1 layer; eager attention when the loss
    sets ``needs_double_backward`` or asks for ``attentions``), calls ``prepare`` with both, builds a
    right-padded batch of B = 4 examples, runs the models as the trainer does (the ``output_*`` flags of
    ``needs_student_outputs`` / ``needs_teacher_outputs``) and checks that:

    - the class attributes are consistent (``name``, ``Options``, ``token_signals``, the ``needs_*_outputs``
      known, ``prepare`` succeeds, ``teacher_signal_key()`` a str, every name in ``providers_used()``
      provided by a plugin);
    - ``teacher_signals`` (with ``requires_teacher``) returns tensors whose first dimension is B, finite and
      without a graph; per-token signals (``token_signals``) have the sequence last and zero padding; a
      repeat gives the same values;
    - the teacher-signal cache reproduces them: :func:`kdkit.teacher_cache.compute_signals` on each example
      alone (no padding), collated with the batch's padding, gives the live values;
    - ``live_teacher_signals`` (with ``needs_teacher_outputs``) returns tensors whose first dimension is B,
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
    name = str(getattr(loss, "name", loss.__name__))
    report = ConformanceReport(name)
    if not (isinstance(loss, type) and issubclass(loss, DistillationLoss)):
        raise _fail(name, "class", f"{loss!r} is not a DistillationLoss subclass")
    if not isinstance(getattr(loss, "name", None), str) or not loss.name:
        raise _fail(name, "class", "set the class attribute 'name' to a non-empty string")
    if not (isinstance(loss.Options, type) and issubclass(loss.Options, BaseModel)):
        raise _fail(name, "class", "'Options' must be a pydantic BaseModel subclass")
    if not all(isinstance(signal, str) for signal in loss.token_signals):
        raise _fail(name, "class", "token_signals must be a set of signal names")
    report.passed("class attributes: name, Options, token_signals")
    for task in tasks:
        _check_loss_on(loss, _loss_options(loss, options), task, plugins, provider_options or {}, atol, report)
    return report


def _check_loss_on(
    loss_cls: type[DistillationLoss],
    options: BaseModel,
    task: TaskSpec,
    plugins: Any,
    provider_options: Mapping[str, Mapping[str, Any] | BaseModel],
    atol: float,
    report: ConformanceReport,
) -> None:
    from kdkit.teacher_cache import compute_signals

    name = loss_cls.name
    where = task.name
    loss = loss_cls(options, task)
    factory = _provider_factory(loss, plugins, provider_options)
    teacher, student = _prepared_models(loss, task, factory)
    key = loss.teacher_signal_key()
    if not isinstance(key, str):
        raise _fail(name, where, f"teacher_signal_key() returned {type(key).__name__}, not a str")
    pad = _pad_id(teacher)
    features = _features(task, BATCH_LENGTHS, int(teacher.config.vocab_size), pad)
    collator = DistillationCollator(pad, token_signals=sorted(loss.token_signals))
    batch = _batch(collator(features))
    mask = batch.attention_mask
    size, length = mask.shape

    signals: dict[str, Tensor] = {}
    cached: dict[str, Tensor] = {}
    if loss.requires_teacher:
        ctx = LossContext(task=task, student=student, teacher=teacher, provider_factory=factory)
        try:
            with torch.no_grad():
                signals = loss.teacher_signals(teacher, batch, ctx)
        except Exception as exc:
            raise _fail(name, where, f"teacher_signals() raised {type(exc).__name__}: {exc}") from exc
        if not isinstance(signals, Mapping) or not signals:
            raise _fail(name, where, "teacher_signals() must return a non-empty dict of tensors")
        for signal, value in signals.items():
            if not isinstance(value, Tensor):
                raise _fail(name, where, f"teacher signal '{signal}' is a {type(value).__name__}, not a Tensor")
            if value.dim() == 0 or value.shape[0] != size:
                raise _fail(
                    name,
                    where,
                    f"teacher signal '{signal}' has shape {tuple(value.shape)}: first dim must be B = {size}",
                )
            if value.requires_grad:
                raise _fail(name, where, f"teacher signal '{signal}' carries a graph (detach it)")
            if not bool(torch.isfinite(value).all()):
                raise _fail(name, where, f"teacher signal '{signal}' contains NaN or inf")
            if signal in loss.token_signals:
                if value.shape[-1] != length:
                    raise _fail(
                        name,
                        where,
                        f"per-token signal '{signal}' has shape {tuple(value.shape)}: last dim must be L = {length}",
                    )
                padding = mask.view(size, *([1] * (value.dim() - 2)), length).expand_as(value) == 0
                if bool((value[padding] != 0).any()):
                    raise _fail(name, where, f"per-token signal '{signal}' is not zero at padding positions")
        report.passed(f"{where}: teacher signals {sorted(signals)} (first dim B, finite, no graph, padding zero)")
        with torch.no_grad():
            again = loss.teacher_signals(teacher, batch, ctx)
        for signal, value in signals.items():
            problem = _close(again[signal], value, atol=atol, rtol=0.0)
            if problem:
                raise _fail(name, where, f"teacher signal '{signal}' is not deterministic ({problem})")
        report.passed(f"{where}: teacher signals deterministic")
        stored: dict[str, list[Any]] = {}
        for feature in features:  # each example alone: the cache's batches have other padding
            computed = compute_signals(loss, teacher, [feature], ctx, torch.device("cpu"), DistillationCollator(pad))
            for column, values in computed.items():
                stored.setdefault(column, []).extend(values)
        with_signals = [
            {**feature, **{column: values[i] for column, values in stored.items()}}
            for i, feature in enumerate(features)
        ]
        try:
            collated = collator(with_signals)
        except Exception as exc:
            raise _fail(
                name,
                where,
                f"cached teacher signals cannot be padded into a batch ({type(exc).__name__}: {exc}); a signal "
                "whose last dimension is the sequence must be named in token_signals",
            ) from exc
        cached = {k.removeprefix(TEACHER_PREFIX): v for k, v in collated.items() if k.startswith(TEACHER_PREFIX)}
        for signal, value in signals.items():
            if signal not in cached:
                raise _fail(name, where, f"teacher signal '{signal}' is missing after the cache round trip")
            problem = _close(cached[signal], value.float(), atol=atol, rtol=1e-4)
            if problem:
                raise _fail(
                    name,
                    where,
                    f"teacher signal '{signal}' from the cache (each example alone, then padded) differs from the "
                    f"live batch ({problem}); is '{signal}' per token but missing from token_signals, or does it "
                    "depend on padding?",
                )
        report.passed(f"{where}: the teacher-signal cache reproduces the live signals")
    live = _live_signals(loss, teacher, batch, LossContext(task, student, teacher, provider_factory=factory))
    if live:
        clash = sorted(set(live) & set(signals))
        if clash:
            raise _fail(name, where, f"live teacher signals {clash} have the names of cached ones")
        report.passed(f"{where}: live teacher signals {sorted(live)} (first dim B, finite, no graph)")

    def run(signals: Mapping[str, Tensor], with_teacher: bool, batch: Batch = batch) -> dict[str, Tensor]:
        ctx = LossContext(
            task=task,
            student=student,
            teacher=teacher if with_teacher and loss.requires_teacher else None,
            provider_factory=factory,
        )
        try:
            with torch.enable_grad():  # the trainer's forward: the outputs the loss asks for (ctx.student_outputs)
                logits = student_step_forward(student, batch, loss, ctx).logits
        except Exception as exc:
            needs = sorted(loss.needs_student_outputs)
            raise _fail(name, where, f"the student's forward with {needs} failed: {exc}") from exc
        try:
            terms = loss(batch, logits, signals, ctx)
        except Exception as exc:
            raise _fail(name, where, f"the loss raised {type(exc).__name__}: {exc}") from exc
        if not isinstance(terms, Mapping) or not terms:
            raise _fail(name, where, "the loss must return a non-empty dict of named terms")
        for term, value in terms.items():
            if not isinstance(term, str) or not isinstance(value, Tensor):
                raise _fail(name, where, f"term {term!r} must map a str to a Tensor")
            if value.dim() != 0:
                raise _fail(name, where, f"term '{term}' has shape {tuple(value.shape)}: terms must be scalars (0-dim)")
            if not value.is_floating_point() or not bool(torch.isfinite(value).all()):
                raise _fail(name, where, f"term '{term}' = {value!r} is not a finite floating-point number")
        return dict(terms)

    terms = run({**signals, **live}, with_teacher=True)
    report.passed(f"{where}: terms {sorted(terms)} are finite scalars")
    total: Tensor = sum(terms.values())  # type: ignore[assignment]
    if not total.requires_grad:
        raise _fail(name, where, "no term depends on the student (the sum has no graph)")
    parameters = [p for p in student.parameters() if p.requires_grad]
    grads = [g for g in torch.autograd.grad(total, parameters, allow_unused=True) if g is not None]
    if not grads or not any(bool((g != 0).any()) for g in grads):
        raise _fail(name, where, "no gradient reaches the student's parameters")
    if not all(bool(torch.isfinite(g).all()) for g in grads):
        raise _fail(name, where, "non-finite gradients in the student")
    report.passed(f"{where}: gradients reach the student")

    if loss.requires_teacher:
        from_cache = run({**cached, **live}, with_teacher=False)  # live signals: the teacher runs in every step
        if set(from_cache) != set(terms):
            raise _fail(name, where, f"cached signals give terms {sorted(from_cache)}, live ones {sorted(terms)}")
        for term, value in terms.items():
            problem = _close(from_cache[term], value, atol=atol, rtol=1e-4)
            if problem:
                raise _fail(
                    name, where, f"term '{term}' from cached signals (no teacher) differs from live ({problem})"
                )
        report.passed(f"{where}: cached signals without a teacher give the live terms")

    single = _batch(collator(features[:1]))
    one: dict[str, Tensor] = {}
    single_ctx = LossContext(task, student, teacher, provider_factory=factory)
    if loss.requires_teacher:
        with torch.no_grad():
            one = loss.teacher_signals(teacher, single, single_ctx)
    run({**one, **_live_signals(loss, teacher, single, single_ctx)}, with_teacher=True, batch=single)
    report.passed(f"{where}: batch of 1")


def _prepared_models(
    loss: DistillationLoss, task: TaskSpec, factory: Callable[[str], AttributionProvider] | None
) -> tuple[PreTrainedModel, PreTrainedModel]:
    """(frozen 2-layer teacher, 1-layer student), each on eager attention where the loss needs it, and the loss
    prepared with them (``prepare``), as kdkit's ``distill`` does."""
    cls = type(loss)
    teacher = tiny_classifier(
        "bert", num_labels=task.num_labels, num_layers=2, seed=0, attn_implementation=attention_kernel(cls, "teacher")
    )
    teacher = perturb_parameters(teacher).eval()
    teacher.requires_grad_(False)
    attn = attention_kernel(cls, "student")
    student = tiny_classifier("bert", num_labels=task.num_labels, num_layers=1, seed=1, attn_implementation=attn)
    student = perturb_parameters(student, seed=1).eval()
    try:
        check_needs(cls)
        loss.prepare(LossContext(task=task, student=student, teacher=teacher, provider_factory=factory))
    except Exception as exc:
        raise _fail(loss.name, task.name, f"prepare() raised {type(exc).__name__}: {exc}") from exc
    return teacher, student


def _live_signals(loss: DistillationLoss, teacher: nn.Module, batch: Batch, ctx: LossContext) -> dict[str, Tensor]:
    """``live_teacher_signals`` of a teacher forward with the loss's ``needs_teacher_outputs``, checked like the
    cacheable ones (tensors, first dimension B, finite, no graph)."""
    if not loss.needs_teacher_outputs:
        return {}
    name, size = loss.name, batch.size
    try:
        with torch.no_grad():
            outputs = forward_with_outputs(teacher, batch.inputs, loss.needs_teacher_outputs, "teacher")
            live = loss.live_teacher_signals(outputs, batch, ctx)
    except Exception as exc:
        raise _fail(name, "live signals", f"live_teacher_signals() raised {type(exc).__name__}: {exc}") from exc
    for signal, value in live.items():
        if not isinstance(value, Tensor) or value.dim() == 0 or value.shape[0] != size:
            raise _fail(name, "live signals", f"live teacher signal '{signal}' must be a tensor, first dim B = {size}")
        if value.requires_grad or not bool(torch.isfinite(value).all()):
            raise _fail(name, "live signals", f"live teacher signal '{signal}' carries a graph or is not finite")
    return dict(live)
