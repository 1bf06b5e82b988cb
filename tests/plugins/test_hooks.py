"""Every hook spec is documented in docs/plugins.md and exercised by a test named ``test_hook_<name>``
(datasette's convention); the documented examples run and their components pass the conformance checks."""

from __future__ import annotations

import ast
import inspect
import re
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import BaseModel
from torch import Tensor, nn

from kdkit import hookspecs
from kdkit.attribution.base import AttributionProvider, EmbeddingForward
from kdkit.data.augmentation import Augmenter
from kdkit.data.augmenters import MaskAugmenter, NeighbourAugmenter, SwapAugmenter
from kdkit.losses.attention import AttentionLoss
from kdkit.losses.base import DistillationLoss, LossNeeds
from kdkit.losses.formulas import task_loss
from kdkit.losses.hidden import HiddenStateLoss
from kdkit.losses.kd import CrossEntropy, VanillaKD
from kdkit.plugin_api import hookimpl
from kdkit.plugins.manager import PluginManager
from kdkit.testing import BINARY_TASK, check_attribution_provider, check_augmenter, check_loss

REPO = Path(__file__).resolve().parents[2]
PLUGINS_DOC = REPO / "docs" / "plugins.md"

HOOKS = sorted(name for name, value in vars(hookspecs).items() if hasattr(value, f"{hookspecs.PROJECT_NAME}_spec"))


def _sections(text: str) -> dict[str, str]:
    """``## heading`` -> the section's text (up to the next ``## ``)."""
    parts = re.split(r"^## (.+?)\s*$", text, flags=re.MULTILINE)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def _test_names() -> set[str]:
    names: set[str] = set()
    for path in (REPO / "tests").rglob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_"):
                names.add(node.name)
    return names


def test_the_hook_specs_are_found() -> None:
    assert HOOKS == ["kdkit_attribution_providers", "kdkit_augmenters", "kdkit_losses"]


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_spec_has_a_section_in_docs_plugins_md(hook: str) -> None:
    sections = _sections(PLUGINS_DOC.read_text())
    assert hook in sections, f"docs/plugins.md has no '## {hook}' section"
    section = sections[hook]
    for part in ("**Purpose.**", "**Signature.**", "**When it is called.**", "**The component.**", "**Example.**"):
        assert part in section, f"the '## {hook}' section of docs/plugins.md lacks {part}"
    assert f"`{hook}()" in section and "```python" in section


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_spec_docstring_is_short_and_points_to_its_section(hook: str) -> None:
    """The contract is written once, in docs/plugins.md; the spec's docstring says what the hook returns and where
    to read the rest (as pluggy's and datasette's specs do)."""
    doc = inspect.getdoc(getattr(hookspecs, hook)) or ""
    assert len(doc.splitlines()) <= 4, f"the docstring of {hook} repeats the contract: point to docs/plugins.md"
    assert f'docs/plugins.md, "{hook}"' in doc, f"the docstring of {hook} does not point to its docs/plugins.md section"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_spec_has_a_test(hook: str) -> None:
    assert f"test_hook_{hook}" in _test_names(), f"no test named test_hook_{hook} under tests/"


@pytest.mark.parametrize(
    ("hook", "base"),
    [
        ("kdkit_losses", DistillationLoss),
        ("kdkit_attribution_providers", AttributionProvider),
        ("kdkit_augmenters", Augmenter),
    ],
)
def test_the_docs_describe_every_attribute_of_the_component(hook: str, base: type) -> None:
    """Each public class attribute and method of the component's base class is named in the hook's section."""
    section = _sections(PLUGINS_DOC.read_text())[hook]
    public = {name for name in vars(base) if not name.startswith("_")} | {"name"}
    if base is DistillationLoss:
        public.add("__call__")
    missing = sorted(name for name in public if f"`{name}" not in section)
    assert not missing, f"the '## {hook}' section of docs/plugins.md does not describe {missing}"


def _overridable(base: type) -> set[str]:
    """The methods and properties a base class declares for its subclasses (``__call__`` included)."""
    return {
        name
        for name, value in vars(base).items()
        if (inspect.isfunction(value) or isinstance(value, property)) and (name == "__call__" or name[0] != "_")
    }


