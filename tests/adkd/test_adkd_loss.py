"""The ``adkd`` loss: golden values against a plain re-implementation, views, second-order gradients,
options, presets and ablations."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from adkd_helpers import (
    REGRESSION,
    THREE_CLASSES,
    TWO_CLASSES,
    frozen,
    make_batch,
    make_model,
    provider_factory,
    student_context,
)
from kdkit_adkd.ig import IGOptions, IntegratedGradients
from kdkit_adkd.loss import ADKDLoss, ADKDOptions
from torch import Tensor, nn

from kdkit import api
from kdkit.attribution.base import AttributionProvider, embedding_block, token_maps
from kdkit.data.tasks import TaskSpec
from kdkit.errors import ConfigError
from kdkit.losses.base import Batch, LossContext
from kdkit.plugins.options import resolve_options

# -- an independent, plain implementation of the formulas (one example, one token at a time) ----------


def _embeddings(model: nn.Module, ids: Tensor, *, pad: bool = False) -> Tensor:
    """E (or, with ``pad``, E' for all-[PAD] ids at the same positions) of one unpadded example (L, D)."""
    held: list[Tensor] = []
    handle = embedding_block(model).register_forward_hook(lambda _m, _a, out: held.append(out))
    try:
        with torch.no_grad():
            x = torch.full_like(ids, int(model.config.pad_token_id)) if pad else ids
            model(input_ids=x, attention_mask=torch.ones_like(ids))
    finally:
        handle.remove()
    return held[0][0]


def _score(model: nn.Module, ids: Tensor, point: Tensor, cls: int) -> Tensor:
    handle = embedding_block(model).register_forward_hook(lambda _m, _a, _o: point.unsqueeze(0))
    try:
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0]
    finally:
        handle.remove()
    if logits.shape[0] == 1:
        return logits[0]
    return torch.log_softmax(logits.double(), dim=-1)[cls]


def _plain_map(model: nn.Module, ids: Tensor, cls: int, steps: int, baseline: str, top_k: int | None) -> list[float]:
    e = _embeddings(model, ids)
    e0 = torch.zeros_like(e) if baseline == "zero" else _embeddings(model, ids, pad=True)
    grad_sum = torch.zeros_like(e)
    for k in range(1, steps + 1):
        point = (e0 + k / steps * (e - e0)).detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(_score(model, ids, point, cls), point)
        grad_sum += grad
    ig = ((e - e0) * grad_sum / steps).tolist()
    per_token = []
    for row in ig:
        values = sorted((abs(x) for x in row), reverse=True)[: top_k or len(row)]
        per_token.append(math.sqrt(sum(x * x for x in values)))
    norm = math.sqrt(sum(a * a for a in per_token))
    return [a / norm for a in per_token]


def _plain_loss(
    task: TaskSpec, teacher: nn.Module, student: nn.Module, rows: list[list[int]], labels: list[Any], o: dict[str, Any]
) -> dict[str, float]:
    alpha, beta, t = o["alpha"], o["beta"], o["temperature"]
    ce = kd = attr = 0.0
    tokens = sum(len(r) for r in rows)
    for row, label in zip(rows, labels):
        ids = torch.tensor([row])
        with torch.no_grad():
            s = student(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0].double().tolist()
            z = teacher(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0].double().tolist()
        if task.is_regression:
            ce += (s[0] - label) ** 2
            kd += (s[0] / t - z[0] / t) ** 2 * (t * t if o["kd_t_squared"] else 1.0)
            views = [(0, 1.0)]
        else:
            log_s = [x - math.log(sum(math.exp(y) for y in s)) for x in s]
            ce += -log_s[label]
            p_t = [math.exp(x / t) / sum(math.exp(y / t) for y in z) for x in z]
            q_s = [math.exp(x / t) / sum(math.exp(y / t) for y in s) for x in s]
            kd += sum(p * math.log(p / q) for p, q in zip(p_t, q_s)) * (t * t if o["kd_t_squared"] else 1.0)
            if o["views"] == "gold":
                views = [(label, 1.0)]
            elif len(s) == 2 and o["steps"] == 1:
                views = [(1, 1.0)]  # the two classes' maps are equal: one view
            else:
                views = [(c, 1.0 if len(s) > 2 else 0.5) for c in range(len(s))]
        for cls, weight in views:
            t_map = _plain_map(teacher, ids, cls, o["steps"], o["baseline"], o["top_k"])
            s_map = _plain_map(student, ids, cls, o["steps"], o["baseline"], None)
            for a, b in zip(t_map, s_map):
                d = a - b
                if o["distance"] == "l2":
                    attr += weight * d * d
                elif o["distance"] == "l1":
                    attr += weight * abs(d)
                else:
                    attr += weight * (0.5 * d * d if abs(d) < 1 else abs(d) - 0.5)
    n = len(rows)
    supervised = "mse" if task.is_regression else "ce"
    return {supervised: (1 - alpha) * ce / n, "kd": alpha * kd / n, "attr": beta * attr / tokens}


