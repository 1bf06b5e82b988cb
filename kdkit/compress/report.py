"""``report.md``, ``frontier.svg`` and ``trials.json`` of a ``kdkit compress`` output folder.

The report states the budget, the teacher's reference row, the chosen student (or that none meets the budget),
the Pareto frontier (a table and the picture, :mod:`kdkit.compress.plot`), every finished trial's row, the
failed trials with their errors, and the search space. Scores are the task's main metric in %, measured on the
ONNX export with onnxruntime; ``drop`` is in points below the teacher; latency is p50/p95 per text at batch 1.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kdkit.compress.budget import Budget, drop_points
from kdkit.compress.frontier import Row
from kdkit.compress.plot import as_point, frontier_svg
from kdkit.compress.space import SearchSpace
from kdkit.records.manifests import write_json

REPORT_FILE = "report.md"
PLOT_FILE = "frontier.svg"
TRIALS_FILE = "trials.json"

_HEADER = (
    "| trial | student | loss | T | α | lr | epochs | max len | precision | vocab | score | fp32 | int8 "
    "| drop | agreement | p50 ms | p95 ms | MB | meets budget |"
)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def trial_row(row: Row, budget: Budget, teacher_score: float) -> str:
    """One markdown table row of a finished trial."""
    p, m = row["params"], row["measured"]
    engines = m.get("engine_scores") or {}
    misses = budget.misses(m, teacher_score)
    cells = [
        f"#{row['number']}", str(p.get("student", "")), str(p.get("loss", "")), f"{p.get('temperature', 0):.2g}",
        f"{p.get('alpha', 0):.2f}", f"{p.get('learning_rate', 0):.1e}", str(p.get("epochs", "")),
        str(p.get("max_length", "")), str(m["precision"]),
        f"{p.get('vocab', 'full')}{' (' + str(m['vocab_size']) + ')' if m.get('vocab_size') else ''}",
        _pct(m["score"]), _pct(engines.get("onnx_fp32")), _pct(engines.get("onnx_int8")),
        f"{drop_points(teacher_score, m['score']):.2f}", _pct(m.get("agreement")),
        f"{m['p50_ms']:.2f}", f"{m['p95_ms']:.2f}", f"{m['size_bytes'] / 1e6:.1f}",
        "yes" if not misses else "no: " + "; ".join(misses),
    ]  # fmt: skip
    return "| " + " | ".join(cells) + " |"


def _teacher_row(teacher: dict[str, Any]) -> str:
    return (
        f"| teacher | {_pct(teacher['score'])} | {teacher['p50_ms']:.2f} | {teacher['p95_ms']:.2f} "
        f"| {teacher['size_bytes'] / 1e6:.1f} |"
    )


def _chosen_section(chosen: Row | None, teacher: dict[str, Any], budget: Budget) -> list[str]:
    if chosen is None:
        return ["## Chosen student", "", f"**No finished trial meets the budget** ({budget.describe()}).", ""]
    m = chosen["measured"]
    speedup = teacher["p95_ms"] / m["p95_ms"] if m["p95_ms"] > 0 else float("inf")
    return [
        "## Chosen student", "",
        f"Trial #{chosen['number']}: `{chosen['params'].get('student')}` ({chosen['params'].get('loss')}, "
        f"{m['precision']}), dev score {_pct(m['score'])} ({drop_points(teacher['score'], m['score']):.2f} points "
        f"below the teacher), p95 {m['p95_ms']:.2f} ms ({speedup:.1f}× faster than the teacher), "
        f"{m['size_bytes'] / 1e6:.1f} MB. Its export, with its model card, is in `student/`.", "",
    ]  # fmt: skip


def write_report(
    output: Path,
    budget: Budget,
    space: SearchSpace,
    teacher: dict[str, Any],
    done: list[Row],
    failed: list[Row],
    frontier: list[Row],
    chosen: Row | None,
) -> Path:
    """Write ``report.md``, ``frontier.svg`` and ``trials.json`` into ``output``; returns the report's path."""
    score = float(teacher["score"])
    main = str(teacher.get("main_metric", "score"))
    svg = frontier_svg(
        [as_point(r["measured"], f"#{r['number']}") for r in done],
        [as_point(r["measured"], f"#{r['number']}") for r in frontier],
        as_point(teacher, "teacher"),
        main_metric=main,
        budget={"latency_ms": budget.max_latency_ms,
                "min_score": 100 * score - budget.max_drop if budget.max_drop is not None else None},
        chosen=as_point(chosen["measured"], f"chosen #{chosen['number']}") if chosen else None,
    )  # fmt: skip
    _write_text(output / PLOT_FILE, svg)
    lines = [
        "# kdkit compress: report", "",
        f"Budget: {budget.describe()}. Latency: onnxruntime, batch 1, {teacher['latency']['threads'] or 'default'} "
        f"thread(s), p50/p95 over the dev texts at their own lengths. {len(done)} finished trial(s), "
        f"{len(failed)} failed.", "",
        *_chosen_section(chosen, teacher, budget),
        "## Teacher (reference)", "", "| model | score | p50 ms | p95 ms | MB |", "|---|---|---|---|---|",
        _teacher_row(teacher), "",
        "## Pareto frontier", "", f"![frontier]({PLOT_FILE})", "", _HEADER, "|---" * 19 + "|",
        *(trial_row(r, budget, score) for r in frontier), "",
        "## Every finished trial", "", _HEADER, "|---" * 19 + "|",
        *(trial_row(r, budget, score) for r in sorted(done, key=lambda r: r["number"])), "",
    ]  # fmt: skip
    if failed:
        lines += ["## Failed trials", "", *(f"- #{r['number']}: {r.get('error') or 'failed'}" for r in failed), ""]
    lines += ["## Search space", "", "| dimension | values |", "|---|---|"]
    lines += [f"| {name} | {values} |" for name, values in space.describe()]
    _write_text(output / REPORT_FILE, "\n".join(lines) + "\n")
    write_json(output / TRIALS_FILE, {"teacher": {k: v for k, v in teacher.items() if k != "predictions"},
                                      "trials": done, "failed": failed})  # fmt: skip
    return output / REPORT_FILE


def _write_text(path: Path, text: str) -> None:
    """Write ``text`` atomically (another process sharing the study may write the same file)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)
