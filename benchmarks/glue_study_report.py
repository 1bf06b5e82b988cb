"""The GLUE study's report (benchmarks/glue_study.py ``--parts report``): docs/results.md, every table computed from
the study's JSON, with the sections other scripts write kept in place. Torch-free (the presets are read)."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

from study_common import (
    GPU_BEGIN,
    GPU_END,
    INTERMEDIATE_BEGIN,
    INTERMEDIATE_END,
    LEVERS,
    NAMES,
    PAPER_BEGIN,
    PAPER_END,
    REPORTED,
    Study,
    fmt,
    kept_section,
    mean_std,
    metric_values,
    paired_difference,
    teacher_epochs,
    verdict,
    wall_time_table,
)


def hyper_parameter_table(tasks: list[str]) -> list[str]:
    """The paper preset's values per task (every method of a task uses its learning rate and batch size)."""
    from kdkit_adkd.presets import paper_preset

    lines = [
        "| task | learning rate | batch | α | β | T | K (share of hidden dims) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for task in tasks:
        preset = paper_preset(task)
        adkd, training = preset["options"]["adkd"], preset["training"]
        k = adkd["top_k_fraction"] if adkd["top_k_fraction"] is not None else "all"
        lines.append(
            f"| {task.upper()} | {training['learning_rate']} | {training['batch_size']} | {adkd['alpha']} | "
            f"{adkd['beta']} | {adkd['temperature']} | {k} |"
        )
    return lines


def teacher_hours(study: Study, runs: list[dict[str, Any]]) -> float:
    """Training wall time of the teachers of the tasks in ``runs``, in hours."""
    seconds = 0.0
    for task in sorted({r["task"] for r in runs}):
        summary = study.teacher(task) / "run.json"
        seconds += float(json.loads(summary.read_text())["train"]["wall_time_s"])
    return seconds / 3600


def write_report(study: Study, runs: list[dict[str, Any]], gaps: dict[str, Any], out: Path) -> None:
    """docs/results.md: every table computed from the study's JSON (nothing typed in by hand)."""
    args = study.args
    tasks = [t for t in args.tasks.split(",") if any(r["task"] == t for r in runs)]
    lines = [*introduction(study, runs, tasks), *student_table(study, runs, tasks), *wall_time_lines(runs, tasks)]
    lines += verdict_table(runs, tasks)
    if args.reading is not None and args.reading.is_file():
        lines += ["", "### Reading", "", args.reading.read_text().strip()]
    lines += grad_norm_table(study, tasks)
    lines += ablation_table(study, runs)
    lines += views_table(study, runs)
    lines += lever_table(study, runs)
    lines += gap_table(study, gaps)
    lines += picture_lines(out)
    paper = kept_section(out, PAPER_BEGIN, PAPER_END)  # the paper-budget study's section stays first
    if paper:
        lines[1:1] = paper.rstrip("\n").split("\n")
    kept = kept_section(out, INTERMEDIATE_BEGIN, INTERMEDIATE_END) + kept_section(out, GPU_BEGIN, GPU_END)
    out.write_text("\n".join(lines) + "\n" + kept)  # the sections other scripts write stay


def introduction(study: Study, runs: list[dict[str, Any]], tasks: list[str]) -> list[str]:
    """The title, the setup, the preset's values, the command and the machine."""
    args = study.args
    return [
        "# Does AD-KD beat vanilla KD here?",
        "",
        "<!-- written by benchmarks/glue_study.py --parts report; edit the script, not this file -->",
        "",
        "all-MiniLM-L6-v2 teacher (fine-tuned by kdkit) → `copy:3` student (its layers 1, 3, 5), the paper's",
        "per-task α, β, T, K, learning rate and batch size (`--preset paper`), IG m = 1, zero baseline,",
        f"**{args.epochs} epoch(s)** for every student (the paper: 6-10), length-grouped batches, seeds",
        f"{args.seeds} (the seed sets the student's data order and head initialisation; within a seed every",
        "method sees the same batches in the same order, from the same initial weights). Dev-set metric of the",
        "best checkpoint (evaluated each epoch), in %, mean ± standard deviation over seeds.",
        "",
        f"Data: CoLA, MRPC and STS-B full training sets; SST-2 the first {args.sst2_train_samples} of its 67,349",
        "training sentences; every dev set in full. Teachers: all-MiniLM-L6-v2 fine-tuned (lr "
        f"{args.teacher_lr}, batch 32, seed 42) for "
        + ", ".join(f"{t.upper()} {teacher_epochs(args, t)}" for t in args.tasks.split(",") if t != "sst2")
        + f" epoch(s), SST-2 on the first {args.sst2_teacher_train_samples} sentences for "
        f"{args.sst2_teacher_epochs} epoch(s). `ce` is the student "
        "trained on the labels alone; `kd` is the `adkd` loss with `ablation=no_attr` ((1-α)·CE + α·KD(T), the",
        "same code path without L_attr); `adkd` adds β·L_attr.",
        "",
        "Scale: the paper distils BERT-base (110M) into a 6-layer BERT (66M) for 6-10 epochs; here a 22M",
        "sentence-embedding model (22.7M) into a 3-layer copy (17.4M, most of it the shared word embeddings) for",
        "the epochs above, on two CPU cores. Absolute",
        "scores are therefore far below the paper's and the comparison is between methods at equal budget.",
        "",
        *hyper_parameter_table(tasks),
        "",
        "```bash",
        study.command,
        "```",
        "",
        f"Machine: {study.machine}. Report written {time.strftime('%Y-%m-%d')}. Training wall time of the "
        f"{len(runs)} student runs: {sum(r['wall_time_s'] for r in runs) / 3600:.1f} h, plus "
        f"{teacher_hours(study, runs):.1f} h for the teachers (evaluation and teacher caches not included).",
        "",
        *([args.note, ""] if args.note else []),
    ]


def student_table(study: Study, runs: list[dict[str, Any]], tasks: list[str]) -> list[str]:
    """Table 1: the teachers and each method's students per task, with the average over tasks."""
    lines = [
        "## Table 1: students on the GLUE dev sets",
        "",
        "| method | " + " | ".join(f"{t.upper()} ({REPORTED[t]})" for t in tasks) + " | average |",
        "|---|" + "---:|" * (len(tasks) + 1),
    ]
    teachers = []
    for task in tasks:
        summary = json.loads((study.teacher(task) / "run.json").read_text())
        teachers.append(float(summary["metrics"][REPORTED[task]]))
    lines.append(
        "| teacher | " + " | ".join(f"{100 * v:.2f}" for v in teachers) + f" | {100 * statistics.fmean(teachers):.2f} |"
    )
    for method in ("ce", "kd", "adkd"):
        cells, averages = [], []
        for task in tasks:
            values = metric_values(runs, task, method)
            cells.append(fmt(values))
            averages.append(values)
        seeds_all = (
            [statistics.fmean(v[i] for v in averages) for i in range(min(map(len, averages)))] if all(averages) else []
        )
        lines.append(f"| {NAMES[method]} | " + " | ".join(cells) + f" | {fmt(seeds_all)} |")
    return lines


def wall_time_lines(runs: list[dict[str, Any]], tasks: list[str]) -> list[str]:
    """One student's training wall time per method and task."""
    return [
        "",
        "Wall time of one student's training (mean over seeds, seconds; teacher-cache building excluded):",
        "",
        *wall_time_table(runs, tasks),
    ]


def verdict_table(runs: list[dict[str, Any]], tasks: list[str]) -> list[str]:
    """AD-KD minus vanilla KD, paired by seed, per task and on the average over tasks."""
    lines = ["", "## Verdict: AD-KD minus vanilla KD", ""]
    lines += [
        "Paired by seed (same batches, same initial weights); spread = standard deviation of vanilla KD over seeds.",
        "A difference counts only when it is larger than both twice its standard error and the seed spread.",
        "",
        "| task | AD-KD − KD per seed (points) | mean ± std | KD seed spread | verdict |",
        "|---|---|---:|---:|---|",
    ]
    per_seed_avg: dict[int, list[float]] = {}
    for task in tasks:
        diffs = paired_difference(runs, task, "adkd", "kd")
        spread = mean_std([100 * v for v in metric_values(runs, task, "kd")])[1]
        for i, d in enumerate(diffs):
            per_seed_avg.setdefault(i, []).append(d)
        mean, std = mean_std(diffs) if diffs else (float("nan"), float("nan"))
        lines.append(
            f"| {task.upper()} | {', '.join(f'{d:+.2f}' for d in diffs)} | {mean:+.2f} ± {std:.2f} | {spread:.2f} | "
            f"{verdict(diffs, spread)} |"
        )
    averages = [statistics.fmean(v) for v in per_seed_avg.values() if len(v) == len(tasks)]
    if averages:
        mean, std = mean_std(averages)
        kd_averages = [
            statistics.fmean(values)
            for values in zip(*(metric_values(runs, task, "kd") for task in tasks), strict=False)
        ]
        spread = 100 * mean_std(kd_averages)[1]
        lines.append(
            f"| average | {', '.join(f'{d:+.2f}' for d in averages)} | {mean:+.2f} ± {std:.2f} | {spread:.2f} "
            f"| {verdict(averages, spread)} |"
        )
    return lines


def grad_norm_table(study: Study, tasks: list[str]) -> list[str]:
    """How much each AD-KD loss term pulls on the student at the start of training (seed 1's run.json)."""
    args = study.args
    lines = [
        "",
        "How much each AD-KD loss term pulls on the student at the start of training (median gradient norm of",
        "each weighted term over the first logged steps, seed 1; `term_grad_norms` in each run.json):",
        "",
        "| task | CE (MSE for STS-B) | KD | L_attr | L_attr / KD |",
        "|---|---:|---:|---:|---:|",
    ]
    for task in tasks:
        summary_path = study.work / task / "adkd" / f"seed-{int(args.seeds.split(',')[0])}" / "run.json"
        if not summary_path.is_file():
            continue
        norms = json.loads(summary_path.read_text()).get("term_grad_norms") or []
        norms = [{("ce" if k == "mse" else k): v for k, v in n.items()} for n in norms]  # regression: MSE
        medians = {
            term: statistics.median(float(n[term]) for n in norms if term in n)
            if any(term in n for n in norms)
            else 0.0
            for term in ("ce", "kd", "attr")
        }
        ratio = medians["attr"] / medians["kd"] if medians["kd"] else float("nan")
        lines.append(
            f"| {task.upper()} | {medians['ce']:.3f} | {medians['kd']:.3f} | {medians['attr']:.3f} | {ratio:.2f} |"
        )
    return lines


def ablation_table(study: Study, runs: list[dict[str, Any]]) -> list[str]:
    """Table 2: the ablations, on the tasks that have them (none: no lines)."""
    args = study.args
    ablation_tasks = [
        t for t in args.ablation_tasks.split(",") if any(r["task"] == t and r["method"] == "adkd-no-ce" for r in runs)
    ]
    if not ablation_tasks:
        return []
    lines = ["", "## Table 2: ablations (the paper's Table 2)", ""]
    lines.append("| variant | " + " | ".join(f"{t.upper()} ({REPORTED[t]})" for t in ablation_tasks) + " |")
    lines.append("|---|" + "---:|" * len(ablation_tasks))
    for method, label in (
        ("adkd", "AD-KD"),
        ("kd", "w/o L_attr (= vanilla KD)"),
        ("adkd-no-ce", "w/o CE"),
        ("adkd-no-kd", "w/o KD"),
    ):
        lines.append(f"| {label} | " + " | ".join(fmt(metric_values(runs, t, method)) for t in ablation_tasks) + " |")
    return lines


def views_table(study: Study, runs: list[dict[str, Any]]) -> list[str]:
    """Multi-view against single-view AD-KD on AG News (no AG News runs: no lines)."""
    args = study.args
    if not any(r["task"] == "agnews" for r in runs):
        return []
    lines = [
        "",
        "## Multi-view vs single-view (AG News, 4 classes)",
        "",
        f"{args.agnews_train_samples} training and {args.agnews_eval_samples} test examples of ../shared/data/agnews;",
        "its own teacher (fine-tuned like the GLUE ones); α = 0.8, β = 1, T = 2 (SST-2's values), K = all.",
        "",
        "| method | accuracy (%) | wall time (s) |",
        "|---|---:|---:|",
    ]
    teacher = json.loads((study.teacher("agnews") / "run.json").read_text())["metrics"]["accuracy"]
    lines.append(f"| teacher | {100 * teacher:.2f} | |")
    for method, label in (
        ("kd", "vanilla KD"),
        ("adkd", "AD-KD, views = all (4 maps)"),
        ("adkd-single-view", "AD-KD, views = gold (1 map)"),
    ):
        times = [r["wall_time_s"] for r in runs if r["task"] == "agnews" and r["method"] == method]
        wall = statistics.fmean(times) if times else 0.0
        lines.append(f"| {label} | {fmt(metric_values(runs, 'agnews', method))} | {wall:.0f} |")
    return lines


def lever_table(study: Study, runs: list[dict[str, Any]]) -> list[str]:
    """The levers on the lever task's held-out share (no lever runs: no lines)."""
    args = study.args
    lever_runs = [r for r in runs if r["method"] in LEVERS]
    if not lever_runs:
        return []
    task = lever_runs[0]["task"]
    lines = [
        "",
        f"## Levers tried on a held-out {args.lever_holdout:.0%} of the {task.upper()} training set",
        "",
        "The student trains on the other part; the dev set is not used. The teacher saw the whole training set.",
        "",
        f"| variant | held-out {REPORTED[task]} (%) |",
        "|---|---:|",
    ]
    for method in LEVERS:
        values = [float(r["metrics"][REPORTED[task]]) for r in lever_runs if r["method"] == method]
        options = json.dumps(LEVERS[method]) if LEVERS[method] else "paper preset"
        lines.append(f"| `{method}`: {options} | {fmt(values)} |")
    return lines


def gap_table(study: Study, gaps: dict[str, Any]) -> list[str]:
    """The attribution gap to the teacher per task and method (none measured: no lines)."""
    args = study.args
    if not gaps:
        return []
    lines = [
        "",
        "## Attribution gap to the teacher (the paper's Eq. 11)",
        "",
        f"Mean over the first {args.gap_examples} dev examples of (1/V) Σ_v ‖â^t_v − â^s_v‖₂ (lower = the",
        "student's token maps are closer to the teacher's); mean ± std over seeds.",
        "",
        "| task | student alone (CE) | vanilla KD | AD-KD | AD-KD vs vanilla KD |",
        "|---|---:|---:|---:|---:|",
    ]
    for task, by_method in gaps.items():
        kd_gap, adkd_gap = mean_std(by_method.get("kd", []))[0], mean_std(by_method.get("adkd", []))[0]
        lines.append(
            f"| {task.upper()} | "
            + " | ".join(fmt(by_method.get(m, []), 1.0, 3) for m in ("ce", "kd", "adkd"))
            + f" | {100 * (adkd_gap / kd_gap - 1):+.0f}% |"
        )
    return lines


def picture_lines(out: Path) -> list[str]:
    """The heatmaps written beside the report (results/heatmaps-*.svg), if any."""
    svgs = sorted(out.parent.glob("results/heatmaps-*.svg"))
    if not svgs:
        return []
    lines = [
        "",
        "## Attribution pictures (the paper's Figure 10)",
        "",
        "Teacher, vanilla-KD student and AD-KD student (seed 1) on the first dev examples; darker red = larger",
        "share of the prediction's attribution (IG, m = 1, per-token L2 norm, normalised over the sentence).",
        'Made with the API behind `kdkit explain MODEL --task T "text" --svg FILE`.',
        "",
    ]
    lines += [f"![{p.stem}](results/{p.name})" for p in svgs]
    return lines