GOLDEN = [
    (
        THREE_CLASSES,
        dict(alpha=0.7, beta=3.0, temperature=2.0, views="all", distance="l2", top_k=20),
        dict(steps=2, baseline="pad"),
    ),
    (
        TWO_CLASSES,
        dict(alpha=0.5, beta=10.0, temperature=1.0, views="all", distance="smooth_l1", kd_t_squared=True),
        dict(steps=1, baseline="zero"),
    ),
    (
        TWO_CLASSES,
        dict(alpha=0.9, beta=1.0, temperature=3.0, views="all", distance="l2", top_k=8),
        dict(steps=2, baseline="zero"),
    ),
    (
        THREE_CLASSES,
        dict(alpha=0.2, beta=1.0, temperature=4.0, views="gold", distance="l1", top_k_fraction=0.5),
        dict(steps=1, baseline="zero"),
    ),
    (
        REGRESSION,
        dict(alpha=0.8, beta=1.0, temperature=3.0, views="all", distance="l2", top_k=16),
        dict(steps=1, baseline="pad"),
    ),
]


@pytest.mark.parametrize(
    ("task", "options", "ig"), GOLDEN, ids=["3cls-pad-m2", "2cls-smoothl1", "2cls-m2", "gold-l1", "regression"]
)
def test_golden_values_match_a_plain_implementation(
    task: TaskSpec, options: dict[str, Any], ig: dict[str, Any]
) -> None:
    classes = task.num_labels
    teacher = frozen(make_model("bert", num_labels=classes, eager=False, double=True))
    student = make_model("bert", num_labels=classes, seed=1, num_layers=1, double=True)
    labels = (0, 1, 1) if classes == 2 else (0, 2, 1)
    batch = make_batch(labels=labels)
    if task.is_regression:
        batch = Batch(batch.inputs, torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64))
    loss = ADKDLoss(ADKDOptions(**options), task)
    ctx, logits = student_context(task, student, teacher, batch, **ig)
    with torch.no_grad():
        signals = loss.teacher_signals(teacher, batch, ctx)
    terms = loss(batch, logits, signals, ctx)
    rows = [r[: int(m.sum())] for r, m in zip(batch.inputs["input_ids"].tolist(), batch.attention_mask)]
    plain_options = {"kd_t_squared": False, "top_k": None, **options, **ig}
    if options.get("top_k_fraction"):
        plain_options["top_k"] = round(options["top_k_fraction"] * 32)
    expected = _plain_loss(task, teacher, student, rows, batch.labels.tolist(), plain_options)
    assert set(terms) == set(expected)
    for name, value in expected.items():
        assert float(terms[name].detach()) == pytest.approx(value, rel=1e-6, abs=1e-9), name


