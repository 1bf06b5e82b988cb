"""Checks of a model path or folder, before and after a failed load, that say what is really wrong with it.

- :func:`check_model_path`: an ONNX export given where a PyTorch model is needed, a local path that does not
  exist (a name that may be a hub id is left to the loader);
- :func:`load_failure`: why ``from_pretrained`` failed, when kdkit can tell: the folder needs custom code
  (``auto_map``), which kdkit never runs, or the path neither exists nor names a hub model;
- :func:`check_tokenizer_files`: a kdkit-saved folder must still hold its tokenizer's files (without
  ``tokenizer.json`` transformers would rebuild a tokenizer of special tokens only, every word ``[UNK]``).

This module imports neither torch nor transformers.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from kdkit.errors import ModelError
from kdkit.manifests import EXPORT_MANIFEST_FILE, TaskFile

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
