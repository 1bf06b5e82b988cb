"""Serve an exported student with onnxruntime, tokenizers and numpy alone: no torch, no transformers.

    from kdkit.export.inference import OnnxClassifier

    classifier = OnnxClassifier("runs/sst2-kd/onnx")  # the folder 'kdkit export --onnx' wrote
    classifier.predict(["a gripping, funny film"])
    # [{'label': 'positive', 'score': 0.98, 'scores': {'negative': 0.02, 'positive': 0.98},
    #   'truncated': False}]

An export folder holds ``onnx/model.onnx`` (fp32), optionally ``onnx/model_quantized.onnx`` (int8), the
tokenizer (``tokenizer.json``) and the manifest ``kdkit_export.json`` (task, labels, max length, input names,
the model files, and the parity and metric figures measured at export); the model files are found through the
manifest, so exports of the older flat layout (``model.onnx``, ``model.int8.onnx``) load too. Texts longer than
the manifest's ``max_length`` tokens are truncated, as in training, with a :class:`TruncationWarning`.

This module must stay importable without torch (a deployment installs onnxruntime, tokenizers, numpy and
pydantic): import nothing from kdkit here but torch-free modules (:mod:`kdkit.errors`, :mod:`kdkit.records`,
:mod:`kdkit.data.texts`, :mod:`kdkit.export.hf_layout`, :func:`kdkit.models.checks.position_limit`); a test
imports it in a fresh interpreter and checks that torch was not loaded.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from kdkit.data.texts import check_text_encoding
from kdkit.errors import DataError, ModelError, TruncationWarning
from kdkit.export.hf_layout import CONFIG_FILE, TOKENIZER_FILE
from kdkit.models.checks import position_limit
from kdkit.records.manifests import EXPORT_MANIFEST_FILE, EXPORT_MANIFEST_FORMAT, ExportManifest, read_json
from kdkit.records.provenance import resolve_export_dir

Precision = Literal["auto", "fp32", "int8"]
_ORT_INT_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """The manifest of an export folder (:data:`EXPORT_MANIFEST_FILE`), validated (:class:`ExportManifest`:
    a damaged or hand-edited one is a one-line :class:`ModelError` naming the file)."""
    path = Path(directory) / EXPORT_MANIFEST_FILE
    if not path.is_file():
        raise ModelError(
            f"{directory} is not a kdkit ONNX export (no {EXPORT_MANIFEST_FILE})",
            "export one with 'kdkit export RUN_DIR --onnx'",
        )
    manifest = read_json(path, ExportManifest, what="the export manifest", fix="export the model again")
    if manifest.format > EXPORT_MANIFEST_FORMAT:
        raise ModelError(
            f"{path} has manifest format {manifest.format}, newer than this kdkit reads ({EXPORT_MANIFEST_FORMAT})",
            "upgrade kdkit",
        )
    return manifest.model_dump(mode="json")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N, C) logits."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


class OnnxClassifier:
    """A kdkit export served with onnxruntime and a ``tokenizers`` tokenizer.

    Args:
        directory: the export folder (or a run directory that holds one in ``onnx/``).
        precision: ``fp32`` (``onnx/model.onnx``), ``int8`` (``onnx/model_quantized.onnx``) or ``auto`` (int8 when
            exported).
        threads: onnxruntime intra-op threads (default: onnxruntime's choice, one per physical core).
    """

    def __init__(self, directory: str | Path, *, precision: Precision = "auto", threads: int | None = None) -> None:
        self.directory = resolve_export_dir(directory)
        self.manifest = read_manifest(self.directory)
        task = self.manifest["task"]
        self.task_name: str = str(task.get("name", "task"))
        self.text_fields: tuple[str, ...] = tuple(task.get("text_fields") or ("text",))
        names = task.get("label_names")
        self.label_names: tuple[str, ...] | None = tuple(names) if names is not None else None
        self.max_length = int(self.manifest["max_length"])
        self._check_positions()
        self.input_names: list[str] = list(self.manifest["input_names"])
        self.precision, self.model_file = self._choose_model(precision)
        self.session = self._open_session(self.model_file, threads)
        self._check_labels()
        self.tokenizer = self._load_tokenizer()

    # -- loading ------------------------------------------------------------------------------------

    def _check_positions(self) -> None:
        """The manifest's ``max_length`` must fit the model's positions (its ``config.json``; exports made before
        that file was written are not checked): texts are truncated to it, and a longer input would index past
        the position embeddings inside onnxruntime (RoBERTa's positions start after the padding id)."""
        path = self.directory / CONFIG_FILE
        try:
            config = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        limit = position_limit(config) if isinstance(config, dict) else None
        if limit is not None and self.max_length > limit:
            raise ModelError(
                f"{self.directory} truncates texts to {self.max_length} tokens, but its model takes at most {limit}",
                f"export it again with --max-length {limit} or less (kdkit export ... --max-length {limit})",
            )

    def _choose_model(self, precision: Precision) -> tuple[str, Path]:
        models = self.manifest["models"]
        if precision == "auto":
            precision = "int8" if "int8" in models else "fp32"
        if precision not in ("fp32", "int8"):
            raise ModelError(f"unknown precision '{precision}'", "use auto, fp32 or int8")
        if precision not in models:
            raise ModelError(
                f"{self.directory} has no {precision} model",
                "export with '--quantize int8', or use --precision fp32",
            )
        path = self.directory / str(models[precision]["file"])
        if not path.is_file():
            raise ModelError(f"{path} is missing", "export the model again (the folder is incomplete)")
        return precision, path

    def _open_session(self, path: Path, threads: int | None) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ModelError(
                f"cannot load {path}: not a valid ONNX model ({first[:160]})", "export the model again"
            ) from None
        session_inputs = {i.name for i in session.get_inputs()}
        if session_inputs != set(self.input_names):
            raise ModelError(
                f"{path} takes inputs {sorted(session_inputs)}, but its manifest says {self.input_names}",
                "export the model again",
            )
        self._input_types = {i.name: _ORT_INT_TYPES.get(i.type, np.int64) for i in session.get_inputs()}
        return session

    def _check_labels(self) -> None:
        """The manifest's labels must be distinct and as many as the model's outputs (1 for regression)."""
        names = self.label_names
        path = self.directory / EXPORT_MANIFEST_FILE
        if names is not None and len(set(names)) != len(names):
            raise ModelError(f"{path} names a label twice ({', '.join(names)})", "export the model again")
        shape = self.session.get_outputs()[0].shape
        outputs = shape[-1] if shape and isinstance(shape[-1], int) else None
        if outputs is not None:
            self._check_output_count(outputs)

    def _check_output_count(self, outputs: int) -> None:
        expected = 1 if self.label_names is None else len(self.label_names)
        if outputs == expected:
            return
        said = (
            "a regression output" if self.label_names is None else f"{expected} label(s): {', '.join(self.label_names)}"
        )
        raise ModelError(
            f"{self.directory / EXPORT_MANIFEST_FILE} lists {said}, but the model {self.model_file.name} has {outputs} "
            "output(s): the manifest was edited or belongs to another model",
            "export the model again (or restore kdkit_export.json)",
        )

    def _load_tokenizer(self) -> Tokenizer:
        path = self.directory / str(self.manifest.get("tokenizer", {}).get("file", TOKENIZER_FILE))
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:
            raise ModelError(
                f"cannot load the tokenizer {path} ({type(exc).__name__})", "export the model again"
            ) from None
        pad = self.manifest.get("tokenizer", {})
        # tokenizer.json may carry its own fixed-length settings: pad per batch, truncate to our max length
        tokenizer.no_padding()
        tokenizer.enable_truncation(self.max_length)
        tokenizer.enable_padding(pad_id=int(pad.get("pad_id", 0)), pad_token=str(pad.get("pad_token", "[PAD]")))
        return tokenizer

    # -- inference ---------------------------------------------------------------------------------

    def _check_inputs(self, texts: Sequence[str], pairs: Sequence[str] | None) -> None:
        if isinstance(texts, str):
            raise DataError("texts must be a list of strings, not one string", "wrap it in a list")
        check_text_encoding(texts, pairs)
        if len(texts) == 0:
            raise DataError("no texts to classify", "give at least one text")
        pair_task = len(self.text_fields) == 2
        if pair_task and pairs is None:
            raise DataError(
                f"task '{self.task_name}' classifies pairs ({' + '.join(self.text_fields)})",
                "give the second text of each pair too",
            )
        if not pair_task and pairs is not None:
            raise DataError(f"task '{self.task_name}' classifies single texts", "give no second text")
        if pairs is not None and len(pairs) != len(texts):
            raise DataError(f"{len(texts)} texts but {len(pairs)} second texts", "give one second text per text")
        for column, values in ((self.text_fields[0], texts), (self.text_fields[-1], pairs or ())):
            for row, text in enumerate(values):
                if not isinstance(text, str) or not text.strip():
                    raise DataError(f"text {row + 1} ({column}) is empty", "give non-empty text")

    def encode(
        self, texts: Sequence[str], pairs: Sequence[str] | None = None
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Tokenise one batch: model inputs of shape (B, L) (L = longest, at most ``max_length``) and a (B,)
        bool array that says which texts were truncated."""
        batch: list[Any] = list(texts) if pairs is None else list(zip(texts, pairs, strict=False))
        encodings = self.tokenizer.encode_batch(batch)
        columns = {
            "input_ids": [e.ids for e in encodings],
            "attention_mask": [e.attention_mask for e in encodings],
            "token_type_ids": [e.type_ids for e in encodings],
        }
        inputs = {name: np.asarray(columns[name], dtype=self._input_types[name]) for name in self.input_names}
        truncated = np.asarray([len(e.overflowing) > 0 for e in encodings], dtype=bool)
        return inputs, truncated

    def logits(
        self,
        texts: Sequence[str],
        pairs: Sequence[str] | None = None,
        *,
        batch_size: int = 32,
        warn: bool = True,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Raw outputs (N, C) (C = 1 for regression) and the (N,) truncation flags, in the input order.

        Texts are batched by length (less padding); a :class:`TruncationWarning` says how many were truncated.
        """
        self._check_inputs(texts, pairs)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise DataError(f"bad batch size {batch_size!r}", "use a batch size of 1 or more")
        order = np.argsort([len(t) + (len(pairs[i]) if pairs else 0) for i, t in enumerate(texts)], kind="stable")
        outputs: list[np.ndarray] = []
        flags: list[np.ndarray] = []
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            inputs, truncated = self.encode([texts[i] for i in chunk], [pairs[i] for i in chunk] if pairs else None)
            outputs.append(np.asarray(self.session.run(None, inputs)[0], dtype=np.float32))
            flags.append(truncated)
        self._check_output_count(outputs[0].shape[-1])
        result = np.empty((len(texts), outputs[0].shape[-1]), dtype=np.float32)
        result[order] = np.concatenate(outputs)
        truncated_all = np.empty(len(texts), dtype=bool)
        truncated_all[order] = np.concatenate(flags)
        if warn and truncated_all.any():
            self._warn_truncated(truncated_all)
        return result, truncated_all

    def _warn_truncated(self, truncated: np.ndarray) -> None:
        warnings.warn(
            f"{int(truncated.sum())} of {len(truncated)} text(s) are longer than {self.max_length} tokens "
            "and were truncated",
            TruncationWarning,
            stacklevel=3,
        )

    def predict(
        self, texts: Sequence[str], pairs: Sequence[str] | None = None, *, batch_size: int = 32
    ) -> list[dict[str, Any]]:
        """One dict per text: ``label`` (None for regression), ``score`` (the label's probability, or the
        regression value), ``scores`` (every label's probability) and ``truncated``."""
        logits, truncated = self.logits(texts, pairs, batch_size=batch_size, warn=False)
        if truncated.any():
            self._warn_truncated(truncated)
        results: list[dict[str, Any]] = []
        if self.label_names is None:
            for value, cut in zip(logits[:, 0], truncated, strict=False):
                results.append({"label": None, "score": float(value), "scores": {}, "truncated": bool(cut)})
            return results
        probabilities = softmax(logits)
        for row, cut in zip(probabilities, truncated, strict=False):
            best = int(row.argmax())
            results.append(
                {
                    "label": self.label_names[best],
                    "score": float(row[best]),
                    "scores": {name: float(p) for name, p in zip(self.label_names, row, strict=False)},
                    "truncated": bool(cut),
                }
            )
        return results


# -- input files -------------------------------------------------------------------------------------


def _read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a CSV/TSV (with a header) or JSON-lines file, as dicts."""
    suffix = path.suffix.lower()
    if path.is_dir():
        raise DataError(f"{path} is a directory", "give the CSV, TSV or JSONL file itself to --file")
    if path.exists() and not path.is_file():
        raise DataError(f"{path} is not a regular file (a device, pipe or socket)", "give a CSV, TSV or JSONL file")
    if not path.is_file():
        raise DataError(f"file {path} does not exist", "check the path given to --file")
    try:
        if suffix in (".csv", ".tsv"):
            import csv

            with path.open(newline="", encoding="utf-8") as handle:
                rows: list[Any] = list(csv.DictReader(handle, delimiter="\t" if suffix == ".tsv" else ","))
        elif suffix in (".jsonl", ".json"):
            with path.open(encoding="utf-8") as handle:
                rows = [json.loads(line) for line in handle if line.strip()]
        else:
            raise DataError(f"unsupported file {path}", "use a .csv, .tsv or .jsonl file")
    except (UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"cannot read {path} ({type(exc).__name__}: {str(exc)[:120]})", "check the file") from None
    if not rows:
        raise DataError(f"{path} has no rows", "give a file with a header (CSV) and at least one text")
    if not all(isinstance(row, dict) for row in rows):
        raise DataError(f"{path} is not a list of JSON objects", 'write one object per line: {"text": "..."}')
    return rows


def read_texts(
    path: str | Path, text_column: str | None = None, default_columns: Sequence[str] = ("text",)
) -> tuple[list[str], list[str] | None]:
    """The texts to classify from a CSV/TSV or JSONL file: (texts, second texts or None).

    ``text_column`` names the column(s), ``a`` or ``a,b``; without it the ``default_columns`` are read (the
    task's text fields), and a single-text task falls back to a column named ``text``.
    """
    path = Path(path)
    rows = _read_rows(path)
    columns = [c.strip() for c in (text_column.split(",") if text_column else default_columns) if c.strip()]
    available = list(rows[0])
    if not text_column and len(columns) == 1 and columns[0] not in available and "text" in available:
        columns = ["text"]
    missing = [column for column in columns if column not in available]
    if missing:
        raise DataError(
            f"{path} has no column {', '.join(missing)} (columns: {', '.join(map(str, available))})",
            "name the text column(s) with --text-column a[,b]",
        )
    values: list[list[str]] = [[], []]
    for number, row in enumerate(rows, start=1):
        for slot, column in enumerate(columns):
            text = row.get(column)
            if not isinstance(text, str) or not text.strip():
                raise DataError(f"row {number} of {path} has no text in column '{column}'", "fill in or remove the row")
            values[slot].append(text)
    return values[0], (values[1] if len(columns) == 2 else None)