# -- views ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("baseline", ["zero", "pad"])
def test_two_classes_have_one_map_at_one_step(baseline: str) -> None:
    """|IG_0| and |IG_1| differ by a positive factor per example at m = 1, so the normalised maps (with or
    without top-K) are equal, and `all` needs one view; at m > 1 they differ and both are used."""
    teacher = frozen(make_model("bert", num_labels=2, eager=False, double=True))
    student = make_model("bert", num_labels=2, seed=1, num_layers=1, double=True)
    batch = make_batch(labels=(0, 1, 1))
    mask = batch.attention_mask
    provider = IntegratedGradients(IGOptions(steps=1, baseline=baseline))  # type: ignore[arg-type]
    for model, top_k in ((teacher, 10), (student, None)):
        both = provider.attribute(model, batch.inputs, torch.tensor([[0, 1]] * 3), create_graph=model is student)
        maps = token_maps(both, mask, top_k=top_k)
        torch.testing.assert_close(maps[:, 0], maps[:, 1])
    # the loss with one view equals the loss over both views averaged, and half their sum
    loss = ADKDLoss(ADKDOptions(top_k=10), TWO_CLASSES)
    ctx, logits = student_context(TWO_CLASSES, student, teacher, batch, steps=1, baseline=baseline)
    with torch.no_grad():
        signals = loss.teacher_signals(teacher, batch, ctx)
    assert signals["attr_map"].shape[1] == 1
    one_view = float(loss(batch, logits, signals, ctx)["attr"].detach())
    s_maps = token_maps(provider.attribute(student, batch.inputs, torch.tensor([[0, 1]] * 3), create_graph=True), mask)
    t_maps = token_maps(provider.attribute(teacher, batch.inputs, torch.tensor([[0, 1]] * 3)), mask, top_k=10)
    per_view = (((t_maps - s_maps).pow(2) * mask[:, None]).sum(dim=(0, 2)) / mask.sum()).detach()
    assert one_view == pytest.approx(float(per_view.mean()), rel=1e-9)
    assert one_view == pytest.approx(float(per_view.sum()) / 2, rel=1e-9)
    # the same loss through the public option that computes both views
    both_views = ADKDLoss(ADKDOptions(top_k=10, binary_single_view=False), TWO_CLASSES)
    with torch.no_grad():
        signals_both = both_views.teacher_signals(teacher, batch, ctx)
    assert signals_both["attr_map"].shape[1] == 2
    assert float(both_views(batch, logits, signals_both, ctx)["attr"].detach()) == pytest.approx(one_view, rel=1e-9)
    # two path points: the two maps differ, so both views are kept
    maps2 = token_maps(
        IntegratedGradients(IGOptions(steps=2)).attribute(teacher, batch.inputs, torch.tensor([[0, 1]] * 3)), mask
    )
    assert not torch.allclose(maps2[:, 0], maps2[:, 1])
    with torch.no_grad():
        signals2 = loss.teacher_signals(
            teacher, batch, LossContext(TWO_CLASSES, student, teacher, provider_factory=provider_factory(steps=2))
        )
    assert signals2["attr_map"].shape[1] == 2


def test_both_binary_views_unless_every_provider_declares_them_equal() -> None:
    """``binary_views_equal()`` is declared on AttributionProvider (default False): a provider that does not
    override it gets both views, and so does a pair where only one side declares them equal."""

    class Plain(AttributionProvider):  # no override: the declared default
        name = "plain"

        def attribute(self, model, inputs, targets, *, create_graph=False, forward=None):  # type: ignore[no-untyped-def]
            raise AssertionError("views() does not attribute")

    assert Plain().binary_views_equal() is False
    own = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1])
    loss = ADKDLoss(ADKDOptions(), TWO_CLASSES)
    both, weights = loss.views(own, labels, own, Plain())
    assert both.tolist() == [[0, 1], [0, 1]] and weights.tolist() == [0.5, 0.5]
    one, _ = loss.views(own, labels, own, IntegratedGradients())
    assert one.tolist() == [[1], [0]]
    mixed, _ = loss.views(own, labels, own, IntegratedGradients(), other=Plain())
    assert mixed.tolist() == [[0, 1], [0, 1]]


def test_views_select_the_classes_explained() -> None:
    provider = IntegratedGradients()
    teacher_logits = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 0.5]])
    own = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    labels = torch.tensor([2, 1])
    every, w = ADKDLoss(ADKDOptions(views="all"), THREE_CLASSES).views(own, labels, teacher_logits, provider)
    assert every.tolist() == [[0, 1, 2], [0, 1, 2]] and w.tolist() == [1, 1, 1]
    gold, _ = ADKDLoss(ADKDOptions(views="gold"), THREE_CLASSES).views(own, labels, teacher_logits, provider)
    assert gold.tolist() == [[2], [1]]
    pred, _ = ADKDLoss(ADKDOptions(views="pred"), THREE_CLASSES).views(own, labels, teacher_logits, provider)
    assert pred.tolist() == [[1], [0]]
    binary, w2 = ADKDLoss(ADKDOptions(), TWO_CLASSES).views(own[:, :2], labels, teacher_logits[:, :2], provider)
    assert binary.tolist() == [[1], [0]] and w2.tolist() == [1.0]  # each model explains its least likely class
    two, w3 = ADKDLoss(ADKDOptions(), TWO_CLASSES).views(
        own[:, :2], labels, teacher_logits[:, :2], IntegratedGradients(IGOptions(steps=3))
    )
    assert two.tolist() == [[0, 1], [0, 1]] and w3.tolist() == [0.5, 0.5]
    regression, _ = ADKDLoss(ADKDOptions(views="gold"), REGRESSION).views(
        own[:, :1], labels.float(), own[:, :1], provider
    )
    assert regression.tolist() == [[0], [0]]


