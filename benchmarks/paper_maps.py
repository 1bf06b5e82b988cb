"""Do AD-KD's students explain like their teacher? (issue 18's reading) The paper study's dev-set students (CE,
vanilla KD, AD-KD; every seed) against their teacher on the task's dev sentences: the attribution gap of the
paper's Eq. 11, the AD-KD term L_attr per token, the maps' cosine and the top-1 token agreement, with the maps AD-KD
trains on (benchmarks/attribution_gap.py says how each is computed).

    python benchmarks/paper_maps.py --task cola                    # the study's chosen teacher and its students
    python benchmarks/paper_maps.py --task cola --max-sentences 200

The summary goes to ``benchmarks/results/paper/<task>/t-<fp>/map-agreement.json`` (checksummed like the study's);
the table is printed, and the study's report shows it under the task's students.
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
from paper_report import MAPS_SUMMARY

os.environ.setdefault("HF_HUB_OFFLINE", "1")

METHODS = ("ce", "kd", "adkd")


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


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """The teacher's maps, then each student's agreement with them."""
    from attribution_gap import agreement, dev_texts, ig_provider, preset_maps, token_maps_of

    def compared(student: Path) -> dict[str, Any]:
        return {"seed": student.parent.name, **agreement(reference, token_maps_of(student, texts, pairs, provider))}

    teacher_dir = args.teacher or chosen_teacher(args.results, args.work, args.task)
    fingerprint = records.teacher_fingerprint(teacher_dir)
    folder = args.students or args.work / args.task / f"t-{fingerprint}"
    runs = students(folder, args.results / args.task / f"t-{fingerprint}")
    if not runs:
        raise SystemExit(f"no student under {folder}/{{{','.join(METHODS)}}}/seed-*/best")
    options, fraction = preset_maps(args.task)
    provider = ig_provider(options)
    texts, pairs = dev_texts({"task": args.task, "data_dir": str(args.data_dir)}, args.max_sentences)
    with records.measured() as cost:
        reference = token_maps_of(teacher_dir, texts, pairs, provider, fraction)
        rows = {method: [compared(student) for student in found] for method, found in runs.items()}
    return {
        "task": args.task,
        "teacher": {"fingerprint": fingerprint},
        "sentences": len(texts),
        "maps": {"provider": "ig", **provider.options.model_dump(), "teacher_top_k_fraction": fraction},
        "students": rows,
        "cost": cost.to_json(),
        "machine": records.machine(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
    }


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="cola")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("KDKIT_GLUE_DIR", "../shared/data/glue")))
    parser.add_argument("--work", type=Path, default=Path("runs/paper"), help="the study's run folders")
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/paper"), help="its summaries")
    parser.add_argument("--teacher", type=Path, default=None, help="a teacher model folder (default: the chosen)")
    parser.add_argument("--students", type=Path, default=None, help="a t-<fp> run folder (default: the teacher's)")
    parser.add_argument("--max-sentences", type=int, default=None, help="the first N dev sentences (default: all)")
    parser.add_argument("--output", type=Path, default=None, help=f"default: <results>/<task>/t-<fp>/{MAPS_SUMMARY}")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    import torch

    torch.set_num_threads(int(os.environ.get("KDKIT_THREADS", "2")))
    summary = measure(args)
    output = args.output or args.results / args.task / f"t-{summary['teacher']['fingerprint']}" / MAPS_SUMMARY
    records.write_summary(output, summary)
    from attribution_gap import table

    print("\n".join(table(summary["students"])))
    print(f"\n[maps] {summary['cost']['wall_time_s']:.0f} s; summary written to {output}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
