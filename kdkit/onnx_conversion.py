"""PyTorch -> ONNX conversion, onnxruntime fusions and int8 quantisation: the graph-writing steps of an export.

:func:`export_model` writes a sequence classifier as an ONNX graph with the signature
``(input_ids, attention_mask[, token_type_ids]) -> logits (B, C)``, dynamic in batch and sequence, with the
exporter named in :data:`EXPORTERS` (``dynamo``: ``torch.export`` + onnxscript; ``torchscript``: the legacy
tracer). :func:`fuse_for_onnxruntime` and :func:`quantize_int8` rewrite a written graph. Each step's own prints
and warnings are kept out of the CLI's output; a failure is one :class:`~kdkit.errors.ExportError` line.
:mod:`kdkit.export` runs them and validates the result (:mod:`kdkit.export_validation`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from transformers import PreTrainedModel

from kdkit.errors import ConfigError, ExportError

Exporter = Literal["dynamo", "torchscript"]
#: exporter -> default opset (the opsets the exporters were validated at)
EXPORTERS: dict[str, int] = {"dynamo": 20, "torchscript": 17}


class _LogitsOnly(nn.Module):
    """``forward(input_ids, attention_mask[, token_type_ids]) -> logits (B, C)``: the ONNX signature."""

    def __init__(self, model: PreTrainedModel) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        return self.model(**inputs).logits


@contextlib.contextmanager
def _quiet_exporter() -> Any:
    """Keep the exporters' progress prints, warnings and log lines out of the CLI output (kept for errors)."""
    buffer = io.StringIO()
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(buffer),
            contextlib.redirect_stderr(buffer),
        ):
            warnings.simplefilter("ignore")
            yield buffer
    finally:
        for logger, level in zip(loggers, levels, strict=False):
            logger.setLevel(level)


def export_model(
    model: PreTrainedModel,
    input_names: Sequence[str],
    example: dict[str, torch.Tensor],
    path: Path,
    *,
    exporter: Exporter = "dynamo",
    opset: int | None = None,
) -> int:
    """Write ``model`` as ONNX to ``path``: inputs ``input_names`` of shape (batch, sequence), int64, output
    ``logits`` (batch, C). ``example`` is a real batch (B >= 2, L >= 2, so no axis is specialised).
    Returns the opset used."""
    if exporter not in EXPORTERS:
        raise ConfigError(f"unknown exporter '{exporter}'", f"use one of {', '.join(EXPORTERS)}")
    opset = opset or EXPORTERS[exporter]
    write = _export_dynamo if exporter == "dynamo" else _export_torchscript
    with _quiet_exporter(), torch.no_grad():
        try:
            write(
                _LogitsOnly(model).eval(), tuple(example[name] for name in input_names), list(input_names), path, opset
            )
        except Exception as exc:
            other = "torchscript" if exporter == "dynamo" else "dynamo"
            raise ExportError(
                f"the {exporter} exporter (opset {opset}) failed on {type(model).__name__}: {_first_line(exc)}",
                f"try --exporter {other} or another --opset",
            ) from None
    return opset


def _export_dynamo(
    wrapper: _LogitsOnly, args: tuple[torch.Tensor, ...], names: list[str], path: Path, opset: int
) -> None:
    """``torch.export`` + onnxscript; the sequence axis is bounded by the model's positions when it has some."""
    positions = getattr(wrapper.model.config, "max_position_embeddings", None)
    batch = torch.export.Dim("batch")
    sequence = torch.export.Dim("sequence", max=int(positions)) if positions else torch.export.Dim("sequence")
    program = torch.onnx.export(
        wrapper,
        args,
        dynamo=True,
        opset_version=opset,
        input_names=names,
        output_names=["logits"],
        dynamic_shapes={name: {0: batch, 1: sequence} for name in names},
        verbose=False,
    )
    assert program is not None
    program.save(str(path), external_data=False)


def _export_torchscript(
    wrapper: _LogitsOnly, args: tuple[torch.Tensor, ...], names: list[str], path: Path, opset: int
) -> None:
    """The legacy tracer, batch and sequence marked dynamic."""
    torch.onnx.export(
        wrapper,
        args,
        str(path),
        dynamo=False,
        opset_version=opset,
        input_names=names,
        output_names=["logits"],
        dynamic_axes={**{name: {0: "batch", 1: "sequence"} for name in names}, "logits": {0: "batch"}},
    )


def _first_line(exc: Exception) -> str:
    """``Type: first line of the message`` (200 characters at most) for a one-line error."""
    detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return f"{type(exc).__name__}: {detail[:200]}"


def fuse_for_onnxruntime(source: Path, target: Path) -> dict[str, int]:
    """onnxscript's onnxruntime fusions (``optimize_for_ort``): attention subgraphs become ``Attention``,
    residual + LayerNorm ``SkipLayerNormalization``, bias + GELU ``BiasGelu`` (onnxruntime contrib ops, so the
    result runs on onnxruntime only). Returns the count of each fusion applied. The attention fusion matches the
    dynamo exporter's graphs, not the TorchScript tracer's."""
    import onnx_ir
    from onnxscript.rewriter.ort_fusions import optimize_for_ort

    with _quiet_exporter():
        try:
            model, counts = optimize_for_ort(onnx_ir.load(str(source)))
            onnx_ir.save(model, str(target))
        except Exception as exc:
            raise ExportError(f"the onnxruntime fusions failed: {_first_line(exc)}", "export with --no-fuse") from None
    return {name: int(count) for name, count in counts.items() if count}


def quantize_int8(source: Path, target: Path, *, per_channel: bool = False) -> None:
    """Dynamic int8 quantisation (onnxruntime): int8 weights, activations quantised per batch at run time
    (MatMul -> MatMulInteger / DynamicQuantizeMatMul). Shape inference runs first (``quant_pre_process``)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = target.with_name(target.stem + ".prep.onnx")
    with _quiet_exporter():
        try:
            quant_pre_process(str(source), str(prepared), skip_optimization=False, skip_symbolic_shape=True)
            quantize_dynamic(prepared, target, weight_type=QuantType.QInt8, per_channel=per_channel)
        except Exception as exc:
            raise ExportError(f"int8 quantisation failed: {_first_line(exc)}", "export without --quantize") from None
        finally:
            prepared.unlink(missing_ok=True)