# -- gradients ----------------------------------------------------------------------------------------


def test_attribution_gradient_is_second_order_and_matches_finite_differences() -> None:
    torch.manual_seed(0)
    teacher = frozen(make_model("bert", num_labels=3, eager=False, double=True))
    student = make_model("bert", num_labels=3, seed=1, num_layers=1, double=True)
    batch = make_batch()
    loss = ADKDLoss(ADKDOptions(top_k=20), THREE_CLASSES)
    with torch.no_grad():
        signals = loss.teacher_signals(
            teacher, batch, LossContext(THREE_CLASSES, student, teacher, provider_factory=provider_factory())
        )

    def attribution_loss() -> Tensor:
        ctx, logits = student_context(THREE_CLASSES, student, teacher, batch)
        return loss(batch, logits, signals, ctx)["attr"]

    parameters = [p for p in student.parameters() if p.requires_grad]
    value = attribution_loss()
    grads = torch.autograd.grad(value, parameters, allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(parameters, grads)]
    names = [n for n, _ in student.named_parameters()]
    layer_norm = math.sqrt(sum(float(g.pow(2).sum()) for n, g in zip(names, grads) if ".layer." in n))
    assert layer_norm > 1e-6, "L_attr must reach the transformer layers"
    direction = [torch.randn_like(p) for p in parameters]
    scale = math.sqrt(sum(float(d.pow(2).sum()) for d in direction))
    direction = [d / scale for d in direction]
    analytic = sum(float((g * d).sum()) for g, d in zip(grads, direction))
    eps = 1e-5

    def shifted(sign: float) -> float:
        with torch.no_grad():
            for p, d in zip(parameters, direction):
                p.add_(sign * eps * d)
        try:
            return float(attribution_loss().detach())
        finally:
            with torch.no_grad():
                for p, d in zip(parameters, direction):
                    p.sub_(sign * eps * d)

    numeric = (shifted(1.0) - shifted(-1.0)) / (2 * eps)
    assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-9)
    # a first-order-only gradient (the student's input gradient detached) is wrong: the second-order part matters
    ctx, logits = student_context(THREE_CLASSES, student, teacher, batch)
    targets, weights = loss.views(logits, batch.labels, signals["logits"], ctx.provider("ig"))
    assert ctx.student_forward is not None
    e = ctx.student_forward.embeddings
    scores = torch.log_softmax(logits, -1).gather(1, targets)
    first = torch.stack([torch.autograd.grad(scores[:, v].sum(), e, retain_graph=True)[0] for v in range(3)], 1)
    detached = token_maps(e.unsqueeze(1) * first * batch.attention_mask[:, None, :, None], batch.attention_mask)
    from kdkit_adkd.maps import map_distance

    wrong = map_distance(signals["attr_map"], detached, batch.attention_mask, view_weights=weights)
    wrong_grads = torch.autograd.grad(wrong, parameters, allow_unused=True)
    wrong_analytic = sum(float((g * d).sum()) for g, d in zip(wrong_grads, direction) if g is not None)
    assert abs(wrong_analytic - numeric) > 1e-3 * abs(numeric)


# -- options, presets, ablations, cache key -----------------------------------------------------------


def test_options_are_validated_with_one_line_errors(adkd_manager: Any) -> None:
    from kdkit.config import DataConfig, DistillConfig

    def resolve(**adkd: Any) -> Any:
        config = DistillConfig(loss="adkd", data=DataConfig(task="sst2"), options={"adkd": adkd})
        return resolve_options(adkd_manager, config)

    assert resolve()["adkd"].beta == 1.0
    for bad, message in [
        ({"beta": -1}, "adkd.beta"),
        ({"alpha": 1.5}, "adkd.alpha"),
        ({"temperature": 0}, "adkd.temperature"),
        ({"top_k": 0}, "adkd.top_k"),
        ({"views": "some"}, "adkd.views"),
        ({"distance": "cosine"}, "adkd.distance"),
        ({"ablation": "no_teacher"}, "adkd.ablation"),
        ({"steps": 2}, "unknown option adkd.steps"),
    ]:
        with pytest.raises(ConfigError, match=message):
            resolve(**bad)
    config = DistillConfig(loss="adkd", data=DataConfig(task="sst2"), options={"ig": {"steps": 0}})
    with pytest.raises(ConfigError, match="ig.steps"):
        resolve_options(adkd_manager, config)


