"""Model cards: a README.md in the Hugging Face model-card format for every run's ``best/`` and every export.

    from kdkit.records.model_card import write_run_card
    write_run_card(run_dir, summary)   # run_dir/best/README.md + run_dir/best/training_curves.svg

A card is YAML front matter (``pipeline_tag``, ``library_name``, ``base_model`` when it is a hub id,
``datasets``, ``metrics``, ``tags`` and the dev metrics as ``model-index``), then: teacher, student, method and
options, data, a metrics table, training (time, steps, hardware), the training curves (:mod:`kdkit.records.curves`)
and how to load the model with transformers, optimum, transformers.js and ``kdkit predict``.
Everything comes from ``run.json`` (and, for an export, ``kdkit_export.json``); a missing field is left out.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import yaml

from kdkit.config import DEFAULT_BASE_MODEL_ID, default_base_model
from kdkit.records.card_sections import Facts, export_sections, run_sections
from kdkit.records.curves import CURVES_FILE, write_training_curves
from kdkit.records.fidelity import FIDELITY_FILE, read_fidelity
from kdkit.records.runs import BEST_DIR, RUN_FILE

CARD_FILE = "README.md"
GLUE_DATASET = "nyu-mll/glue"
#: kdkit metric -> (Hugging Face metric id, display name)
HF_METRICS = {
    "accuracy": ("accuracy", "Accuracy"),
    "f1": ("f1", "F1"),
    "macro_f1": ("f1", "Macro F1"),
    "mcc": ("matthews_correlation", "Matthews correlation"),
    "pearson": ("pearsonr", "Pearson correlation"),
    "spearman": ("spearmanr", "Spearman correlation"),
    "mse": ("mse", "Mean squared error"),
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def hub_id(name: str | None) -> str | None:
    """``name`` when it names a model on the Hugging Face Hub (the embedded default counts as
    sentence-transformers/all-MiniLM-L6-v2), else None (a local path is not a valid ``base_model``)."""
    if not name:
        return None
    if name.rstrip("/") == default_base_model().rstrip("/"):
        return DEFAULT_BASE_MODEL_ID
    if Path(name).exists() or not _HUB_ID.match(name) or name.startswith("copy:"):
        return None
    return name


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``, or None when it is missing or unreadable (cards never fail a run)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def run_summary_of(model_dir: str | Path | None) -> dict[str, Any] | None:
    """The run.json of the run a model directory belongs to (``<run>/best`` or ``<run>``), if any."""
    if not model_dir or not Path(model_dir).is_dir():
        return None
    path = Path(model_dir)
    return read_json(path.parent / RUN_FILE) if path.name == BEST_DIR else read_json(path / RUN_FILE)


def find_run_summary(source: Path, model_dir: Path) -> dict[str, Any] | None:
    """The run.json behind an export's source (a run directory or its ``best/``)."""
    return read_json(source / RUN_FILE) or run_summary_of(model_dir)


def base_model(summary: dict[str, Any]) -> str | None:
    """The hub model this one derives from: the base of a fine-tuned teacher; for a distilled student, a hub
    student, else the teacher, else the teacher's own base model."""
    if summary.get("command") == "finetune":
        return hub_id(summary.get("base_model"))
    student = summary.get("student")
    if student and not str(student).startswith("copy:"):
        return hub_id(str(student))
    teacher = summary.get("teacher")
    teacher_run = run_summary_of(teacher)
    return hub_id(teacher) or (hub_id(teacher_run.get("base_model")) if teacher_run else None)


def dataset_entry(summary: dict[str, Any]) -> dict[str, Any]:
    """model-index ``dataset``: GLUE as nyu-mll/glue with its configuration; custom data by task name."""
    task = summary.get("task") or {}
    data = (summary.get("config") or {}).get("data") or {}
    holdout = data.get("holdout_fraction")
    split = "train" if holdout else "validation"
    suffix = f" (held-out {100 * float(holdout):g}% of train)" if holdout else ""
    if task.get("hub_config"):
        config = str(task["hub_config"])
        return {"type": GLUE_DATASET, "name": f"GLUE {config.upper()}{suffix}", "config": config, "split": split}
    name = str(task.get("name") or "custom")
    return {"type": name, "name": f"{name} (custom data){suffix}", "split": split}


