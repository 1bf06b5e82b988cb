"""Config models, files, --set parsing and precedence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kdkit import api
from kdkit.cli.flags import parse_set_options, read_config_file
from kdkit.config import DataConfig, DistillConfig, StudentSpec, build_config, deep_merge
from kdkit.errors import ConfigError
from kdkit.plugins.manager import PluginManager
from kdkit.plugins.options import resolve_options


def test_set_options_are_parsed_as_yaml_scalars():
    parsed = parse_set_options(["kd.temperature=2", "kd.alpha=0.25", "adkd.views=all", "x.flag=true"])
    assert parsed == {"kd": {"temperature": 2, "alpha": 0.25}, "adkd": {"views": "all"}, "x": {"flag": True}}


@pytest.mark.parametrize("bad", ["temperature=2", "kd.temperature", ".x=1", "kd.=1"])
def test_malformed_set_option_is_a_clear_error(bad):
    with pytest.raises(ConfigError, match="COMPONENT.OPTION=VALUE"):
        parse_set_options([bad])


@pytest.mark.parametrize("suffix", [".yaml", ".toml", ".json"])
def test_config_files_in_three_formats(tmp_path: Path, suffix: str):
    data = {"loss": "kd", "data": {"task": "sst2", "max_length": 64}, "options": {"kd": {"alpha": 0.9}}}
    path = tmp_path / f"run{suffix}"
    if suffix == ".yaml":
        import yaml

        path.write_text(yaml.safe_dump(data))
    elif suffix == ".json":
        path.write_text(json.dumps(data))
    else:
        path.write_text('loss = "kd"\n[data]\ntask = "sst2"\nmax_length = 64\n[options.kd]\nalpha = 0.9\n')
    assert read_config_file(path) == data


def test_unparseable_config_file(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="cannot parse config file"):
        read_config_file(path)


def test_unknown_option_lists_the_valid_ones():
    with pytest.raises(ConfigError) as info:
        build_config(DistillConfig, {"data": {"task": "sst2", "max_lenght": 10}})
    message = str(info.value)
    assert "unknown option data.max_lenght" in message
    assert "max_length (int, default 128)" in message
    assert "\n" not in message


def test_ill_typed_option_names_the_value():
    with pytest.raises(ConfigError, match="bad value 'many' for training.epochs"):
        build_config(DistillConfig, {"training": {"epochs": "many"}})


def test_plugin_options_are_validated_against_the_plugin(plugin_manager: PluginManager):
    config = DistillConfig(options={"kd": {"temperature": 0}})
    with pytest.raises(ConfigError, match=r"kd.temperature.*greater than 0.*alpha \(float, default 0.5\)"):
        resolve_options(plugin_manager, config)
    with pytest.raises(ConfigError, match=r"unknown option kd.temprature"):
        resolve_options(plugin_manager, DistillConfig(options={"kd": {"temprature": 1}}))
    with pytest.raises(ConfigError, match="unknown component 'kdd'.*known components: attention, ce, hidden, kd"):
        resolve_options(plugin_manager, DistillConfig(options={"kdd": {"alpha": 1}}))
    resolved = resolve_options(plugin_manager, DistillConfig(options={"kd": {"alpha": 1, "temperature": 4}}))
    assert resolved["kd"].model_dump() == {"alpha": 1.0, "temperature": 4.0, "anneal": False}


def test_deep_merge_keeps_untouched_keys():
    assert deep_merge({"a": {"b": 1, "c": 2}, "d": 3}, {"a": {"b": 5}}) == {"a": {"b": 5, "c": 2}, "d": 3}


def test_text_columns_accept_a_comma_separated_string():
    assert DataConfig(text_columns="premise, hypothesis").text_columns == ["premise", "hypothesis"]  # type: ignore[arg-type]


class _PresetPlugin:
    from kdkit.hookspecs import hookimpl

    @staticmethod
    @hookimpl
    def kdkit_losses():  # type: ignore[no-untyped-def]
        from kdkit.losses.kd import VanillaKD

        class PresetKD(VanillaKD):
            name = "presetkd"
            presets = {
                "fast": lambda task: {
                    "options": {"presetkd": {"alpha": 0.9, "temperature": 3.0}},
                    "training": {"learning_rate": 1e-4, "batch_size": 8},
                }
            }

        return [PresetKD]


def test_precedence_preset_below_file_below_flags():
    manager = PluginManager(autoload=False, extra_plugins={"preset": _PresetPlugin()})
    raw = {
        "loss": "presetkd",
        "preset": "fast",
        "data": {"task": "sst2"},
        "training": {"batch_size": 16},  # the user's value beats the preset's
        "options": {"presetkd": {"temperature": 1.0}},
    }
    config = api.resolve_distill_config(raw, manager)
    assert config.training.batch_size == 16
    assert config.training.learning_rate == 1e-4
    assert config.options["presetkd"] == {"alpha": 0.9, "temperature": 1.0}
    with pytest.raises(ConfigError, match="has no preset 'slow'.*available presets: fast"):
        api.resolve_distill_config({**raw, "preset": "slow"}, manager)


@pytest.mark.parametrize("spec", ["copy:x", "copy:0", "copy:", "copy:-1", "copy:2.5", " "])
def test_a_bad_student_fails_when_the_config_is_read(spec: str):
    with pytest.raises(ConfigError, match=r"bad student .*copy:N") as info:
        build_config(DistillConfig, {"student": spec})
    assert "\n" not in str(info.value)


def test_the_student_is_parsed_once_and_written_back_as_given():
    config = build_config(DistillConfig, {"student": " copy:2 "})
    assert config.student == StudentSpec(layers=2) and str(config.student) == "copy:2"
    assert config.model_dump(mode="json")["student"] == "copy:2"
    assert build_config(DistillConfig, config.model_dump(mode="json")) == config
    assert DistillConfig().student == StudentSpec(layers=3)
    model = DistillConfig(student="prajjwal1/bert-tiny").student
    assert (model.layers, model.model, str(model)) == (None, "prajjwal1/bert-tiny", "prajjwal1/bert-tiny")


def test_throughput_options_reach_their_config_fields():
    raw = {"training": {"compile": True, "dataloader_workers": 2}, "data": {"pad_to_multiple_of": 16, "task": "sst2"}}
    config = api.resolve_distill_config({**raw, "loss": "kd"}, PluginManager(autoload=False))
    assert config.training.compile is True and config.training.dataloader_workers == 2
    assert config.data.pad_to_multiple_of == 16
    with pytest.raises(ConfigError, match="pad_to_multiple_of"):
        api.resolve_distill_config({"loss": "kd", "data": {"pad_to_multiple_of": 0}}, PluginManager(autoload=False))
