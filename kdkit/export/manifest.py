"""``kdkit_export.json`` as the exporter writes it: :class:`ExportRecord`, built by :mod:`kdkit.export.stage`.

:class:`kdkit.records.manifests.ExportManifest` holds the fields a reader needs
(:class:`kdkit.export.inference.OnnxClassifier`, :mod:`kdkit.records.provenance`); :class:`ExportRecord` extends it
with what the export measured: the exporter, the parity cases against PyTorch, the evaluation of every engine, the
file sizes and the model card. The manifest is written twice: once the fp32 model passed parity (so an int8 step
that fails leaves a described folder behind in
``<output>.partial``), then complete; each write holds only the fields set so far (:meth:`ExportRecord.to_json_dict`).

This module imports neither torch nor transformers.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from kdkit.records.manifests import ExportExample, ExportManifest, _Record

#: the order of the keys in the file (pydantic would put a subclass's fields after its parent's)
_KEY_ORDER = (
    "format", "kdkit_version", "created_at", "task", "label_names", "max_length", "input_names", "output_names",
    "models", "tokenizer", "exporter", "source", "layout", "examples", "parity", "evaluation", "sizes", "warnings",
    "card", "fidelity",
)  # fmt: skip
#: how many example inputs an export records (:attr:`ExportRecord.examples`), and their longest length in characters
EXAMPLES = 4
EXAMPLE_MAX_CHARS = 200


class ExporterInfo(_Record):
    """``exporter``: which exporter wrote the graph, at which opset, how long it took, and the versions."""

    name: str
    opset: int = Field(ge=1)
    seconds: float = Field(ge=0)
    torch: str
    onnx: str | None = None
    onnxruntime: str | None = None


class ExportSource(_Record):
    """``source``: what was exported (absolute paths) and the PyTorch class."""

    path: str
    model_dir: str
    architecture: str


class ParityCase(_Record):
    """One real batch of the parity check: its shape and max |Δlogit| (ONNX fp32 vs PyTorch)."""

    case: str
    batch: int = Field(ge=1)
    length: int = Field(ge=1)
    max_abs_diff: float = Field(ge=0)


class Parity(_Record):
    """``parity``: the parity cases and the largest |Δlogit| over the validation set (fp32, and int8 if made)."""

    tolerance: float = Field(gt=0)
    cases: list[ParityCase]
    validation_max_abs_diff: float = Field(ge=0)
    int8_validation_max_abs_diff: float | None = None


class Evaluation(_Record):
    """``evaluation``: the examples per split and the metrics of each engine (``pytorch``, ``onnx_fp32``,
    ``onnx_int8``); several splits give ``split/metric`` keys."""

    splits: dict[str, int]
    main_metric: str
    metrics: dict[str, dict[str, float]]
    #: the fraction of examples where int8 predicts the class PyTorch predicts (classification, with int8)
    int8_agreement_with_pytorch: dict[str, float] | None = None


class ExportRecord(ExportManifest):
    """``kdkit_export.json`` as written: the reader's fields and what the export measured."""

    kdkit_version: str | None = None
    created_at: str | None = None
    label_names: list[str] | None = None
    output_names: list[str] = Field(default_factory=lambda: ["logits"])
    exporter: ExporterInfo | None = None
    source: ExportSource | None = None
    #: which client loads which file (:func:`kdkit.export.hf_layout.layout_manifest`)
    layout: dict[str, Any] | None = None
    #: a few inputs of the validation data (the web page offers them, kdkit.web); absent in older exports
    examples: list[ExportExample] | None = None
    parity: Parity | None = None
    evaluation: Evaluation | None = None
    #: bytes of each model file (``pytorch``: the source's model.safetensors)
    sizes: dict[str, int] | None = None
    #: things the user should know (int8 accuracy loss, a model card that could not be written)
    warnings: list[str] | None = None
    #: the model card's files (:func:`kdkit.records.model_card.card_for_export`), None when none was written
    card: dict[str, Any] | None = None
    #: the fidelity report's file (:mod:`kdkit.records.fidelity`); absent in older exports
    fidelity: str | None = None

    def to_json_dict(self) -> dict[str, Any]:
        """The content of the file: the fields set so far, as JSON values, in the file's key order."""
        values = self.model_dump(mode="json", exclude_unset=True)
        known = [key for key in _KEY_ORDER if key in values]
        return {key: values[key] for key in [*known, *(key for key in values if key not in _KEY_ORDER)]}
