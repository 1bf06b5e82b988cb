"""What a compressed student must meet: p95 latency, size on disk, and the accuracy drop from the teacher.

A budget is checked on what was measured on the export (:class:`kdkit.compress.trial.Measured`): p95 latency in
ms (onnxruntime, batch 1, the dev texts), the deployed ONNX file's size in MB (10^6 bytes), and the drop
``100 · (teacher score − student score)`` in points of the task's main metric (a regression task's main metric
is a correlation, where higher is better too). Optuna is given each budget as a constraint ``value − limit ≤ 0``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from kdkit.errors import ConfigError, KdkitError


class BudgetUnmet(KdkitError):
    """No finished trial meets every budget (the message names the closest ones and what each misses);
    ``result`` is the search's :class:`~kdkit.compress.search.CompressResult` all the same (set by ``compress``)."""

    result: Any = None


@dataclass(frozen=True)
class Budget:
    """The limits a chosen student must meet; ``None``: no limit on that quantity.

    Attributes:
        max_latency_ms: the largest p95 latency at batch 1, in milliseconds.
        max_size_mb: the largest ONNX model file, in MB (10^6 bytes).
        max_drop: the largest drop of the main metric below the teacher's dev score, in points (0.5 = 0.5%).
    """

    max_latency_ms: float | None = None
    max_size_mb: float | None = None
    max_drop: float | None = None

    def check(self) -> None:
        """One line for a budget that no model can meet (zero, negative, not a number)."""
        for flag, value, least in (
            ("--max-latency-ms", self.max_latency_ms, "a positive number of milliseconds, e.g. 4"),
            ("--max-size-mb", self.max_size_mb, "a positive number of MB, e.g. 30"),
        ):
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{flag} {value:g} is a budget no model can meet", f"give {least}")
        if self.max_drop is not None and not (math.isfinite(self.max_drop) and self.max_drop >= 0):
            raise ConfigError(
                f"--max-drop {self.max_drop:g} asks for a student better than its teacher",
                "give the accepted drop in points, 0 or more, e.g. 1.5",
            )

    @property
    def limits_size(self) -> bool:
        return self.max_size_mb is not None

    def excess(self, measured: dict[str, Any], teacher_score: float) -> dict[str, float]:
        """How far ``measured`` is past each limit (positive: missed; zero or negative: met), keyed by budget."""
        values: dict[str, float] = {}
        if self.max_latency_ms is not None:
            values["latency"] = float(measured["p95_ms"]) - self.max_latency_ms
        if self.max_size_mb is not None:
            values["size"] = float(measured["size_bytes"]) / 1e6 - self.max_size_mb
        if self.max_drop is not None:
            values["drop"] = drop_points(teacher_score, float(measured["score"])) - self.max_drop
        return values

    def constraints(self, measured: dict[str, Any], teacher_score: float) -> list[float]:
        """Optuna's constraint values (feasible when every one is ≤ 0), one per possible budget, in a fixed
        order (latency, size, drop; 0 for a budget not set) so that a study's constraints keep their length."""
        excess = self.excess(measured, teacher_score)
        return [excess.get(name, 0.0) for name in ("latency", "size", "drop")]

    def misses(self, measured: dict[str, Any], teacher_score: float) -> list[str]:
        """The budgets ``measured`` misses, each as ``what measured > limit``."""
        excess = self.excess(measured, teacher_score)
        said: list[str] = []
        if excess.get("latency", 0.0) > 0:
            said.append(f"latency p95 {measured['p95_ms']:.2f} ms > {self.max_latency_ms:g} ms")
        if excess.get("size", 0.0) > 0:
            said.append(f"size {measured['size_bytes'] / 1e6:.1f} MB > {self.max_size_mb:g} MB")
        if excess.get("drop", 0.0) > 0:
            said.append(f"drop {drop_points(teacher_score, measured['score']):.2f} > {self.max_drop:g} points")
        return said

    def shortfall(self, measured: dict[str, Any], teacher_score: float) -> float:
        """How far ``measured`` is from meeting every budget: the sum of each miss relative to its limit
        (0 when it meets them all), to name the closest trials."""
        limits = {"latency": self.max_latency_ms, "size": self.max_size_mb, "drop": self.max_drop}
        total = 0.0
        for name, excess in self.excess(measured, teacher_score).items():
            limit = limits[name] or 1.0
            total += max(0.0, excess) / max(limit, 1e-9 if name != "drop" else 1.0)
        return total

    def describe(self) -> str:
        parts = [
            *([f"p95 latency ≤ {self.max_latency_ms:g} ms"] if self.max_latency_ms is not None else []),
            *([f"size ≤ {self.max_size_mb:g} MB"] if self.max_size_mb is not None else []),
            *([f"drop ≤ {self.max_drop:g} points below the teacher"] if self.max_drop is not None else []),
        ]
        return ", ".join(parts) or "none (the most accurate trial is chosen)"


def drop_points(teacher_score: float, score: float) -> float:
    """``100 · (teacher − student)``: points of the main metric lost (negative: the student is better), rounded
    to 1e-9 so that a drop equal to the budget meets it (0.92 − 0.88 is 0.040000000000000036 in floats)."""
    return round(100.0 * (teacher_score - score), 9)
