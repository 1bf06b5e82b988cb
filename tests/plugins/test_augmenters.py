"""Augmenters (issue 27): the built-in ones conform, are deterministic under the run's seed, and a tiny distillation
with augmented copies runs through the CLI; bad --augment-copies and names are one-line errors."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from typer.testing import CliRunner

from kdkit.cli import app
from kdkit.data.augmentation import AugmentContext, augment_split, example_rng
from kdkit.data.augmenters import MaskAugmenter, NeighbourAugmenter, SwapAugmenter
from kdkit.errors import PluginError
from kdkit.plugins.manager import PluginManager
from kdkit.testing import BINARY_TASK, check_augmenter, tiny_tokenizer

runner = CliRunner()


@pytest.mark.parametrize("augmenter", [MaskAugmenter, SwapAugmenter, NeighbourAugmenter])
def test_the_built_in_augmenters_conform(augmenter) -> None:
    report = check_augmenter(augmenter)
    assert report.component == augmenter.name and len(report.checks) == 2


def test_the_built_in_plugin_registers_them() -> None:
    manager = PluginManager(autoload=False)
    assert manager.augmenter("neighbours") is NeighbourAugmenter
    assert set(manager.augmenters) == {"mask", "swap", "neighbours"}
    with pytest.raises(PluginError, match="unknown augmenter 'nope'.*mask, neighbours, swap"):
        manager.augmenter("nope")


def test_augment_split_is_deterministic_under_the_seed_and_keeps_the_input(tmp_path: Path) -> None:
    split = Dataset.from_dict({"text": ["the good film was long", "a bad plot and dull acting"]})
    context = AugmentContext(tokenizer=tiny_tokenizer(tmp_path))
    augmenter = SwapAugmenter(SwapAugmenter.Options(swaps=2), context)
    first = augment_split(split, BINARY_TASK, augmenter, 3, seed=42)
    assert first["text"] == augment_split(split, BINARY_TASK, augmenter, 3, seed=42)["text"]
    assert first["text"] != augment_split(split, BINARY_TASK, augmenter, 3, seed=43)["text"]
    assert len(first) == 6 and first.column_names == ["text"]
    assert sorted(first["text"][0].split()) == sorted(["the", "good", "film", "was", "long"])
    assert split["text"] == ["the good film was long", "a bad plot and dull acting"]
    # each text has its own stream: the order texts are augmented in does not matter
    assert example_rng(1, 0, "text").random() == example_rng(1, 0, "text").random()
    assert example_rng(1, 0, "text").random() != example_rng(1, 1, "text").random()


def test_mask_masks_or_drops_words(tmp_path: Path) -> None:
    tokenizer = tiny_tokenizer(tmp_path)
    masked = MaskAugmenter(MaskAugmenter.Options(probability=1.0, drop=0.0), AugmentContext(tokenizer=tokenizer))
    assert masked.augment("good film", 1, random.Random(0)) == [f"{tokenizer.mask_token} {tokenizer.mask_token}"]
    dropped = MaskAugmenter(MaskAugmenter.Options(probability=1.0, drop=1.0), AugmentContext(tokenizer=tokenizer))
    assert dropped.augment("good film", 2, random.Random(0)) == [tokenizer.mask_token] * 2  # never empty


def test_neighbours_replaces_words_by_their_nearest_tokens_in_the_teachers_embeddings(tmp_path: Path) -> None:
    tokenizer = tiny_tokenizer(tmp_path)
    vocabulary = tokenizer.get_vocab()
    embeddings = torch.randn(len(tokenizer), 8, generator=torch.Generator().manual_seed(0))
    good, fine = vocabulary["good"], vocabulary["fine"]
    embeddings[fine] = embeddings[good] * 2.0 + 0.01  # the nearest to "good" by cosine
    context = AugmentContext(tokenizer=tokenizer, embeddings=embeddings)
    augmenter = NeighbourAugmenter(NeighbourAugmenter.Options(probability=1.0, k=1), context)
    assert augmenter.neighbours(good) == [fine]
    assert augmenter.augment("good", 2, random.Random(0)) == ["fine", "fine"]
    with pytest.raises(ValueError, match="needs the teacher's tokenizer and input embeddings"):
        NeighbourAugmenter(NeighbourAugmenter.Options(), AugmentContext(tokenizer=tokenizer))


def _distill(tmp_path: Path, teacher: Path, data: tuple[Path, Path], *extra: str) -> tuple[int, str, Path]:
    output = tmp_path / "run"
    args = ["distill", "--teacher", str(teacher), "--train-file", str(data[0]), "--validation-file", str(data[1])]
    args += ["--max-length", "32", "--student", "copy:1", "--max-steps", "2", "--batch-size", "32", "--quiet"]
    result = runner.invoke(app, [*args, "--output", str(output), *extra])
    return result.exit_code, result.stderr, output


@pytest.mark.parametrize("augmenter", ["neighbours", "mask"])
def test_a_tiny_distillation_with_augmentation_through_the_cli(
    tmp_path: Path, tiny_teacher: Path, tiny_csv: tuple[Path, Path], augmenter: str
) -> None:
    code, stderr, output = _distill(tmp_path, tiny_teacher, tiny_csv, "--augment", augmenter, "--augment-copies", "2")
    assert code == 0, stderr
    summary = json.loads((output / "run.json").read_text())
    assert summary["examples"] == {"labelled": 96, "transfer": 0, "augmented": 192}
    assert summary["train"]["examples"] == 288 and augmenter in summary["options"]
    assert "96 labelled, 0 transfer, 192 augmented" in (output / "best" / "README.md").read_text()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--augment", "mask", "--augment-copies", "0"], "bad value 0 for augment_copies"),
        (["--augment", "mask", "--augment-copies", "10000"], "bad value 10000 for augment_copies"),
        (["--augment", "nope"], "unknown augmenter 'nope'"),
        (["--augment", "mask", "--plugin", "ce"], "--augment given with the 'ce' loss, which uses no teacher"),
        (["--augment", "swap", "--set", "swap.swaps=0"], "bad value 0 for swap.swaps"),
    ],
)
def test_bad_augmentation_options_are_one_line_errors(
    tmp_path: Path, tiny_teacher: Path, tiny_csv: tuple[Path, Path], extra: list[str], message: str
) -> None:
    code, stderr, output = _distill(tmp_path, tiny_teacher, tiny_csv, *extra)
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert code == 2 and len(errors) == 1 and re.search(message, errors[0]), stderr
    assert not output.with_name("run.partial").exists()


def test_kdkit_plugins_lists_the_augmenters_with_their_options() -> None:
    result = runner.invoke(app, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)["components"] if row["kind"] == "augmenter"}
    assert set(rows) >= {"mask", "swap", "neighbours"} and "presets" not in rows["mask"]
    assert rows["neighbours"]["options"]["k"]["default"] == 15


def test_the_example_augmenter_plugin_conforms_and_is_found() -> None:
    """examples/kdkit-repeat, the third-party augmenter of docs/plugins.md as a package."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "examples" / "kdkit-repeat" / "kdkit_repeat" / "augmenter.py"
    spec = importlib.util.spec_from_file_location("kdkit_repeat_example", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    manager = PluginManager(autoload=False, extra_plugins={"repeat": module})
    assert manager.augmenter("repeat") is module.RepeatWord
    check_augmenter(module.RepeatWord, {"times": 2})
