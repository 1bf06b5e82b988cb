"""Checks of models, before any work and after a failed load, that say in one line what is wrong.

- :func:`check_exists`: a model path that is an unfinished run, an ONNX export, or does not exist;
- :func:`check_model_path`: an ONNX export given where a PyTorch model is needed, a local path that does not
  exist (a name that may be a hub id is left to the loader);
- :func:`load_failure`: why ``from_pretrained`` failed, when kdkit can tell: the folder needs custom code
  (``auto_map``), which kdkit never runs, or the path neither exists nor names a hub model;
- :func:`check_tokenizer_files`: a kdkit-saved folder must still hold its tokenizer's files (without
  ``tokenizer.json`` transformers would rebuild a tokenizer of special tokens only, every word ``[UNK]``);
- between a model and its task and data: ``--max-length`` against its positions (:func:`position_limit`,
  :func:`check_length_fits`), token types of sentence pairs, the classifier head's outputs, the teacher's
  vocabulary shared by the student.

This module imports neither torch nor transformers (``kdkit predict`` checks an export with
:func:`position_limit`): the checks read configurations and tokenizers they are given.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kdkit.data.tasks import TaskSpec
from kdkit.errors import ConfigError, ModelError
from kdkit.records.manifests import EXPORT_MANIFEST_FILE, TaskFile

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

#: files that hold a tokenizer's vocabulary: a model folder without any of them has no usable tokenizer
VOCABULARY_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


def looks_like_hub_id(name: str) -> bool:
    """``bert-base-uncased`` or ``org/name``: not ``./x``, ``/x``, ``~/x``, ``a/b/c`` or anything with ``..``."""
    return bool(_HUB_ID.match(name)) and ".." not in name


def check_model_path(name_or_path: str, role: str = "model") -> None:
    """A one-line error for an ONNX export given as a PyTorch model, or a local path that does not exist."""
    path = Path(name_or_path).expanduser()
    if (path / EXPORT_MANIFEST_FILE).is_file():
        raise ModelError(
            f"the {role} {name_or_path} is an ONNX export ({EXPORT_MANIFEST_FILE}), not a PyTorch model",
            "give the run directory or model folder it was exported from (kdkit predict serves the export)",
        )
    if not path.exists() and not looks_like_hub_id(name_or_path):
        raise ModelError(f"the {role} {name_or_path} does not exist", "check the path")


def custom_code(path: Path) -> str | None:
    """The code a model folder asks for (``auto_map`` of its config.json or tokenizer_config.json), if any."""
    for name in ("config.json", "tokenizer_config.json"):
        try:
            content = json.loads((path / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        auto_map = content.get("auto_map") if isinstance(content, dict) else None
        if auto_map:
            classes = auto_map.values() if isinstance(auto_map, dict) else auto_map
            named = sorted({str(value if isinstance(value, str) else value[0]) for value in classes if value})
            return f"auto_map in {name}: {', '.join(named)}"
    return None


def load_failure(name_or_path: str, exc: BaseException, role: str) -> ModelError | None:
    """The error for a failed load when kdkit can tell why (custom code, no such model); None otherwise."""
    path = Path(name_or_path).expanduser()
    code = custom_code(path) if path.is_dir() else None
    if code is not None or "trust_remote_code" in str(exc):
        return ModelError(
            f"the {role} {name_or_path} needs custom code ({code or 'it asks for trust_remote_code'}), which kdkit "
            "never runs",
            "use a model whose architecture transformers itself provides",
        )
    if not path.exists():
        return ModelError(
            f"the {role} '{name_or_path}' does not exist here, and no hub model of that name could be loaded "
            f"({type(exc).__name__})",
            "check the path, or the hub id (go online if it must be downloaded)",
        )
    return None


def check_tokenizer_files(directory: Path, record: TaskFile, role: str = "model") -> None:
    """A kdkit-saved folder must hold the tokenizer files it was saved with (listed in ``kdkit_task.json``;
    a folder saved before the list was kept must hold at least one vocabulary file)."""
    listed = record.tokenizer_files
    if listed:
        missing = [name for name in listed if not (directory / name).is_file()]
    else:
        missing = [] if any((directory / name).is_file() for name in VOCABULARY_FILES) else ["tokenizer.json"]
    if missing:
        raise ModelError(
            f"the {role} {directory} is incomplete: its tokenizer file {missing[0]} is missing (without it every "
            "word would become an unknown token)",
            "restore it, or save or train the model again",
        )


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


#: model types whose position ids start after the padding id (``create_position_ids_from_input_ids``): a
#: sequence of n tokens uses positions ``pad + 1 .. pad + n``, so the longest input is ``positions - pad - 1``
PADDING_OFFSET_POSITIONS = frozenset(
    {
        "roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "longformer", "data2vec-text",
        "roberta-prelayernorm", "ibert", "mpnet", "xmod", "luke", "esm",
    }
)  # fmt: skip


def position_limit(config: Mapping[str, Any] | Any) -> int | None:
    """The longest input (in tokens) a model's position embeddings allow, from its configuration (a transformers
    config or the dict of its config.json): ``max_position_embeddings``, less ``pad_token_id + 1`` for the
    RoBERTa family (:data:`PADDING_OFFSET_POSITIONS`). ``None`` when the model has no absolute position limit
    (relative positions only: DeBERTa-v2/v3 without ``position_biased_input``)."""

    def get(key: str, default: Any = None) -> Any:
        return config.get(key, default) if isinstance(config, Mapping) else getattr(config, key, default)

    positions = get("max_position_embeddings")
    if not positions or (get("position_embedding_type") or "absolute") != "absolute":
        return None
    model_type = str(get("model_type", ""))
    if model_type.startswith("deberta") and not get("position_biased_input", True):
        return None
    if model_type in PADDING_OFFSET_POSITIONS:
        return int(positions) - int(get("pad_token_id", 1) or 0) - 1
    return int(positions)


def check_exists(path: Path, *, allow_hub_id: bool = False, role: str = "model") -> None:
    """A one-line error for a model path that is an unfinished run, an ONNX export, or does not exist (unless it
    may be a hub id, ``allow_hub_id``: a name like ``org/model``, not ``./x``, ``/x`` or ``a/b/c``)."""
    if path.exists():
        check_model_path(str(path), role)
        return
    if path.with_name(path.name + ".partial").is_dir():
        raise ModelError(
            f"{path} is an unfinished run (only {path.name}.partial exists)", "finish it with --resume first"
        )
    if not allow_hub_id or not looks_like_hub_id(str(path)):
        raise ModelError(
            f"the {role} {path} does not exist",
            "give a run directory or a saved model directory (or a hub id with --task)",
        )
