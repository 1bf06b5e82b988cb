"""The paper study's bf16 check (issue 30): seed 1 of CE, KD and AD-KD on the lever task's dev set trained in bf16
(``paper_study.py bf16-check``), each set against its fp32 row. The study's remaining runs may use bf16 only if
every bf16 score lands within its fp32 row's seed spread (the range of the row's seeds); every committed row of
the study is fp32 unless its summary's spec says ``precision``."""

from __future__ import annotations

from typing import Any

import paper_plan as plan
import paper_records as records
from paper_plan import Settings
from study_common import mean_std


def bf16_runs(settings: Settings, task: str, fingerprint: str) -> dict[str, dict[str, Any]]:
    """method -> the bf16 check's summary (seed 1) of ``task``'s students of the teacher ``fingerprint``."""
    found = records.summaries(settings.results, f"{task}/t-{fingerprint}/{plan.BF16_DIR}/*/seed-*.json")
    return {s["spec"]["method"]: s for s in found if s["spec"].get("precision") == "bf16"}


def within_spread(score: float, row: list[float]) -> bool:
    """Whether ``score`` lies inside the range of the fp32 row's seeds (points)."""
    return bool(row) and min(row) - 1e-9 <= score <= max(row) + 1e-9


def check_lines(bf16: dict[str, dict[str, Any]], fp32: dict[str, dict[int, dict[str, Any]]], task: str) -> list[str]:
    """The check's table: per method, the bf16 score, fp32 seed 1, the fp32 row (mean ± std, range) and the verdict;
    the wall times side by side."""
    if not bf16:
        return []
    lines = [
        f"#### bf16 check ({task.upper()}, seed 1, `paper_study.py bf16-check`)",
        "",
        "| method | bf16 | fp32 seed 1 | fp32 row (mean ± std) | fp32 range | within | wall bf16 / fp32 seed 1 |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    verdicts = []
    for method in plan.MAIN_METHODS:
        if method not in bf16:
            continue
        run, rows = bf16[method], fp32.get(method, {})
        score = 100 * float(run["metrics"][run["main_metric"]])
        row = [100 * float(s["metrics"][s["main_metric"]]) for s in rows.values()]
        seed1 = rows.get(1)
        first = f"{100 * float(seed1['metrics'][seed1['main_metric']]):.2f}" if seed1 else "–"
        mean, std = mean_std(row)
        ok = within_spread(score, row)
        verdicts.append(ok)
        wall = f"{run['cost']['wall_time_s'] / 60:.1f} / {seed1['cost']['wall_time_s'] / 60:.1f} min" if seed1 else "–"
        span = f"{min(row):.2f}–{max(row):.2f}" if row else "–"
        lines.append(
            f"| {method} | {score:.2f} | {first} | {mean:.2f} ± {std:.2f} | {span} | {'yes' if ok else 'no'} | {wall} |"
        )
    complete = len(verdicts) == len(plan.MAIN_METHODS)
    outcome = (
        "every method lands within its fp32 row's spread: later runs may use bf16"
        if complete and all(verdicts)
        else "not every method lands within its fp32 row's spread: the study stays fp32"
        if complete
        else "incomplete: the study stays fp32 until all three methods are checked"
    )
    return [*lines, "", f"Outcome: {outcome}. Every other row of this study is fp32.", ""]