def model_index(name: str, summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The dev metrics as a Hugging Face ``model-index`` (one result per validation split)."""
    dataset = dataset_entry(summary)
    by_split: dict[str, list[dict[str, Any]]] = {}
    for key, value in (summary.get("metrics") or {}).items():
        split, _, metric = str(key).rpartition("/")
        hf_id, display = HF_METRICS.get(metric, (metric, metric))
        by_split.setdefault(split or dataset["split"], []).append(
            {"type": hf_id, "value": round(float(value), 4), "name": display}
        )
    results: list[dict[str, Any]] = [
        {
            "task": {"type": "text-classification", "name": "Text Classification"},
            "dataset": {**dataset, "split": split},
            "metrics": metrics,
        }
        for split, metrics in by_split.items()
    ]
    return [{"name": name, "results": results}]


def front_matter(name: str, summary: dict[str, Any], *, export: bool = False) -> dict[str, Any]:
    """The card's YAML header as a dict."""
    task = summary.get("task") or {}
    metric_ids = sorted({HF_METRICS.get(m, (m, m))[0] for m in task.get("metrics") or []})
    tags = ["kdkit", "text-classification"]
    if summary.get("command") == "distill":
        tags += ["knowledge-distillation", f"kdkit-{summary.get('loss')}"]
    if export:
        tags += ["onnx", "optimum"]
    header: dict[str, Any] = {
        "pipeline_tag": "text-classification",
        "library_name": "transformers.js" if export else "transformers",
    }
    base = base_model(summary)
    if base:
        header["base_model"] = base
    if task.get("hub_config"):
        header["datasets"] = [GLUE_DATASET]
    header["metrics"] = metric_ids
    header["tags"] = tags
    if summary.get("metrics"):
        header["model-index"] = model_index(name, summary)
    return header


def render(header: dict[str, Any], sections: list[str]) -> str:
    """``---\\n<yaml>---\\n\\n<sections>``."""
    text = yaml.safe_dump(header, sort_keys=False, allow_unicode=True)
    return f"---\n{text}---\n\n" + "\n\n".join(s.strip("\n") for s in sections if s) + "\n"


def display_path(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it (what a user would type)."""
    try:
        return os.path.relpath(path) if Path(path).absolute().is_relative_to(Path.cwd()) else str(path)
    except ValueError:
        return str(path)


def _facts(summary: dict[str, Any], model_dir: Path | None, location: str) -> Facts:
    teacher_run = run_summary_of(summary.get("teacher"))
    config = read_json(model_dir / "config.json") if model_dir is not None else None
    return Facts(summary=summary, teacher_run=teacher_run, model_config=config or {}, location=location)


def write_run_card(run_dir: Path, summary: dict[str, Any], *, final: Path | None = None) -> Path:
    """Write ``<run_dir>/best/README.md`` and the training curves next to it; returns the card's path.

    ``final`` is where the run will be once finished (``run_dir`` may still be ``<output>.partial``)."""
    best = run_dir / BEST_DIR
    name = (final or run_dir).name
    write_training_curves(best / CURVES_FILE, summary, title=f"{name}: training curves")
    facts = _facts(summary, best, display_path(final or run_dir))
    card = render(front_matter(name, summary), run_sections(name, facts, CURVES_FILE))
    (best / CARD_FILE).write_text(card, encoding="utf-8")
    return best / CARD_FILE


def write_export_card(export_dir: Path, manifest: dict[str, Any], summary: dict[str, Any] | None) -> dict[str, Any]:
    """Write ``README.md`` (and, when the run's history is known, the training curves) into an export folder
    (possibly still ``<output>.partial``); returns the manifest's ``card`` entry."""
    final = export_dir.with_name(export_dir.name.removesuffix(".partial"))
    run = summary or {"task": manifest.get("task"), "metrics": {}, "command": None}
    source = Path(str((manifest.get("source") or {}).get("path") or final))
    name = source.parent.name if source.name == BEST_DIR else source.name
    curves = None
    if summary is not None:
        write_training_curves(export_dir / CURVES_FILE, summary, title=f"{name}: training curves")
        curves = CURVES_FILE
    facts = _facts(run, export_dir, display_path(final))
    fidelity = None
    if (export_dir / FIDELITY_FILE).is_file():  # read back verified: it must describe these ONNX files
        fidelity = read_fidelity(export_dir)
    card = render(front_matter(name, run, export=True), export_sections(name, facts, manifest, curves, fidelity))
    (export_dir / CARD_FILE).write_text(card, encoding="utf-8")
    return {"file": CARD_FILE, "curves": curves}


def card_for_run(run_dir: Path, summary: dict[str, Any], *, final: Path, console: Any = None) -> Path | None:
    """:func:`write_run_card` at the end of a run; a failure is reported as a warning and never loses the run
    (the model, run.json and config.yaml are already written)."""
    try:
        return write_run_card(run_dir, summary, final=final)
    except Exception as exc:  # a card must not cost a finished training run
        if console is not None:
            console.print(f"[yellow]warning:[/] no model card written ({type(exc).__name__}: {str(exc)[:160]})")
        return None


def card_for_export(
    export_dir: Path, manifest: dict[str, Any], summary: dict[str, Any] | None
) -> dict[str, Any] | None:
    """:func:`write_export_card` for ``kdkit export``; a failure becomes a warning in the manifest (the validated
    models are kept) and the ``card`` entry is None."""
    try:
        return write_export_card(export_dir, manifest, summary)
    except Exception as exc:  # a card must not cost a validated export
        manifest.setdefault("warnings", []).append(f"no model card written ({type(exc).__name__}: {str(exc)[:160]})")
        return None
