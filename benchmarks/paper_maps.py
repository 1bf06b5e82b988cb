"""Do AD-KD's students explain like their teacher? (issue 18's reading) The paper study's dev-set students (CE,
vanilla KD, AD-KD; every seed) and their teacher explain the task's dev sentences with the paper preset's provider
(Integrated Gradients, as ``kdkit explain``), one normalised token map per class: â (V, L), unit L2 norm over the
real tokens. Per student, the mean over sentences of

- cosine  = (1/V) Σ_v Σ_i â^t_{v,i} â^s_{v,i}: 1 = the teacher's map;
- L_attr  = Σ_v Σ_i (â^t_{v,i} − â^s_{v,i})² / L: the AD-KD term per real token, what AD-KD minimises;
- top-1   = how often the student's largest token score is on the teacher's (view 1).

    python benchmarks/paper_maps.py --task cola                    # the study's chosen teacher and its students
    python benchmarks/paper_maps.py --task cola --max-sentences 200

The summary goes to ``benchmarks/results/paper/<task>/t-<fp>/map-agreement.json`` (checksummed like the study's);
the table is printed for docs/results/paper-reading.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import paper_records as records
from study_common import NAMES, fmt

os.environ.setdefault("HF_HUB_OFFLINE", "1")

METHODS = ("ce", "kd", "adkd")
#: the summary's name, in the teacher's results folder ``<task>/t-<fp>/``
SUMMARY_NAME = "map-agreement.json"
BATCH = 64


def chosen_teacher(results: Path, work: Path, task: str) -> Path:
    """The ``best/`` folder of the grid's best teacher (highest dev score among the committed summaries)."""
    grid = records.summaries(results, f"{task}/teacher/lr-*.json")
    if not grid:
        raise SystemExit(f"no teacher summary under {results / task / 'teacher'}: run benchmarks/paper_study.py first")
    best = max(grid, key=lambda summary: summary["dev_score"])
    return work / task / "teacher-grid" / Path(best["_path"]).stem / "best"


def students(folder: Path, summaries: Path) -> dict[str, list[Path]]:
    """The dev-set students under ``folder`` (a ``t-<fp>`` run folder): method -> ``seed-*/best`` folders, each the
    run of its committed summary under ``summaries`` (the same dev metrics in its run.json); others are left out,
    with a line."""
    found: dict[str, list[Path]] = {}
    for method in METHODS:
        for best in sorted((folder / method).glob("seed-*/best")):
            summary = records.read_summary(summaries / method / f"{best.parent.name}.json")
            run = best.parent / "run.json"
            if summary is None or not run.is_file() or json.loads(run.read_text())["metrics"] != summary["metrics"]:
                print(f"[maps] left out {best.parent}: not the run of a committed summary", flush=True)
                continue
            found.setdefault(method, []).append(best)
    return found


def dev_texts(task: str, data_dir: Path, limit: int | None) -> tuple[list[str], list[str] | None]:
    """The task's dev sentences (and their pairs), the first ``limit`` of them."""
    from kdkit.config import DataConfig
    from kdkit.data.loading import load_raw

    raw = load_raw(DataConfig(task=task, data_dir=data_dir), need_train=False)
    split = raw.validation["validation"]
    split = split.select(range(min(limit, len(split)))) if limit else split
    fields = raw.task.text_fields
    return list(split[fields[0]]), (list(split[fields[1]]) if len(fields) == 2 else None)


def token_maps_of(model_dir: Path, texts: list[str], pairs: list[str] | None, provider: Any) -> list[list[list[float]]]:
    """Each text's (V, L) map from the model in ``model_dir``, one view per class (``views="all"``)."""
    from kdkit.attribution.explain import explain_batch, load_for_explain

    model, tokenizer, task, max_length = load_for_explain(model_dir)
    maps = []
    for start in range(0, len(texts), BATCH):
        chunk = texts[start : start + BATCH]
        chunk_pairs = pairs[start : start + BATCH] if pairs is not None else None
        for e in explain_batch(
            model, tokenizer, task, provider, chunk, chunk_pairs, views="all", max_length=max_length
        ):
            maps.append(e.maps)
    return maps


