"""Plugin discovery through real entry points, isolation of broken plugins, enabling and disabling."""

from __future__ import annotations

import importlib
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from kdkit.errors import PluginError
from kdkit.plugins.manager import PluginManager

GOOD_PLUGIN = """
from pydantic import BaseModel
from kdkit.plugin_api import AttributionProvider, DistillationLoss, LossNeeds, hookimpl, task_loss


class HalfOptions(BaseModel):
    scale: float = 0.5


class HalfCE(DistillationLoss):
    name = "half_ce"
    Options = HalfOptions
    needs = LossNeeds(teacher=False)

    def __call__(self, batch, student_logits, teacher_signals, ctx):
        return {"ce": self.options.scale * task_loss(self.task, student_logits, batch.labels)}


class Uniform(AttributionProvider):
    name = "uniform"

    def attribute(self, model, inputs, targets, *, create_graph=False, forward=None):
        mask = inputs["attention_mask"].float()
        return mask[:, None, :, None].expand(-1, targets.shape[1], -1, 1)


@hookimpl
def kdkit_losses():
    return [HalfCE]


@hookimpl
def kdkit_attribution_providers():
    return [Uniform]
"""


def install_fake_distribution(root: Path, dist: str, plugins: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Write modules and a ``<dist>-1.0.dist-info`` with ``kdkit`` entry points, and put root on sys.path."""
    info = root / f"{dist}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = ["[kdkit]"]
    for module, source in plugins.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))
        lines.append(f"{module} = {module}")
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    monkeypatch.syspath_prepend(str(root))


def test_builtin_plugin_provides_ce_kd_hidden_and_attention(plugin_manager: PluginManager):
    assert set(plugin_manager.losses) == {"ce", "kd", "hidden", "attention"}
    [builtin] = plugin_manager.plugins()
    assert (builtin.name, builtin.source) == ("builtin", "built-in")


def test_entry_point_plugin_is_discovered_with_its_distribution(tmp_path, monkeypatch):
    install_fake_distribution(tmp_path, "kdkit-fake", {"fake_kdkit_good": GOOD_PLUGIN}, monkeypatch)
    manager = PluginManager()
    assert "half_ce" in manager.losses and "uniform" in manager.providers
    info = {p.name: p for p in manager.plugins()}["fake_kdkit_good"]
    assert info.source == "kdkit-fake 1.0"
    assert [c.name for c in info.losses] == ["half_ce"]
    assert manager.failures == []


#: the start of a fake plugin module: its hook marker
HOOKIMPL = "from kdkit.plugin_api import hookimpl\n\n@hookimpl\n"


def test_broken_plugins_are_reported_and_the_others_keep_working(tmp_path, monkeypatch):
    install_fake_distribution(
        tmp_path,
        "kdkit-mixed",
        {
            "fake_kdkit_ok": GOOD_PLUGIN,
            "fake_kdkit_import": "import this_module_does_not_exist\n",
            "fake_kdkit_signature": HOOKIMPL + "def kdkit_losses(unexpected_argument):\n    return []\n",
            "fake_kdkit_unknown": HOOKIMPL + "def kdkit_lossez():\n    return []\n",
            "fake_kdkit_raises": HOOKIMPL + "def kdkit_losses():\n    raise RuntimeError('boom')\n",
            "fake_kdkit_wrong_type": HOOKIMPL + "def kdkit_losses():\n    return [42]\n",
        },
        monkeypatch,
    )
    manager = PluginManager()
    failures = {f.name: f.error for f in manager.failures}
    assert "this_module_does_not_exist" in failures["fake_kdkit_import"]
    assert "unexpected_argument" in failures["fake_kdkit_signature"]
    assert "kdkit_lossez" in failures["fake_kdkit_unknown"]
    assert "boom" in failures["fake_kdkit_raises"]
    assert "not a DistillationLoss subclass" in failures["fake_kdkit_wrong_type"]
    assert {"ce", "kd", "half_ce"} <= set(manager.losses)
    assert all(f.source == "kdkit-mixed 1.0" for f in manager.failures)


def test_duplicate_component_names_are_refused(tmp_path, monkeypatch):
    clash = GOOD_PLUGIN.replace('name = "half_ce"', 'name = "kd"')
    install_fake_distribution(tmp_path, "kdkit-clash", {"fake_kdkit_clash": clash}, monkeypatch)
    manager = PluginManager()
    [failure] = manager.failures
    assert "'kd' is already provided by plugin 'builtin'" in failure.error
    assert manager.losses["kd"].__module__ == "kdkit.losses.kd"


def test_autoload_can_be_disabled_and_single_plugins_enabled(tmp_path, monkeypatch):
    install_fake_distribution(tmp_path, "kdkit-fake", {"fake_kdkit_good": GOOD_PLUGIN}, monkeypatch)
    monkeypatch.setenv("KDKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert "half_ce" not in PluginManager().losses
    assert "half_ce" in PluginManager(enable=["fake_kdkit_good"]).losses
    monkeypatch.setenv("KDKIT_PLUGINS", "fake_kdkit_good")
    assert "half_ce" in PluginManager().losses


def test_plugins_can_be_disabled_by_name(tmp_path, monkeypatch):
    install_fake_distribution(tmp_path, "kdkit-fake", {"fake_kdkit_good": GOOD_PLUGIN}, monkeypatch)
    assert "half_ce" not in PluginManager(disable=["fake_kdkit_good"]).losses
    monkeypatch.setenv("KDKIT_DISABLE_PLUGINS", "fake_kdkit_good")
    manager = PluginManager()
    assert "half_ce" not in manager.losses
    with pytest.raises(PluginError, match="unknown plugin loss 'half_ce'"):
        manager.loss("half_ce")


def test_unknown_loss_and_provider_name_the_known_ones(plugin_manager: PluginManager):
    with pytest.raises(PluginError, match="unknown plugin loss 'kdd'.*attention, ce, hidden, kd"):
        plugin_manager.loss("kdd")
    with pytest.raises(PluginError, match="unknown attribution provider 'ig'"):
        plugin_manager.provider("ig")


def test_in_process_plugins_can_be_registered(plugin_manager: PluginManager, tmp_path, monkeypatch):
    (tmp_path / "inproc_plugin.py").write_text(GOOD_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    import inproc_plugin  # type: ignore[import-not-found]

    manager = PluginManager(autoload=False, extra_plugins={"mine": inproc_plugin})
    assert manager.loss("half_ce").Options().model_dump() == {"scale": 0.5}
    assert {p.name: p.source for p in manager.plugins()}["mine"] == "registered in-process"


#: GOOD_PLUGIN as written since the base classes are generic in their options (``self.options`` typed)
TYPED_PLUGIN = (
    GOOD_PLUGIN.replace("class HalfCE(DistillationLoss):", "class HalfCE(DistillationLoss[HalfOptions]):")
    .replace("class Uniform(AttributionProvider):", "class Uniform(AttributionProvider[NoOptions]):")
    .replace("import AttributionProvider,", "import AttributionProvider, NoOptions,")
)


@pytest.mark.parametrize(("module_name", "source"), [("untyped_plugin", GOOD_PLUGIN), ("typed_plugin", TYPED_PLUGIN)])
def test_components_work_with_or_without_the_options_type_parameter(module_name, source, tmp_path, monkeypatch):
    """Plugins written without ``[Options]`` (before the base classes were generic) keep working; typed ones
    behave the same."""
    from kdkit.attribution.base import NoOptions
    from kdkit.testing import BINARY_TASK, check_attribution_provider, check_loss

    assert ("[HalfOptions]" in source) == (module_name == "typed_plugin")
    (tmp_path / f"{module_name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    manager = PluginManager(autoload=False, extra_plugins={"mine": importlib.import_module(module_name)})
    loss_cls = manager.loss("half_ce")
    assert loss_cls(loss_cls.Options(scale=0.25), BINARY_TASK).options.scale == 0.25
    report = check_loss(loss_cls, {"scale": 0.25}, tasks=(BINARY_TASK,), plugins=manager)
    assert "tiny: gradients reach the student" in report.checks
    provider = manager.provider("uniform")()
    assert provider.options == NoOptions() and provider.binary_views_equal() is False
    check_attribution_provider(manager.provider("uniform"), regression=False)


# -- enabling and disabling by name from the command line; where each plugin came from ---------------------


def _listing(*args: str) -> dict[str, Any]:
    from typer.testing import CliRunner

    from kdkit.cli import app

    result = CliRunner().invoke(app, [*args, "plugins", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _plugins(listing: dict[str, Any]) -> dict[str, str]:
    return {row["plugin"]: row["source"] for row in listing["components"]}


def test_cli_lists_each_plugin_with_its_source(tmp_path, monkeypatch):
    install_fake_distribution(tmp_path, "kdkit-fake", {"fake_kdkit_good": GOOD_PLUGIN}, monkeypatch)
    listing = _listing()
    sources = _plugins(listing)
    assert sources["builtin"] == "built-in" and sources["fake_kdkit_good"] == "kdkit-fake 1.0"
    uniform = next(row for row in listing["components"] if row["name"] == "uniform")
    assert (uniform["kind"], uniform["differentiable"]) == ("attribution provider", False)
    assert listing["disabled"] == [] and listing["autoload"] is True

    from typer.testing import CliRunner

    from kdkit.cli import app

    monkeypatch.setenv("COLUMNS", "200")  # rich reads the width when printing
    table = CliRunner().invoke(app, ["plugins"])
    assert table.exit_code == 0
    assert "kdkit-fake 1.0" in table.stdout and "built-in" in table.stdout
    monkeypatch.setenv("KDKIT_PLUGINS", "inproc_module_plugin")
    (tmp_path / "inproc_module_plugin.py").write_text(
        GOOD_PLUGIN.replace('"half_ce"', '"half_ce2"').replace('"uniform"', '"uniform2"')
    )
    assert _plugins(_listing())["inproc_module_plugin"] == "module inproc_module_plugin"


def test_cli_disables_plugins_by_name_with_the_option_or_the_environment(tmp_path, monkeypatch):
    install_fake_distribution(tmp_path, "kdkit-fake", {"fake_kdkit_good": GOOD_PLUGIN}, monkeypatch)
    listing = _listing("--disable-plugin", "fake_kdkit_good")
    assert "fake_kdkit_good" not in _plugins(listing) and listing["disabled"] == ["fake_kdkit_good"]
    monkeypatch.setenv("KDKIT_DISABLE_PLUGINS", "fake_kdkit_good, builtin")
    listing = _listing()
    assert not {"builtin", "fake_kdkit_good"} & set(_plugins(listing))
    assert listing["disabled"] == ["builtin", "fake_kdkit_good"]

    from typer.testing import CliRunner

    from kdkit.cli import app

    monkeypatch.setenv("COLUMNS", "200")
    table = CliRunner().invoke(app, ["plugins"])
    assert "disabled: builtin, fake_kdkit_good" in table.stdout


def test_cli_enables_plugins_by_name_when_autoloading_is_off(tmp_path, monkeypatch):
    install_fake_distribution(tmp_path, "kdkit-fake", {"fake_kdkit_good": GOOD_PLUGIN}, monkeypatch)
    monkeypatch.setenv("KDKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
    listing = _listing()
    assert "fake_kdkit_good" not in _plugins(listing) and listing["autoload"] is False
    assert _plugins(_listing("--enable-plugin", "fake_kdkit_good"))["fake_kdkit_good"] == "kdkit-fake 1.0"
    monkeypatch.setenv("KDKIT_PLUGINS", "fake_kdkit_good")
    assert "fake_kdkit_good" in _plugins(_listing())
    assert "fake_kdkit_good" not in _plugins(_listing("--disable-plugin", "fake_kdkit_good"))  # disabling wins


def test_component_rows_are_typed_and_print_as_the_json_listing(tmp_path, monkeypatch):
    import types

    from kdkit.plugins.listing import OptionRow, component_rows
    from kdkit.plugins.manager import ComponentKind

    (tmp_path / "rows_plugin.py").write_text(GOOD_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    import rows_plugin  # type: ignore[import-not-found]

    empty = types.ModuleType("empty")
    manager = PluginManager(autoload=False, extra_plugins={"mine": rows_plugin, "empty": empty})
    rows = {(row.plugin, row.name): row for row in component_rows(manager)}
    half, uniform = rows["mine", "half_ce"], rows["mine", "uniform"]
    assert (half.kind, half.presets, half.differentiable) == (ComponentKind.LOSS, [], None)
    assert half.options == {"scale": OptionRow(type="float", default=0.5, description="")}
    assert (uniform.kind, uniform.differentiable, uniform.presets) == (ComponentKind.PROVIDER, False, None)
    assert half.to_dict() == {
        "plugin": "mine",
        "source": "registered in-process",
        "kind": "loss",
        "name": "half_ce",
        "description": "",
        "options": {"scale": {"type": "float", "default": 0.5, "description": ""}},
        "presets": [],
    }
    assert "presets" not in uniform.to_dict() and uniform.to_dict()["differentiable"] is False
    assert rows["empty", "-"].to_dict() == {
        "plugin": "empty",
        "source": "registered in-process",
        "kind": "-",
        "name": "-",
        "options": {},
    }
