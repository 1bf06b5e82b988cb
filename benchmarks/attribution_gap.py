"""The attribution gap between a teacher and its students (the paper's Eq. 11), for the studies: the GLUE study
(benchmarks/glue_study.py) and the paper-budget study's map comparison (benchmarks/paper_maps.py).

The maps are those AD-KD trains on: Integrated Gradients with the paper preset's options at the embedding output,
one normalised token map per view, â (V, L) with unit L2 norm over the real tokens (:func:`token_maps`); the
teacher keeps the preset's top-K hidden dimensions, the student all of them; V = the classes, one view for two
classes (the preset's single binary view) and for regression. Between the teacher's map â^t and a student's â^s
of one example:

- gap    = (1/V) Σ_v ‖â^t_v − â^s_v‖₂ (Eq. 11);
- l_attr = Σ_v Σ_i (â^t_{v,i} − â^s_{v,i})² / L, the AD-KD term per real token (what AD-KD minimises);
- cosine = (1/V) Σ_v Σ_i â^t_{v,i} â^s_{v,i} (1 = the same map);
- top1   = 1 when both put their largest score of view 1 on the same token.

:func:`agreement` averages each over the examples. Torch is imported inside the functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from study_common import NAMES, fmt

#: examples per attribution batch
BATCH = 32


def dev_texts(data: dict[str, Any], limit: int | None) -> tuple[list[str], list[str] | None]:
    """The first ``limit`` (default: all) examples of the first evaluation split of ``data`` (a ``data`` section
    of kdkit's configuration): their texts, and their second texts for sentence pairs."""
    from kdkit.config import DataConfig
    from kdkit.data.loading import load_raw

    spec, _, evaluation = load_raw(DataConfig.model_validate(data), need_train=False)
    split = next(iter(evaluation.values()))
    split = split.select(range(min(limit, len(split)))) if limit is not None else split
    fields = spec.text_fields
    first = [str(t) for t in split[fields[0]]]
    second = [str(t) for t in split[fields[1]]] if len(fields) == 2 else None
    return first, second


def preset_maps(task: str) -> tuple[dict[str, Any], float | None]:
    """The paper preset's IG options and teacher top-K fraction for ``task`` (IG's defaults and no top-K for a
    task the paper has no preset for, as AG News)."""
    from kdkit_adkd.presets import PAPER_TABLE, paper_preset

    if task not in PAPER_TABLE:
        return {}, None
    options = paper_preset(task)["options"]
    return dict(options["ig"]), options["adkd"]["top_k_fraction"]


def ig_provider(options: dict[str, Any]) -> Any:
    """The ``ig`` attribution provider with ``options``."""
    from kdkit.plugins.manager import get_plugin_manager
    from kdkit.plugins.options import build_provider

    return build_provider(get_plugin_manager(), "ig", options)


def token_maps_of(
    model_dir: Path, texts: list[str], pairs: list[str] | None, provider: Any, top_k_fraction: float | None = None
) -> list[np.ndarray]:
    """Each text's (V, L) map from the model saved in ``model_dir`` (top-K of its hidden size if given)."""
    import torch
    from kdkit_adkd.maps import resolve_top_k

    from kdkit.attribution.base import token_maps
    from kdkit.attribution.explain import load_for_explain

    model, tokenizer, task, max_length = load_for_explain(model_dir)
    top_k = resolve_top_k(model.config.hidden_size, None, top_k_fraction)
    views = task.num_labels if not task.is_regression and task.num_labels > 2 else 1
    maps: list[np.ndarray] = []
    for start in range(0, len(texts), BATCH):
        chunk = texts[start : start + BATCH]
        second = pairs[start : start + BATCH] if pairs is not None else None
        encoded = tokenizer(chunk, second, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        inputs = {k: v for k, v in encoded.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        mask = inputs["attention_mask"]
        targets = torch.arange(views).expand(len(chunk), -1)
        batch_maps = token_maps(provider.attribute(model, inputs, targets).detach(), mask, top_k=top_k)
        maps += [batch_maps[i, :, : int(mask[i].sum())].float().numpy() for i in range(len(chunk))]
    return maps


def agreement(teacher: list[np.ndarray], student: list[np.ndarray]) -> dict[str, float]:
    """The means over examples of the gap (Eq. 11), l_attr, cosine and top1 (module docstring)."""
    gap, l_attr, cosine, top1 = [], [], [], []
    for t, s in zip(teacher, student, strict=True):
        gap.append(float(np.linalg.norm(t - s, axis=-1).mean()))
        l_attr.append(float(((t - s) ** 2).sum() / t.shape[-1]))
        cosine.append(float((t * s).sum(-1).mean()))
        top1.append(float(t[0].argmax() == s[0].argmax()))
    return {name: float(np.mean(values)) for name, values in zip(MEASURES, (gap, l_attr, cosine, top1), strict=True)}


#: the measures of :func:`agreement`, in its order
MEASURES = ("gap", "l_attr", "cosine", "top1")


def table(students: dict[str, list[dict[str, float]]]) -> list[str]:
    """Markdown rows of :func:`agreement`'s measures per method (``ce``, ``kd``, ``adkd``: one row of measures per
    seed each), mean ± std over the seeds."""
    lines = [
        "| method | seeds | gap (Eq. 11) | L_attr per token | cosine | top-1 token |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for method in (m for m in NAMES if m in students):
        values = {key: [row[key] for row in students[method]] for key in MEASURES}
        lines.append(
            f"| {NAMES[method]} | {len(students[method])} | {fmt(values['gap'], 1, 3)} | "
            f"{fmt(values['l_attr'], 1, 4)} | {fmt(values['cosine'], 1, 3)} | {fmt(values['top1'], 100, 1)}% |"
        )
    return lines