@pytest.mark.parametrize(
    ("ablation", "expected"),
    [("none", {"ce", "kd", "attr"}), ("no_attr", {"ce", "kd"}), ("no_ce", {"kd", "attr"}), ("no_kd", {"ce", "attr"})],
)
def test_ablations_drop_one_term(ablation: str, expected: set[str]) -> None:
    teacher = frozen(make_model("bert", eager=False))
    student = make_model("bert", seed=1, num_layers=1)
    batch = make_batch()
    loss = ADKDLoss(ADKDOptions(ablation=ablation), THREE_CLASSES)  # type: ignore[arg-type]
    ctx, logits = student_context(THREE_CLASSES, student, teacher, batch)
    with torch.no_grad():
        signals = loss.teacher_signals(teacher, batch, ctx)
    assert set(loss(batch, logits, signals, ctx)) == expected
    if ablation == "no_attr":
        assert set(signals) == {"logits"} and loss.teacher_signal_key() == "logits" and loss.providers_used() == []
    beta_zero = ADKDLoss(ADKDOptions(beta=0), THREE_CLASSES)
    assert not beta_zero.uses_attribution and beta_zero.teacher_signal_key() == "logits"


def test_the_paper_preset_gives_the_papers_values_beneath_user_options(adkd_manager: Any) -> None:
    config = api.resolve_distill_config({"loss": "adkd", "preset": "paper", "data": {"task": "cola"}}, adkd_manager)
    assert config.options["adkd"] == {
        "alpha": 0.9,
        "beta": 1.0,
        "temperature": 1.0,
        "anneal": False,
        "views": "all",
        "top_k_fraction": None,
    }
    assert config.options["ig"] == {"steps": 1}
    assert (config.training.learning_rate, config.training.batch_size, config.training.epochs) == (4e-5, 32, 10)
    config = api.resolve_distill_config(
        {"loss": "adkd", "preset": "paper", "data": {"task": "stsb"}, "options": {"adkd": {"beta": 5}}}, adkd_manager
    )
    assert config.options["adkd"]["beta"] == 5  # the user's value wins
    assert config.options["adkd"]["top_k_fraction"] == pytest.approx(640 / 768, abs=1e-6)
    options = resolve_options(adkd_manager, config)
    assert options["adkd"].temperature == 3.0
    with pytest.raises(ConfigError, match="no hyper-parameters for task 'wnli'"):
        api.resolve_distill_config({"loss": "adkd", "preset": "paper", "data": {"task": "wnli"}}, adkd_manager)


def test_the_cache_key_covers_every_option_the_teacher_maps_depend_on() -> None:
    from datasets import Dataset

    from kdkit.training.teacher_cache import cache_key

    teacher = frozen(make_model("bert", eager=False))
    data = Dataset.from_dict({"input_ids": [[2, 10, 3]], "attention_mask": [[1, 1, 1]], "labels": [0]})

    def key(ig: dict[str, Any] | None = None, **adkd: Any) -> str:
        ctx = LossContext(THREE_CLASSES, teacher, teacher, provider_factory=provider_factory(**(ig or {})))
        return cache_key(teacher, data, ADKDLoss(ADKDOptions(**adkd), THREE_CLASSES), ctx)

    base = key()
    assert key(ig={"batch_size": 3}) == base
    assert key(alpha=0.1, beta=5, temperature=7, distance="l1") == base  # the student side only
    changed = [
        key(ig={"steps": 2}),
        key(ig={"baseline": "pad"}),
        key(top_k=5),
        key(top_k_fraction=0.5),
        key(views="gold"),
        key(views="pred"),
        key(eps=1e-6),
        key(beta=0),
        key(binary_single_view=False),
    ]
    assert len({base, *changed}) == len(changed) + 1
