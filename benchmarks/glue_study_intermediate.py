"""The intermediate-layer part of the GLUE study (issue 13): its runs and its section of docs/results.md.

    python benchmarks/glue_study.py --parts intermediate --intermediate-tasks cola,sst2 --epochs 1 ...

On each task and seed it trains, from the task's teacher and at the study's budget (the paper preset's
learning rate, batch size, α, β, T, K; the study's epochs): ``kd`` and ``adkd`` (again, so that every new
method has its baseline on the same teacher and seeds), ``kd+hidden``, ``adkd+hidden`` and ``adkd-layer2``
(see :func:`study_common.method_runs`). The runs go to their own JSON (``--intermediate-results``), and the
section sits between two markers in the report: the rest of docs/results.md is left as it is.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import study_common as common
from study_common import INTERMEDIATE_BEGIN, INTERMEDIATE_END, replace_section

NAMES = {
    "kd": "vanilla KD",
    "adkd": "AD-KD (maps at the embeddings)",
    "kd+hidden": "KD + hidden",
    "adkd+hidden": "AD-KD + hidden",
    "adkd-layer2": "AD-KD, maps at layer 2 (teacher 4)",
}
#: (method, baseline) pairs of the verdict table
COMPARISONS = (("kd+hidden", "kd"), ("adkd+hidden", "adkd"), ("adkd+hidden", "kd"), ("adkd-layer2", "adkd"))


def run_intermediate(study: Any, seeds: list[int]) -> list[dict[str, Any]]:
    """Train the part's runs (finished ones are skipped), then write its section of the report."""
    args = study.args
    tasks = [t for t in args.intermediate_tasks.split(",") if t]
    runs = common.save_results(args.intermediate_results, [])
    for task in tasks:
        for seed in seeds:
            for spec in common.method_runs(task, seed, list(common.INTERMEDIATE_METHODS)):
                runs = common.save_results(args.intermediate_results, [study.run(spec)])
    original = json.loads(args.results.read_text())["runs"] if args.results.is_file() else []
    teachers = {t: json.loads((study.teacher(t) / "run.json").read_text())["metrics"] for t in tasks}
    norms = {t: first_grad_norms(study.work / t / "adkd+hidden" / f"seed-{seeds[0]}" / "run.json") for t in tasks}
    reading = args.intermediate_reading.read_text().strip() if args.intermediate_reading else ""
    lines = section(study, runs, tasks, teachers, norms, original, reading)
    replace_section(args.report, INTERMEDIATE_BEGIN, INTERMEDIATE_END, lines)
    print(f"[study] intermediate-layer section written to {args.report}", flush=True)
    return runs


def first_grad_norms(path: Path) -> dict[str, float]:
    """Median gradient norm of each weighted term over the first logged steps of a run (``mse`` as ``ce``)."""
    if not path.is_file():
        return {}
    records = json.loads(path.read_text()).get("term_grad_norms") or []
    records = [{("ce" if k == "mse" else k): v for k, v in r.items() if k != "step"} for r in records]
    terms = sorted({k for r in records for k in r})
    return {term: statistics.median(float(r[term]) for r in records if term in r) for term in terms}


def verdict_rows(runs: list[dict[str, Any]], tasks: list[str]) -> list[str]:
    """The paired verdict of each (method, baseline) on each task: the study's rule (common.verdict)."""
    rows = []
    for method, baseline in COMPARISONS:
        for task in tasks:
            diffs = common.paired_difference(runs, task, method, baseline)
            spread = common.mean_std([100 * v for v in common.metric_values(runs, task, baseline)])[1]
            mean, std = common.mean_std(diffs) if diffs else (float("nan"), float("nan"))
            rows.append(
                f"| {NAMES[method]} − {NAMES[baseline]} | {task.upper()} | {', '.join(f'{d:+.2f}' for d in diffs)} "
                f"| {mean:+.2f} ± {std:.2f} | {spread:.2f} | {common.verdict(diffs, spread, NAMES[method])} |"
            )
    return rows


def reproduction(runs: list[dict[str, Any]], original: list[dict[str, Any]], tasks: list[str]) -> list[str]:
    """How far the re-run kd and adkd are from the original study's runs of the same seeds (points)."""
    lines = []
    for task in tasks:
        for method in ("kd", "adkd"):
            mine = {
                r["seed"]: r["metrics"][common.REPORTED[task]]
                for r in runs
                if (r["task"], r["method"]) == (task, method)
            }
            old = {
                r["seed"]: r["metrics"][common.REPORTED[task]]
                for r in original
                if (r["task"], r["method"]) == (task, method)
            }
            both = sorted(set(mine) & set(old))
            if both:
                gaps = [100 * abs(mine[s] - old[s]) for s in both]
                lines.append(f"{task.upper()} {method}: {statistics.fmean(gaps):.2f} (largest {max(gaps):.2f})")
    return lines


