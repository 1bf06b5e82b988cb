"""Does AD-KD beat vanilla KD here? The paper's Table 1 and 2, re-run at the scale of this machine.

For each task and seed it trains, from the same teacher and with the same data order, initialisation and
budget: the student alone (``ce``), vanilla KD and AD-KD; then the paper's ablations on two tasks, and
multi-view against single-view AD-KD on the 4-class AG News CSV. Every run is an ordinary kdkit run
directory under ``--work``; finished runs are skipped, so the study can be interrupted and resumed.
Finally it writes a JSON of every run and a markdown report (mean ± std over seeds; written by
benchmarks/glue_study_report.py), attribution heatmaps (teacher vs KD student vs AD-KD student) and the mean
attribution gap between teacher and each student.

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
from pathlib import Path
from typing import Any

from glue_study_report import write_report
from study_common import LEVERS, TASKS, Run, Study, method_runs, save_results

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SEEDS = (1, 2, 3)
ABLATION_TASKS = ("cola", "sst2")


# -- attribution pictures and the attribution gap ---------------------------------------------------------


def attribution_gap(study: Study, task: str, students: dict[str, list[Path]], limit: int) -> dict[str, list[float]]:
    """The paper's Eq. 11 gap between the teacher's and each student's maps on the first ``limit`` dev examples
    (benchmarks/attribution_gap.py: IG as the preset trains, the teacher's top-K). Returns method -> one mean gap
    per seed."""
    from attribution_gap import agreement, dev_texts, ig_provider, preset_maps, token_maps_of

    options, fraction = preset_maps(task)
    provider = ig_provider(options)
    first, second = dev_texts(study.data(task), limit)
    teacher = token_maps_of(study.teacher(task) / "best", first, second, provider, fraction)
    return {
        method: [agreement(teacher, token_maps_of(d / "best", first, second, provider))["gap"] for d in dirs]
        for method, dirs in students.items()
    }


def pictures(study: Study, task: str, count: int, out: Path) -> Path:
    """Heatmaps of a few dev examples: teacher vs vanilla-KD vs AD-KD student (seed 1), one SVG per task."""
    from attribution_gap import dev_texts

    from kdkit.attribution.explain import Explanation, explain_batch, load_for_explain
    from kdkit.attribution.heatmaps import write_svg
    from kdkit.plugins.manager import get_plugin_manager
    from kdkit.plugins.options import build_provider

    provider = build_provider(get_plugin_manager(), "ig")
    first, second = dev_texts(study.data(task), count)
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


# -- the command ----------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The study's flags."""
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
    return parser


def regenerating_command(argv: list[str]) -> str:
    """The command that regenerates everything (--parts only splits the work; finished runs are skipped)."""
    for flag in ("--parts", "--note"):
        if flag in argv:
            at = argv.index(flag)
            argv = argv[:at] + argv[at + 2 :]
    return "python " + " ".join(["benchmarks/glue_study.py", *argv])


def plan_runs(args: argparse.Namespace, parts: set[str], seeds: list[int], side_seeds: list[int]) -> list[Run]:
    """The student runs of the asked parts, in order: main, ablations, levers, views."""
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
    return plan


def measure_gaps(study: Study, tasks: list[str], seeds: list[int], gaps: dict[str, Any], path: Path) -> None:
    """The attribution gap of each task's students not measured before on the same runs, saved to ``path``."""
    for task in tasks:
        students = {m: [study.work / task / m / f"seed-{s}" for s in seeds] for m in ("ce", "kd", "adkd")}
        students = {m: [d for d in dirs if (d / "run.json").is_file()] for m, dirs in students.items()}
        if task in gaps and all(len(gaps[task].get(m, [])) == len(dirs) for m, dirs in students.items()):
            continue  # measured before on the same runs
        print(f"[study] attribution gap on {task}", flush=True)
        gaps[task] = attribution_gap(study, task, students, study.args.gap_examples)
        path.write_text(json.dumps(gaps, indent=1) + "\n")


def main() -> None:
    args = build_parser().parse_args()

    import platform
    import sys

    import torch

    torch.set_num_threads(int(os.environ.get("KDKIT_THREADS", "2")))
    from kdkit.models.loading import quiet_libraries

    quiet_libraries()
    study = Study(args)
    study.command = regenerating_command(sys.argv[1:])
    study.machine = f"{os.cpu_count()}-core {platform.machine()} CPU, no GPU, torch {torch.__version__}"
    seeds = [int(s) for s in args.seeds.split(",")]
    side_seeds = [int(s) for s in args.side_seeds.split(",")] if args.side_seeds else seeds[:2]
    parts = set(args.parts.split(","))
    plan = plan_runs(args, parts, seeds, side_seeds)
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
        measure_gaps(study, main_tasks, seeds, gaps, gaps_path)
    if "pictures" in parts:
        for task in main_tasks:
            print(f"[study] pictures for {task}", flush=True)
            pictures(study, task, args.picture_examples, args.report.parent / "results")
    if "report" in parts:
        write_report(study, runs, gaps, args.report)
        print(f"[study] report written to {args.report}", flush=True)


if __name__ == "__main__":
    main()
