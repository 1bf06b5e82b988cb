"""The Hugging Face layout of an export: the files optimum-onnx and transformers.js load, next to kdkit's own.

``kdkit export RUN --onnx [--quantize int8]`` writes::

    <export>/
      config.json                the model's configuration, with id2label/label2id (both clients read it)
      tokenizer.json             the fast tokenizer (kdkit predict, transformers.js, optimum)
      tokenizer_config.json      its settings; model_max_length = the export's max length (truncation)
      onnx/model.onnx            fp32: transformers.js dtype "fp32", optimum's default file
      onnx/model_quantized.onnx  int8 (--quantize int8): transformers.js dtype "q8",
                                 optimum file_name="model_quantized.onnx"
      kdkit_export.json          kdkit's manifest; its models.*.file point into onnx/
      README.md, training_curves.svg   the model card and its picture (kdkit.records.model_card)

Each ONNX file is stored once, in the folder where transformers.js looks for it (``onnx/``); optimum-onnx
finds ``model.onnx`` there by itself (it searches ``**/*.onnx`` for that name), and kdkit reads the paths from
its manifest, so no copy or link is needed. Exports made before this layout (``model.onnx`` and
``model.int8.onnx`` at the top, no config.json) still load in ``kdkit predict``: it follows the manifest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kdkit.data.tasks import TaskSpec
from kdkit.errors import ModelError

if TYPE_CHECKING:  # kdkit.export.inference reads CONFIG_FILE from here: no transformers at run time
    from transformers import PreTrainedTokenizerBase

CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
#: the fp32 and int8 models; older exports wrote model.onnx and model.int8.onnx at the top: readers follow the
#: manifest's models.*.file, never these names
FP32_FILE = "onnx/model.onnx"
INT8_FILE = "onnx/model_quantized.onnx"
#: where transformers.js looks for the ONNX files (its default ``subfolder``)
ONNX_SUBDIR = "onnx"
#: transformers.js' file name suffix per dtype: "" for fp32, "_quantized" for q8 (8-bit weights)
TRANSFORMERS_JS_DTYPES = {"fp32": "fp32", "int8": "q8"}
#: keys transformers 5 writes into tokenizer_config.json that describe how it was loaded, not the tokenizer
_LOADER_KEYS = ("is_local", "local_files_only", "name_or_path", "_commit_hash")


def write_config(model_dir: Path, target: Path, task: TaskSpec) -> dict[str, Any]:
    """Copy the model's config.json into ``target`` with the task's labels as id2label/label2id (the clients
    name their predictions after these) and its problem type; return what was written."""
    source = model_dir / CONFIG_FILE
    try:
        config = json.loads(source.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read {source} ({type(exc).__name__})", "save the model again") from None
    if not isinstance(config, dict) or "model_type" not in config:
        raise ModelError(f"{source} has no model_type", "save the model again with transformers")
    if task.label_names is not None:
        config["id2label"] = {str(i): name for i, name in enumerate(task.label_names)}
        config["label2id"] = {name: i for i, name in enumerate(task.label_names)}
        config["problem_type"] = "single_label_classification"
    else:
        config["id2label"] = {"0": "LABEL_0"}
        config["label2id"] = {"LABEL_0": 0}
        config["problem_type"] = "regression"
    (target / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return config


def save_tokenizer(tokenizer: PreTrainedTokenizerBase, target: Path, max_length: int) -> None:
    """Save the tokenizer with ``model_max_length = max_length``, so that a client that truncates (optimum's
    and transformers.js' pipelines do) cuts where kdkit predict and training did; drop loader state."""
    previous = tokenizer.model_max_length
    tokenizer.model_max_length = max_length
    try:
        tokenizer.save_pretrained(target)
    finally:
        tokenizer.model_max_length = previous
    path = target / TOKENIZER_CONFIG_FILE
    if path.is_file():
        settings = json.loads(path.read_text())
        for key in _LOADER_KEYS:
            settings.pop(key, None)
        settings["model_max_length"] = max_length
        path.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")


def layout_manifest(quantized: bool) -> dict[str, Any]:
    """The manifest's ``layout`` entry: which client loads which file."""
    return {
        "name": "hf",
        "config": CONFIG_FILE,
        "onnx_subfolder": ONNX_SUBDIR,
        "transformers_js_dtypes": ["fp32", *(["q8"] if quantized else [])],
    }
