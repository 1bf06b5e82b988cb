"""Does AD-KD beat vanilla KD here? The paper's Table 1 and 2, re-run at the scale of this machine.

For each task and seed it trains, from the same teacher and with the same data order, initialisation and
budget: the student alone (``ce``), vanilla KD and AD-KD; then the paper's ablations on two tasks, and
multi-view against single-view AD-KD on the 4-class AG News CSV. Every run is an ordinary kdkit run
directory under ``--work``; finished runs are skipped, so the study can be interrupted and resumed.
Finally it writes a JSON of every run and a markdown report (mean ± std over seeds), attribution heatmaps
(teacher vs KD student vs AD-KD student) and the mean attribution gap between teacher and each student.

    python benchmarks/glue_study.py --data-dir ../shared/data/glue --agnews-dir ../shared/data/agnews \\
        --work runs/study --report docs/results.md

Methods (same learning rate, batch size and epochs within a task; the paper's α, β, T, K):

- ``ce``: the copy:3 student trained on the labels alone;
- ``kd``: (1-α)·CE + α·KD(T) — the ``adkd`` loss without its attribution term (``ablation=no_attr``), so it
  differs from AD-KD by L_attr alone;
- ``adkd``: (1-α)·CE + α·KD(T) + β·L_attr (``--preset paper``);
- ablations: ``adkd-no-ce`` (without CE), ``adkd-no-kd`` (without KD); "without L_attr" is ``kd``;
- views (AG News): ``adkd`` with ``views=all`` (4 maps) vs ``views=gold`` (1 map);
- intermediate layers (``--parts intermediate``, issue 13; its own results JSON and a section of the report,
  written by benchmarks/glue_study_intermediate.py): ``kd+hidden`` (``kd`` plus the ``hidden`` loss),
  ``adkd+hidden`` and ``adkd-layer2`` (AD-KD's maps at student layer 2 / teacher layer 4, paper Table 3).
"""

from __future__ import annotations

import argparse
import json
import os
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
    PAPER_BEGIN,
    PAPER_END,
    REPORTED,
    TASKS,
    Run,
    Study,
    fmt,
    kept_section,
    mean_std,
    method_runs,
    metric_values,
    paired_difference,
    save_results,
    teacher_epochs,
    verdict,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SEEDS = (1, 2, 3)
ABLATION_TASKS = ("cola", "sst2")


# -- attribution pictures and the attribution gap ---------------------------------------------------------


def dev_texts(study: Study, task: str, limit: int) -> tuple[list[str], list[str] | None]:
    """The first ``limit`` dev examples' texts (and second texts for pairs)."""
    from kdkit.config import DataConfig
    from kdkit.data.loading import load_raw

    spec, _, evaluation = load_raw(DataConfig.model_validate(study.data(task)), need_train=False)
    split = next(iter(evaluation.values()))
    split = split.select(range(min(limit, len(split))))
    fields = spec.text_fields
    first = [str(t) for t in split[fields[0]]]
    second = [str(t) for t in split[fields[1]]] if len(fields) == 2 else None
    return first, second