def test_the_base_classes_declare_the_protocol_kdkit_relies_on() -> None:
    assert "binary_views_equal" in _overridable(AttributionProvider)
    assert AttributionProvider.binary_views_equal(_Uniform()) is False  # the declared default


@pytest.mark.parametrize("base", [DistillationLoss, AttributionProvider, Augmenter])
def test_every_overridable_method_is_in_the_override_table_of_docs_plugins_md(base: type) -> None:
    """docs/plugins.md's 'What a plugin may override' has a table per base class listing exactly its methods."""
    section = _sections(PLUGINS_DOC.read_text())["What a plugin may override"]
    table = section.split(f"### `{base.__name__}`")[1].split("###")[0]
    rows = re.findall(r"^\| `(\w+)", table, flags=re.MULTILINE)
    assert rows, f"no table for {base.__name__}"
    for row in re.findall(r"^\| `.+$", table, flags=re.MULTILINE):
        assert row.count(" | ") == 2, f"a row of the {base.__name__} table lacks its default or its use: {row}"
    assert sorted(rows) == sorted(_overridable(base)), f"the {base.__name__} table of docs/plugins.md is stale"


# -- the hooks, called through a plugin manager --------------------------------------------------------


class _HalfCE(DistillationLoss):
    name = "half_ce"
    description = "half the task loss"
    needs = LossNeeds(teacher=False)

    def __call__(self, batch: Any, student_logits: Tensor, teacher_signals: Any, ctx: Any) -> dict[str, Tensor]:
        return {"ce": 0.5 * task_loss(self.task, student_logits, batch.labels)}


class _Uniform(AttributionProvider):
    name = "uniform"

    def attribute(
        self,
        model: nn.Module,
        inputs: dict[str, Tensor],
        targets: Tensor,
        *,
        create_graph: bool = False,
        forward: EmbeddingForward | None = None,
    ) -> Tensor:
        mask = inputs["attention_mask"].float()
        return mask[:, None, :, None].expand(-1, targets.shape[1], -1, 1).clone()


def _plugin(**hooks: Any) -> types.ModuleType:
    module = types.ModuleType("hook_test_plugin")
    for name, function in hooks.items():
        setattr(module, name, hookimpl(function))
    return module


def test_hook_kdkit_losses() -> None:
    plugin = _plugin(kdkit_losses=lambda: [_HalfCE])
    manager = PluginManager(autoload=False, extra_plugins={"mine": plugin})
    # pluggy calls every implementation (the last registered first) and returns their lists
    results = manager.hooks.hook.kdkit_losses()
    assert results == [[_HalfCE], [CrossEntropy, VanillaKD, HiddenStateLoss, AttentionLoss]]
    # kdkit collects them per plugin, with their owner
    assert manager.loss("half_ce") is _HalfCE
    info = {p.name: p for p in manager.plugins()}["mine"]
    assert info.losses == [_HalfCE] and info.providers == [] and info.source == "registered in-process"
    check_loss(_HalfCE, tasks=(BINARY_TASK,))


def test_hook_kdkit_attribution_providers() -> None:
    plugin = _plugin(kdkit_attribution_providers=lambda: (_Uniform,))
    manager = PluginManager(autoload=False, extra_plugins={"mine": plugin})
    results = manager.hooks.hook.kdkit_attribution_providers()
    assert results == [(_Uniform,), []]  # the built-in plugin provides none
    assert manager.provider("uniform") is _Uniform
    assert {p.name: p for p in manager.plugins()}["mine"].providers == [_Uniform]
    check_attribution_provider(_Uniform, regression=False)


class _Shout(Augmenter):
    name = "shout"

    def augment(self, text: str, copies: int, rng: Any) -> list[str]:
        words = text.split()
        return [" ".join(w.upper() if rng.random() < 0.5 else w for w in words) or text for _ in range(copies)]