def agreement(teacher: list[list[list[float]]], student: list[list[list[float]]]) -> dict[str, float]:
    """Mean cosine, L_attr per token and top-1 agreement of ``student``'s maps with ``teacher``'s."""
    import numpy as np

    cosine, distance, top = [], [], []
    for t_maps, s_maps in zip(teacher, student, strict=True):
        t, s = np.asarray(t_maps), np.asarray(s_maps)
        cosine.append(float((t * s).sum(-1).mean()))
        distance.append(float(((t - s) ** 2).sum() / t.shape[-1]))
        top.append(float(t[0].argmax() == s[0].argmax()))
    return {"cosine": float(np.mean(cosine)), "l_attr": float(np.mean(distance)), "top1": float(np.mean(top))}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """The teacher's maps, then each student's agreement with them."""
    from kdkit import api
    from kdkit.plugins.manager import get_plugin_manager
    from kdkit.plugins.options import build_provider

    teacher_dir = args.teacher or chosen_teacher(args.results, args.work, args.task)
    fingerprint = records.teacher_fingerprint(teacher_dir)
    folder = args.students or args.work / args.task / f"t-{fingerprint}"
    runs = students(folder, args.results / args.task / f"t-{fingerprint}")
    if not runs:
        raise SystemExit(f"no student under {folder}/{{{','.join(METHODS)}}}/seed-*/best")
    manager = get_plugin_manager()
    preset = api.resolve_distill_config({"loss": "adkd", "preset": "paper", "data": {"task": args.task}}, manager)
    ig = dict(preset.options.get("ig", {}))  # the provider's options in the paper preset (its defaults otherwise)
    provider = build_provider(manager, "ig", ig)
    texts, pairs = dev_texts(args.task, args.data_dir, args.max_sentences)
    with records.measured() as cost:
        reference = token_maps_of(teacher_dir, texts, pairs, provider)
        rows = {
            method: [
                {"seed": p.parent.name, **agreement(reference, token_maps_of(p, texts, pairs, provider))} for p in paths
            ]
            for method, paths in runs.items()
        }
    return {
        "task": args.task,
        "teacher": {"fingerprint": fingerprint},
        "sentences": len(texts),
        "provider": {"name": "ig", **provider.options.model_dump(), "views": "all"},
        "students": rows,
        "cost": cost.to_json(),
        "machine": records.machine(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
    }


def table(summary: dict[str, Any]) -> list[str]:
    """Markdown rows: per method, mean ± std over seeds of each measure."""
    lines = [
        f"Agreement with the teacher's maps ({summary['task'].upper()} dev, {summary['sentences']} sentences; "
        "mean ± std over seeds):",
        "",
        "| method | seeds | cosine | L_attr per token | top-1 token |",
        "|---|---:|---:|---:|---:|",
    ]
    for method in (m for m in METHODS if m in summary["students"]):
        rows = summary["students"][method]
        values = {key: [row[key] for row in rows] for key in ("cosine", "l_attr", "top1")}
        lines.append(
            f"| {NAMES[method]} | {len(rows)} | {fmt(values['cosine'], 1, 3)} | {fmt(values['l_attr'], 1, 4)} | "
            f"{fmt(values['top1'], 100, 1)}% |"
        )
    return lines


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="cola")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("KDKIT_GLUE_DIR", "../shared/data/glue")))
    parser.add_argument("--work", type=Path, default=Path("runs/paper"), help="the study's run folders")
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/paper"), help="its summaries")
    parser.add_argument("--teacher", type=Path, default=None, help="a teacher model folder (default: the chosen)")
    parser.add_argument("--students", type=Path, default=None, help="a t-<fp> run folder (default: the teacher's)")
    parser.add_argument("--max-sentences", type=int, default=None, help="the first N dev sentences (default: all)")
    parser.add_argument("--output", type=Path, default=None, help=f"default: <results>/<task>/t-<fp>/{SUMMARY_NAME}")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    import torch

    torch.set_num_threads(int(os.environ.get("KDKIT_THREADS", "2")))
    summary = measure(args)
    output = args.output or args.results / args.task / f"t-{summary['teacher']['fingerprint']}" / SUMMARY_NAME
    records.write_summary(output, summary)
    print("\n".join(table(summary)))
    print(f"\n[maps] {summary['cost']['wall_time_s']:.0f} s; summary written to {output}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