def attribution_gap(study: Study, task: str, students: dict[str, list[Path]], limit: int) -> dict[str, list[float]]:
    """The paper's Eq. 11 gap between the teacher's and each student's maps on the first ``limit`` dev examples.

    For each example: (1/V) Σ_v ‖â^t_v − â^s_v‖₂ over the V = all class views (one for regression), the
    teacher's maps keeping the preset's top-K dimensions as in training, the student's all of them; IG
    with m = 1 and the zero baseline, as trained. Returns method -> one mean gap per seed.
    """
    import torch
    from kdkit_adkd.maps import resolve_top_k

    from kdkit.attribution.base import token_maps
    from kdkit.attribution.explain import load_for_explain
    from kdkit.plugins.manager import get_plugin_manager
    from kdkit.plugins.options import build_provider

    teacher, tokenizer, spec, max_length = load_for_explain(study.teacher(task) / "best")
    provider = build_provider(get_plugin_manager(), "ig")
    fraction = paper_top_k_fraction(task)
    top_k = resolve_top_k(teacher.config.hidden_size, None, fraction)
    first, second = dev_texts(study, task, limit)
    loaded = {m: [load_for_explain(d / "best")[0] for d in dirs] for m, dirs in students.items()}
    sums = {m: [0.0] * len(dirs) for m, dirs in students.items()}
    for start in range(0, len(first), 32):
        texts = first[start : start + 32]
        pairs = second[start : start + 32] if second is not None else None
        encoded = tokenizer(texts, pairs, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        inputs = {k: v for k, v in encoded.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        views = 1 if spec.is_regression else (spec.num_labels if spec.num_labels > 2 else 1)
        targets = torch.arange(views).expand(len(texts), -1)
        mask = inputs["attention_mask"]
        teacher_maps = token_maps(provider.attribute(teacher, inputs, targets).detach(), mask, top_k=top_k)
        for method, models_ in loaded.items():
            for i, student in enumerate(models_):
                student_maps = token_maps(provider.attribute(student, inputs, targets).detach(), mask)
                per_example = torch.linalg.vector_norm(teacher_maps - student_maps, dim=-1).mean(-1)
                sums[method][i] += float(per_example.sum())
    return {m: [v / len(first) for v in values] for m, values in sums.items()}


def paper_top_k_fraction(task: str) -> float | None:
    from kdkit_adkd.presets import paper_preset

    if task == "agnews":
        return None
    value = paper_preset(task)["options"]["adkd"]["top_k_fraction"]
    return float(value) if value is not None else None


def pictures(study: Study, task: str, count: int, out: Path) -> Path:
    """Heatmaps of a few dev examples: teacher vs vanilla-KD vs AD-KD student (seed 1), one SVG per task."""
    from kdkit.attribution.explain import Explanation, explain_batch, load_for_explain
    from kdkit.attribution.heatmaps import write_svg
    from kdkit.plugins.manager import get_plugin_manager
    from kdkit.plugins.options import build_provider

    provider = build_provider(get_plugin_manager(), "ig")
    first, second = dev_texts(study, task, count)
    seed = int(study.args.seeds.split(",")[0])
    models_ = {
        "teacher": study.teacher(task) / "best",
        "vanilla KD student": study.work / task / "kd" / f"seed-{seed}" / "best",
        "AD-KD student": study.work / task / "adkd" / f"seed-{seed}" / "best",
    }
    explained: dict[str, list[Explanation]] = {}
    for label, directory in models_.items():
        model, tokenizer, spec, max_length = load_for_explain(directory)
        explained[label] = explain_batch(model, tokenizer, spec, provider, first, second, max_length=max_length)
    sections = []
    for i, text in enumerate(first):
        heading = text if second is None else f"{text} | {second[i]}"
        sections.append((heading, [(label, explained[label][i]) for label in models_]))
    return write_svg(out / f"heatmaps-{task}.svg", sections)


# -- the report ---------------------------------------------------------------------------------------------


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
    names = {"ce": "student alone (CE)", "kd": "vanilla KD", "adkd": "AD-KD"}
    lines = [
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
        lines.append(f"| {names[method]} | " + " | ".join(cells) + f" | {fmt(seeds_all)} |")
    lines += [
        "",
        "Wall time of one student's training (mean over seeds, seconds; teacher-cache building excluded):",
        "",
    ]
    lines.append("| method | " + " | ".join(t.upper() for t in tasks) + " |")
    lines.append("|---|" + "---:|" * len(tasks))
    for method in ("ce", "kd", "adkd"):
        cells = []
        for task in tasks:
            times = [r["wall_time_s"] for r in runs if r["task"] == task and r["method"] == method]
            cells.append(f"{statistics.fmean(times):.0f}" if times else "–")
        lines.append(f"| {names[method]} | " + " | ".join(cells) + " |")
    lines += ["", "## Verdict: AD-KD minus vanilla KD", ""]
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
    if args.reading is not None and args.reading.is_file():
        lines += ["", "### Reading", "", args.reading.read_text().strip()]
    lines += [
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
    ablation_tasks = [
        t for t in args.ablation_tasks.split(",") if any(r["task"] == t and r["method"] == "adkd-no-ce" for r in runs)
    ]
    if ablation_tasks:
        lines += ["", "## Table 2: ablations (the paper's Table 2)", ""]
        lines.append("| variant | " + " | ".join(f"{t.upper()} ({REPORTED[t]})" for t in ablation_tasks) + " |")
        lines.append("|---|" + "---:|" * len(ablation_tasks))
        for method, label in (
            ("adkd", "AD-KD"),
            ("kd", "w/o L_attr (= vanilla KD)"),
            ("adkd-no-ce", "w/o CE"),
            ("adkd-no-kd", "w/o KD"),
        ):
            lines.append(
                f"| {label} | " + " | ".join(fmt(metric_values(runs, t, method)) for t in ablation_tasks) + " |"
            )
    if any(r["task"] == "agnews" for r in runs):
        lines += [
            "",
            "## Multi-view vs single-view (AG News, 4 classes)",
            "",
            f"{args.agnews_train_samples} training and {args.agnews_eval_samples} test examples of "
            "../shared/data/agnews;",
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
    lever_runs = [r for r in runs if r["method"] in LEVERS]
    if lever_runs:
        task = lever_runs[0]["task"]
        lines += [
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
    if gaps:
        lines += [
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
    svgs = sorted(out.parent.glob("results/heatmaps-*.svg"))
    if svgs:
        lines += [
            "",
            "## Attribution pictures (the paper's Figure 10)",
            "",
            "Teacher, vanilla-KD student and AD-KD student (seed 1) on the first dev examples; darker red = larger",
            "share of the prediction's attribution (IG, m = 1, per-token L2 norm, normalised over the sentence).",
            'Made with the API behind `kdkit explain MODEL --task T "text" --svg FILE`.',
            "",
        ]
        lines += [f"![{p.stem}](results/{p.name})" for p in svgs]
    paper = kept_section(out, PAPER_BEGIN, PAPER_END)  # the paper-budget study's section stays first
    if paper:
        lines[1:1] = paper.rstrip("\n").split("\n")
    kept = kept_section(out, INTERMEDIATE_BEGIN, INTERMEDIATE_END) + kept_section(out, GPU_BEGIN, GPU_END)
    out.write_text("\n".join(lines) + "\n" + kept)  # the sections other scripts write stay


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("KDKIT_GLUE_DIR", "../shared/data/glue")))
    parser.add_argument("--agnews-dir", type=Path, default=Path("../shared/data/agnews"))
    parser.add_argument("--work", type=Path, default=Path("runs/study"))
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    parser.add_argument(
        "--side-seeds",
        default=None,
        help="seeds of the ablations, views and levers (default: the first two of --seeds)",
    )
    parser.add_argument("--epochs", type=int, default=3, help="every student's epochs (the same for all methods)")
    parser.add_argument("--teacher-epochs", type=int, default=3)
    parser.add_argument("--teacher-epochs-for", default="", help="per-task teacher epochs, e.g. stsb=1,mrpc=2")
    parser.add_argument("--teacher-lr", type=float, default=5e-5)
    parser.add_argument("--sst2-train-samples", type=int, default=8000)
    parser.add_argument("--sst2-teacher-train-samples", type=int, default=16000)
    parser.add_argument("--sst2-teacher-epochs", type=int, default=1)
    parser.add_argument("--agnews-train-samples", type=int, default=4000)
    parser.add_argument("--agnews-eval-samples", type=int, default=2000)
    parser.add_argument("--ablation-tasks", default=",".join(ABLATION_TASKS))
    parser.add_argument("--lever-task", default="cola", help="task whose training set the levers are tried on")
    parser.add_argument("--lever-holdout", type=float, default=0.2, help="share of its training set held out")
    parser.add_argument("--gap-examples", type=int, default=128, help="dev examples for the attribution gap")
    parser.add_argument("--picture-examples", type=int, default=3)
    parser.add_argument(
        "--parts",
        default="main,ablations,views,levers,gap,pictures,report",
        help="any of main, ablations, views, levers, gap, pictures, report, intermediate",
    )
    parser.add_argument("--intermediate-tasks", default="cola,sst2", help="tasks of --parts intermediate")
    parser.add_argument(
        "--intermediate-results", type=Path, default=Path("docs/results/intermediate.json"), help="its runs"
    )
    parser.add_argument("--intermediate-reading", type=Path, default=None, help="markdown shown in its section")
    parser.add_argument("--results", type=Path, default=Path("docs/results/study.json"))
    parser.add_argument("--report", type=Path, default=Path("docs/results.md"))
    parser.add_argument("--reading", type=Path, default=None, help="a markdown file shown under the verdict")
    parser.add_argument("--note", default="", help="a paragraph for the report (e.g. how busy the machine was)")
    args = parser.parse_args()

    import platform
    import sys

    import torch

    torch.set_num_threads(int(os.environ.get("KDKIT_THREADS", "2")))
    from kdkit.models.loading import quiet_libraries

    quiet_libraries()
    study = Study(args)
    # the command that regenerates everything (--parts only splits the work; finished runs are skipped)
    argv = sys.argv[1:]
    for flag in ("--parts", "--note"):
        if flag in argv:
            at = argv.index(flag)
            argv = argv[:at] + argv[at + 2 :]
    study.command = "python " + " ".join(["benchmarks/glue_study.py", *argv])
    study.machine = f"{os.cpu_count()}-core {platform.machine()} CPU, no GPU, torch {torch.__version__}"
    seeds = [int(s) for s in args.seeds.split(",")]
    side_seeds = [int(s) for s in args.side_seeds.split(",")] if args.side_seeds else seeds[:2]
    parts = set(args.parts.split(","))
    plan: list[Run] = []
    if "main" in parts:
        for task in args.tasks.split(","):
            for seed in seeds:
                plan += method_runs(task, seed, ["ce", "kd", "adkd"])
    if "ablations" in parts:
        for task in args.ablation_tasks.split(","):
            for seed in side_seeds:
                plan += method_runs(task, seed, ["adkd-no-ce", "adkd-no-kd"])
    if "levers" in parts:
        plan += method_runs(args.lever_task, side_seeds[0], list(LEVERS))
    if "views" in parts:
        for seed in side_seeds:
            plan += method_runs("agnews", seed, ["kd", "adkd", "adkd-single-view"])
    runs = save_results(args.results, [])
    for spec in plan:
        runs = save_results(args.results, [study.run(spec)])
    if "intermediate" in parts:  # issue 13: its own runs and results, a section of the report
        from glue_study_intermediate import run_intermediate

        run_intermediate(study, seeds)
    gaps_path = args.results.with_name("gaps.json")
    gaps: dict[str, Any] = json.loads(gaps_path.read_text()) if gaps_path.is_file() else {}
    main_tasks = [
        t for t in args.tasks.split(",") if (study.work / t / "adkd" / f"seed-{seeds[0]}" / "run.json").is_file()
    ]
    if "gap" in parts:
        for task in main_tasks:
            students = {m: [study.work / task / m / f"seed-{s}" for s in seeds] for m in ("ce", "kd", "adkd")}
            students = {m: [d for d in dirs if (d / "run.json").is_file()] for m, dirs in students.items()}
            if task in gaps and all(len(gaps[task].get(m, [])) == len(dirs) for m, dirs in students.items()):
                continue  # measured before on the same runs
            print(f"[study] attribution gap on {task}", flush=True)
            gaps[task] = attribution_gap(study, task, students, args.gap_examples)
            gaps_path.write_text(json.dumps(gaps, indent=1) + "\n")
    if "pictures" in parts:
        for task in main_tasks:
            print(f"[study] pictures for {task}", flush=True)
            pictures(study, task, args.picture_examples, args.report.parent / "results")
    if "report" in parts:
        write_report(study, runs, gaps, args.report)
        print(f"[study] report written to {args.report}", flush=True)


if __name__ == "__main__":
    main()