def test_hook_kdkit_augmenters() -> None:
    plugin = _plugin(kdkit_augmenters=lambda: [_Shout])
    manager = PluginManager(autoload=False, extra_plugins={"mine": plugin})
    results = manager.hooks.hook.kdkit_augmenters()
    assert results == [[_Shout], [MaskAugmenter, SwapAugmenter, NeighbourAugmenter]]
    assert manager.augmenter("shout") is _Shout
    assert {p.name: p for p in manager.plugins()}["mine"].augmenters == [_Shout]
    check_augmenter(_Shout)


@pytest.mark.parametrize(
    ("returned", "error"),
    [
        (lambda: [int], "is not a DistillationLoss subclass"),
        (lambda: "half_ce", "expected a list"),
        (lambda: 1 / 0, "division by zero"),
    ],
)
def test_hook_kdkit_losses_bad_returns_leave_the_plugin_out(returned: Any, error: str) -> None:
    manager = PluginManager(autoload=False, extra_plugins={"bad": _plugin(kdkit_losses=returned)})
    [failure] = manager.failures
    assert failure.name == "bad" and error in failure.error
    assert set(manager.losses) == {"ce", "kd", "hidden", "attention"}


# -- the documented examples run, and their components conform ---------------------------------------------


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


@contextmanager
def _module(name: str, source: str) -> Iterator[types.ModuleType]:
    module = types.ModuleType(name)
    sys.modules[name] = module  # pydantic resolves annotations through the module
    try:
        exec(compile(source, f"docs/plugins.md ({name})", "exec"), module.__dict__)
        yield module
    finally:
        sys.modules.pop(name, None)


@pytest.mark.parametrize("hook", HOOKS)
def test_the_example_of_each_hook_runs_and_conforms(hook: str) -> None:
    blocks = _python_blocks(_sections(PLUGINS_DOC.read_text())[hook])
    assert len(blocks) == 1, f"expected one python example in '## {hook}'"
    with _module(f"docs_example_{hook}", blocks[0]) as module:
        assert hasattr(getattr(module, hook), f"{hookspecs.PROJECT_NAME}_impl"), (
            f"the example defines no @hookimpl {hook}"
        )
        manager = PluginManager(autoload=False, extra_plugins={"example": module})
        assert manager.failures == []
        info = {p.name: p for p in manager.plugins()}["example"]
        components = {"kdkit_losses": info.losses, "kdkit_augmenters": info.augmenters}.get(hook, info.providers)
        assert components, f"the example of {hook} contributes nothing"
        for component in components:
            if issubclass(component, Augmenter):
                check_augmenter(component)
            elif issubclass(component, DistillationLoss):
                check_loss(component)
            else:
                check_attribution_provider(component, architectures=("bert", "distilbert"))
                assert isinstance(component.Options(), BaseModel)


def test_the_doc_example_loss_trains_in_a_real_run(tmp_path: Path) -> None:
    from kdkit.testing import run_distillation_steps

    block = _python_blocks(_sections(PLUGINS_DOC.read_text())["kdkit_losses"])[0]
    with _module("docs_example_run", block) as module:
        result = run_distillation_steps(
            module, loss="logit_mse", options={"logit_mse": {"alpha": 0.9}}, steps=2, directory=tmp_path
        )
    assert all({"loss_ce", "loss_logit_mse"} <= set(entry) for entry in result.summary["train_log"])
    assert torch.isfinite(torch.tensor(result.summary["train"]["final_loss"]))


def test_the_intermediate_layer_example_conforms_and_trains_with_kd(tmp_path: Path) -> None:
    """docs/plugins.md's third-party loss asking for hidden states: conformance, then a composite run."""
    from kdkit.testing import run_distillation_steps

    [block] = _python_blocks(_sections(PLUGINS_DOC.read_text())["Intermediate layers: hidden states and attentions"])
    with _module("docs_example_relations", block) as module:
        report = check_loss(module.TokenRelations, {"weight": 2.0})
        assert any("live teacher signals ['relations']" in line for line in report.checks)
        result = run_distillation_steps(module, loss="kd+token_relations", steps=2, directory=tmp_path)
    assert all({"loss_ce", "loss_kd", "loss_relations"} <= set(e) for e in result.summary["train_log"] if "loss" in e)
    assert all(record["relations"] > 0 for record in result.summary["term_grad_norms"])
