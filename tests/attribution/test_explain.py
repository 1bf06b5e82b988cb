"""kdkit explain: token heatmaps from an attribution provider, in the terminal, as JSON, HTML and SVG."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from kdkit.attribution.explain import explain_batch, load_for_explain
from kdkit.attribution.heatmaps import write_svg
from kdkit.cli import app
from kdkit.plugins.manager import get_plugin_manager
from kdkit.plugins.options import build_provider
from kdkit.testing import save_tiny_classifier
from kdkit.testing.models import REGRESSION_TASK

pytest.importorskip("kdkit_adkd", reason="the default provider 'ig' comes from the adkd plugin")
runner = CliRunner()
TEXT = "the movie was good and the plot was bad"


def explain(*args: object) -> tuple[int, str, str]:
    result = runner.invoke(app, ["explain", *map(str, args)])
    return result.exit_code, result.stdout, result.stderr


def test_json_maps_are_unit_norm_per_view_over_the_tokens(tiny_teacher: Path) -> None:
    code, out, err = explain(tiny_teacher, TEXT, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["task"] == "tiny"
    assert result["tokens"][0] == "[CLS]" and result["tokens"][-1] == "[SEP]"
    assert "good" in result["tokens"]
    assert len(result["maps"]) == 1 and len(result["maps"][0]) == len(result["tokens"])
    assert sum(v * v for v in result["maps"][0]) == pytest.approx(1.0, abs=1e-3)
    assert result["prediction"] in ("neg", "pos") and result["views"] == [result["prediction"]]
    assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)


def test_maps_equal_gradient_times_input_at_the_embedding_output(tiny_teacher: Path) -> None:
    """IG with m = 1 and the zero baseline is gradient x input of log p_pred; here with a plain forward hook."""
    model, tokenizer, task, _ = load_for_explain(tiny_teacher)
    [explained] = explain_batch(model, tokenizer, task, build_provider(get_plugin_manager(), "ig"), [TEXT])
    inputs = tokenizer([TEXT], return_tensors="pt")
    captured: list[torch.Tensor] = []

    def keep(_module: object, _args: object, output: torch.Tensor) -> torch.Tensor:
        leaf = output.detach().requires_grad_()  # the model is frozen: make E a leaf that collects dF/dE
        captured.append(leaf)
        return leaf

    handle = model.bert.embeddings.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            log_probs = torch.log_softmax(model(**inputs).logits, dim=-1)
            log_probs[0, log_probs[0].argmax()].backward()
    finally:
        handle.remove()
    embedding = captured[0]
    assert embedding.grad is not None
    norms = (embedding.grad * embedding).detach()[0].norm(dim=-1)
    expected = norms / norms.norm()
    assert explained.maps[0] == pytest.approx(expected.tolist(), abs=1e-4)


def test_all_views_of_a_binary_task_are_equal(tiny_teacher: Path) -> None:
    code, out, err = explain(tiny_teacher, TEXT, "--views", "all", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["views"] == ["neg", "pos"]
    assert result["maps"][0] == pytest.approx(result["maps"][1], abs=1e-4)


def test_html_and_svg_files_hold_every_token(tiny_teacher: Path, tmp_path: Path) -> None:
    code, out, err = explain(tiny_teacher, TEXT, "--html", tmp_path / "map.html", "--svg", tmp_path / "map.svg")
    assert code == 0, err
    assert "prediction:" in out
    page = (tmp_path / "map.html").read_text()
    image = (tmp_path / "map.svg").read_text()
    assert image.startswith("<svg") and image.rstrip().endswith("</svg>")
    for word in TEXT.split():
        assert f">{word}</span>" in page
        assert f">{word}</text>" in image


def test_svg_of_several_models_has_one_line_per_model(tiny_teacher: Path, tmp_path: Path) -> None:
    model, tokenizer, task, _ = load_for_explain(tiny_teacher)
    [a, b] = explain_batch(model, tokenizer, task, build_provider(get_plugin_manager(), "ig"), [TEXT, "a bad plot"])
    write_svg(tmp_path / "two.svg", [("first", [("teacher", a), ("student", a)]), ("second", [("teacher", b)])])
    image = (tmp_path / "two.svg").read_text()
    assert image.count(">teacher → ") == 2 and image.count(">student → ") == 1
    assert ">first</text>" in image and ">second</text>" in image


def test_regression_model_has_one_output_view(tmp_path: Path) -> None:
    directory = save_tiny_classifier(tmp_path / "regressor", REGRESSION_TASK)
    code, out, err = explain(directory, TEXT, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["views"] == ["output"] and result["probabilities"] == {}
    float(result["prediction"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["second text"], "takes 1 text"),
        (["--views", "gold"], "unknown views 'gold'"),
        (["--provider", "nope"], "nope"),
        (["--set", "ig.steps=0"], "ig.steps"),
        (["--set", "kd.alpha=1"], "does not name the provider"),
    ],
)
def test_bad_input_is_one_line_error(tiny_teacher: Path, args: list[str], message: str) -> None:
    code, _, err = explain(tiny_teacher, TEXT, *args)
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err


def test_provider_options_are_checked_and_built_in_one_step() -> None:
    from kdkit.cli.flags import options_of
    from kdkit.errors import ConfigError

    provider = build_provider(get_plugin_manager(), "ig", options_of("ig", ["ig.steps=4"]))
    assert provider.options.steps == 4  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="--set kd.\\* does not name the provider 'ig'"):
        options_of("ig", ["kd.alpha=1"])
    with pytest.raises(ConfigError, match="bad value 0 for ig.steps"):
        build_provider(get_plugin_manager(), "ig", {"steps": 0})
