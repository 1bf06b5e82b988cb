"""What an export starts from: the saved classifier of a run (or a model folder), its fast tokenizer, its task and
the validation data it is checked on, each checked before anything is written."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from kdkit.config import DataConfig
from kdkit.data.batching import MODEL_INPUTS
from kdkit.data.loading import load_raw
from kdkit.data.tasks import TaskSpec
from kdkit.errors import ExportError, ModelError
from kdkit.models.checks import check_length_fits
from kdkit.models.loading import load_classifier, load_tokenizer
from kdkit.records.provenance import of_model


@dataclass
class ExportInput:
    """What is exported: the path given, its model folder, the loaded classifier and tokenizer, the task, the
    validation data options and splits, and the ONNX input names."""

    path: Path
    model_dir: Path
    classifier: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    task: TaskSpec
    data: DataConfig
    raw_splits: dict[str, Any]
    input_names: list[str]


def check_classifier_config(model_dir: Path) -> None:
    """The saved model must be a sequence classifier (``*ForSequenceClassification`` in config.json)."""
    try:
        config = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"cannot read {model_dir / 'config.json'} ({type(exc).__name__})", "save the model again"
        ) from None
    architectures = config.get("architectures") or []
    if not any(str(a).endswith("ForSequenceClassification") for a in architectures):
        what = f"a {architectures[0]}" if architectures else "a model with no architecture in config.json"
        raise ModelError(
            f"{model_dir} is {what}, not a sequence classifier",
            "export a run directory or a model saved by 'kdkit finetune'/'kdkit distill'",
        )


def load_source(path: Path, data: DataConfig | None, max_length: int | None) -> ExportInput:
    """Load and check what ``path`` holds: a sequence classifier with a fast tokenizer giving input_ids and
    attention_mask, a ``max_length`` within its positions, and its validation data."""
    saved = of_model(path)
    assert saved.model is not None
    model_dir = Path(saved.model)
    check_classifier_config(model_dir)
    data = saved.data_options(data, max_length=max_length).model_copy(update={"padding": "dynamic"})
    tokenizer = load_tokenizer(str(model_dir))
    if not getattr(tokenizer, "is_fast", False):
        raise ExportError(
            f"the tokenizer of {model_dir} has no tokenizer.json (not a fast tokenizer)",
            "save the model with a fast (Rust) tokenizer; kdkit predict needs tokenizer.json",
        )
    task, _, raw_splits = load_raw(data, need_train=False)
    classifier = load_classifier(str(model_dir), task, role="model").eval()
    check_length_fits(classifier.config, data.max_length)
    input_names = [name for name in MODEL_INPUTS if name in tokenizer.model_input_names]
    if "input_ids" not in input_names or "attention_mask" not in input_names:
        raise ExportError(
            f"the tokenizer of {model_dir} gives inputs {tokenizer.model_input_names}",
            "export a model whose tokenizer gives input_ids and attention_mask",
        )
    return ExportInput(path, model_dir, classifier, tokenizer, task, data, raw_splits, input_names)
