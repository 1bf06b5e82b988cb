"""The Pareto frontier of the finished trials, and the chosen student.

A trial dominates another when it is at least as good on every objective and better on one: score (higher is
better), p95 latency and, with a size budget, size on disk (lower is better). The frontier is the trials that
no other trial dominates. The chosen student is the most accurate trial that meets every budget (ties: the
faster, then the smaller, then the earlier); when none does, the closest ones are named with what each misses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kdkit.compress.budget import Budget, BudgetUnmet

#: a finished trial as the report sees it: ``number``, ``params`` and the ``measured`` dict
Row = dict[str, Any]


def objectives(measured: dict[str, Any], with_size: bool) -> tuple[float, ...]:
    """The values Optuna optimises, all to be minimised here: (−score, p95 ms[, size MB])."""
    values = (-float(measured["score"]), float(measured["p95_ms"]))
    return (*values, float(measured["size_bytes"]) / 1e6) if with_size else values


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether ``a`` is no worse than ``b`` everywhere and better somewhere (every objective minimised)."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(x < y for x, y in zip(a, b, strict=True))


def pareto_front(rows: Sequence[Row], with_size: bool) -> list[Row]:
    """The rows no other row dominates, fastest first."""
    points = [objectives(row["measured"], with_size) for row in rows]
    front = [row for i, row in enumerate(rows) if not any(dominates(p, points[i]) for p in points)]
    return sorted(front, key=lambda row: (row["measured"]["p95_ms"], -row["measured"]["score"]))


def _preference(row: Row) -> tuple[float, float, float, int]:
    measured = row["measured"]
    return (-measured["score"], measured["p95_ms"], measured["size_bytes"], row["number"])


def choose(rows: Sequence[Row], budget: Budget, teacher_score: float) -> Row | None:
    """The most accurate row that meets every budget, or None."""
    meeting = [row for row in rows if not budget.misses(row["measured"], teacher_score)]
    return min(meeting, key=_preference) if meeting else None


def closest(rows: Sequence[Row], budget: Budget, teacher_score: float, count: int = 3) -> list[Row]:
    """The ``count`` rows nearest to meeting the budget (:meth:`Budget.shortfall`)."""
    return sorted(rows, key=lambda row: (budget.shortfall(row["measured"], teacher_score), _preference(row)))[:count]


def unmet_error(rows: Sequence[Row], budget: Budget, teacher_score: float) -> BudgetUnmet:
    """The one-line error when no finished trial meets the budget: the closest trials and what each misses."""
    if not rows:
        return BudgetUnmet("no trial finished", "see report.md for the failed trials, fix the cause, run again")
    near = "; ".join(
        f"trial {row['number']} ({row['params'].get('student', '?')}, {row['measured']['precision']}) misses "
        + ", ".join(budget.misses(row["measured"], teacher_score))
        for row in closest(rows, budget, teacher_score)
    )
    return BudgetUnmet(
        f"no trial meets the budget ({budget.describe()}): {near}",
        "relax a budget, or run more --trials (the study continues where it stopped)",
    )