def introduction(study: Any, runs: list[dict[str, Any]], tasks: list[str]) -> list[str]:
    """The section's heading, what was run and how."""
    args = study.args
    return [
        INTERMEDIATE_BEGIN,
        "## Beyond logits: intermediate layers (issue 13)",
        "",
        f"The same setting as above (paper preset per task, {args.epochs} epoch(s), length-grouped batches, seeds "
        f"{args.seeds}), on {', '.join(t.upper() for t in tasks)}, with teachers fine-tuned again by the same",
        "recipe. `kd` and `adkd` were re-run on those teachers, so every comparison below is paired on the same",
        "teacher, seeds, batches and initial weights. New methods (`--plugin adkd --plugin hidden`, kdkit's",
        "composable losses):",
        "",
        "- **KD + hidden**: the study's `kd` plus the `hidden` loss: MSE between student layers 1, 2, 3 and teacher",
        "  layers 2, 4, 6 (the uniform map; the `copy:3` student was copied from them) over every real token, "
        f"weight {common.HIDDEN['weight']:g}",
        "  (TinyBERT's; not tuned). Student and teacher are both 384 wide, so there is no projection.",
        "- **AD-KD + hidden**: `adkd` plus the same `hidden` term.",
        "- **AD-KD, maps at layer 2**: `adkd` with the attribution maps taken at the output of student layer 2 and",
        "  of teacher layer 4 (`--set ig.layer=2`, uniform map) instead of the embeddings (the paper's Table 3).",
        "",
        "```bash",
        study.command + " --parts intermediate",
        "```",
        "",
        f"Machine: {study.machine}. Section written {time.strftime('%Y-%m-%d')}; training wall time of its "
        f"{len(runs)} student runs: {sum(r['wall_time_s'] for r in runs) / 3600:.1f} h.",
    ]


def score_table(runs: list[dict[str, Any]], tasks: list[str], teachers: dict[str, dict[str, float]]) -> list[str]:
    """Dev metric of every method (mean ± std over seeds), the teacher's above."""
    header = " | ".join(f"{t.upper()} ({common.REPORTED[t]})" for t in tasks)
    lines = [
        f"| method | {header} |",
        "|---|" + "---:|" * len(tasks),
        "| teacher | " + " | ".join(f"{100 * teachers[t][common.REPORTED[t]]:.2f}" for t in tasks) + " |",
    ]
    for method in common.INTERMEDIATE_METHODS:
        cells = " | ".join(common.fmt(common.metric_values(runs, t, method)) for t in tasks)
        lines.append(f"| {NAMES[method]} | {cells} |")
    return lines


def cost_tables(runs: list[dict[str, Any]], tasks: list[str], norms: dict[str, dict[str, float]]) -> list[str]:
    """Wall time per method and task; the terms' gradient norms at the start of ``adkd+hidden``."""
    lines = ["| method | " + " | ".join(t.upper() for t in tasks) + " |", "|---|" + "---:|" * len(tasks)]
    for method in common.INTERMEDIATE_METHODS:
        times = [[r["wall_time_s"] for r in runs if (r["task"], r["method"]) == (t, method)] for t in tasks]
        lines.append(
            f"| {NAMES[method]} | " + " | ".join(f"{statistics.fmean(v):.0f}" if v else "–" for v in times) + " |"
        )
    lines += ["", "| task | CE | KD | L_attr | L_hidden | L_hidden / KD |", "|---|---:|---:|---:|---:|---:|"]
    for task in tasks:
        n = norms.get(task) or {}
        ratio = n.get("hidden", 0.0) / n["kd"] if n.get("kd") else float("nan")
        cells = " | ".join(f"{n.get(term, 0.0):.3f}" for term in ("ce", "kd", "attr", "hidden"))
        lines.append(f"| {task.upper()} | {cells} | {ratio:.2f} |")
    return lines


def section(
    study: Any,
    runs: list[dict[str, Any]],
    tasks: list[str],
    teachers: dict[str, dict[str, float]],
    norms: dict[str, dict[str, float]],
    original: list[dict[str, Any]],
    reading: str,
) -> list[str]:
    """The markdown lines of the section, markers included."""
    lines = [*introduction(study, runs, tasks), "", *score_table(runs, tasks, teachers)]
    lines += [
        "",
        "Paired by seed, with the study's rule: a difference counts only when it is larger than both twice its",
        "standard error and the baseline's seed spread.",
        "",
        "| comparison | task | per seed (points) | mean ± std | baseline seed spread | verdict |",
        "|---|---|---|---:|---:|---|",
        *verdict_rows(runs, tasks),
        "",
        "Wall time of one student's training (mean over seeds, seconds) and the pull of each term at the start",
        "(median gradient norm of each weighted term over the first logged steps of `adkd+hidden`, seed "
        f"{study.args.seeds.split(',')[0]}):",
        "",
        *cost_tables(runs, tasks, norms),
    ]
    again = reproduction(runs, original, tasks)
    if again:
        lines += ["", "Re-run against the original study's runs of the same seeds (mean |difference| in points): "
                  + "; ".join(again) + "."]  # fmt: skip
    if reading:
        lines += ["", "### Reading", "", reading]
    return [*lines, INTERMEDIATE_END]
