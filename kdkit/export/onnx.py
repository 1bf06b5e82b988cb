"""PyTorch -> ONNX conversion, onnxruntime fusions and int8 quantisation: the graph-writing steps of an export.

:func:`export_model` writes a sequence classifier as an ONNX graph with the signature
``(input_ids, attention_mask[, token_type_ids]) -> logits (B, C)``, dynamic in batch and sequence, with the
exporter named in :data:`EXPORTERS` (``dynamo``: ``torch.export`` + onnxscript; ``torchscript``: the legacy
tracer). :func:`fuse_for_onnxruntime` and :func:`quantize_int8` rewrite a written graph. Each step's own prints
and warnings are kept out of the CLI's output; a failure is one :class:`~kdkit.errors.ExportError` line.
:mod:`kdkit.export` runs them and validates the result (:mod:`kdkit.export.validation`).
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

from kdkit.errors import ConfigError, ExportError, disk_full_error, is_disk_full

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
    check_opset(exporter, opset)
    opset = opset or EXPORTERS[exporter]
    write = _export_dynamo if exporter == "dynamo" else _export_torchscript
    with _quiet_exporter(), torch.no_grad():
        try:
            write(
                _LogitsOnly(model).eval(), tuple(example[name] for name in input_names), list(input_names), path, opset
            )
        except Exception as exc:
            if is_disk_full(exc):
                raise disk_full_error(exc, f"the ONNX model to {path}", "free some space and export again") from None
            other = "torchscript" if exporter == "dynamo" else "dynamo"
            raise ExportError(
                f"the {exporter} exporter (opset {opset}) failed on {type(model).__name__}: {_first_line(exc)}",
                f"try --exporter {other} or another --opset",
            ) from None
    written = written_opset(path)
    if written != opset:
        raise ExportError(
            f"the {exporter} exporter wrote opset {written}, not the {opset} asked for",
            f"use --opset {written}, or another --exporter",
        )
    return written


def opset_range(exporter: str) -> tuple[int, int]:
    """The opsets ``exporter`` writes with the installed torch: dynamo from 18 (its own opset; lower ones would
    need a down-conversion that may silently not happen), the TorchScript tracer from torch's minimum; up to
    torch's maximum for that exporter."""
    from torch.onnx import _constants

    if exporter == "dynamo":
        return 18, int(getattr(_constants, "ONNX_MAX_OPSET", EXPORTERS["dynamo"]))
    low = int(getattr(_constants, "ONNX_MIN_OPSET", 7))
    return low, int(getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", EXPORTERS["torchscript"]))


def check_opset(exporter: str, opset: int | None) -> None:
    """Refuse an exporter or ``--opset`` that the installed exporter or onnxruntime does not support, before any
    work (an opset onnxruntime cannot load would be written, then fail its validation)."""
    if exporter not in EXPORTERS:
        raise ConfigError(f"unknown exporter '{exporter}'", f"use one of {', '.join(EXPORTERS)}")
    if opset is None:
        return
    low, high = opset_range(exporter)
    if not low <= opset <= high:
        raise ConfigError(
            f"--opset {opset} is not one the {exporter} exporter of torch {torch.__version__} writes ({low} to {high})",
            f"use --opset {low} to {high} (default {EXPORTERS[exporter]})",
        )
    if not _onnxruntime_runs(opset):
        import onnxruntime

        raise ConfigError(
            f"--opset {opset} is newer than onnxruntime {onnxruntime.__version__} runs",
            f"use a lower --opset (default {EXPORTERS[exporter]}), or upgrade onnxruntime",
        )


def _onnxruntime_runs(opset: int) -> bool:
    """Whether onnxruntime loads a one-node model of ``opset``."""
    import onnx
    import onnxruntime
    from onnx import TensorProto, helper

    value = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe", [value], [output])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, onnx.IR_VERSION)
    try:
        onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception:
        return False
    return True


def written_opset(path: Path) -> int:
    """The default-domain opset a written ONNX file declares (what ``kdkit_export.json`` records)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    versions = [entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")]
    return int(versions[0]) if versions else 0


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
            if is_disk_full(exc):
                raise disk_full_error(exc, f"the ONNX model to {target}", "free some space and export again") from None
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
            if is_disk_full(exc):
                raise disk_full_error(exc, f"the ONNX model to {target}", "free some space and export again") from None
            raise ExportError(f"int8 quantisation failed: {_first_line(exc)}", "export without --quantize") from None
        finally:
            prepared.unlink(missing_ok=True)
