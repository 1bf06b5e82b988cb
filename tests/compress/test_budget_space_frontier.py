"""Budgets (checks, misses, constraints), the search space (depths, length cuts, plans) and the frontier."""

from __future__ import annotations

import math

import optuna
import pytest

from kdkit.compress.budget import Budget, drop_points
from kdkit.compress.frontier import choose, closest, dominates, pareto_front, unmet_error
from kdkit.compress.space import SearchSpace, check_losses, length_cuts, student_depths
from kdkit.errors import ConfigError


def _row(number: int, score: float, p95: float, mb: float = 10.0) -> dict:
    measured = {"score": score, "p95_ms": p95, "p50_ms": p95 / 2, "size_bytes": int(mb * 1e6), "precision": "fp32"}
    return {"number": number, "params": {"student": f"copy:{number + 1}"}, "measured": measured}


@pytest.mark.parametrize(
    "budget",
    [Budget(max_latency_ms=0), Budget(max_latency_ms=-1), Budget(max_size_mb=0), Budget(max_drop=-0.5),
     Budget(max_latency_ms=math.nan), Budget(max_size_mb=math.inf)],
)  # fmt: skip
def test_impossible_budgets_are_refused(budget):
    with pytest.raises(ConfigError):
        budget.check()


def test_budget_misses_and_constraints():
    budget = Budget(max_latency_ms=4, max_size_mb=20, max_drop=1.5)
    budget.check()
    teacher = 0.92
    fits = {"score": 0.91, "p95_ms": 3.9, "size_bytes": 19_000_000}
    assert budget.misses(fits, teacher) == []
    assert all(value <= 0 for value in budget.constraints(fits, teacher))
    slow_big_bad = {"score": 0.89, "p95_ms": 4.5, "size_bytes": 25_000_000}
    misses = budget.misses(slow_big_bad, teacher)
    assert misses == ["latency p95 4.50 ms > 4 ms", "size 25.0 MB > 20 MB", "drop 3.00 > 1.5 points"]
    assert budget.constraints(slow_big_bad, teacher) == pytest.approx([0.5, 5.0, 1.5])
    assert Budget(max_latency_ms=4).constraints(slow_big_bad, teacher) == pytest.approx([0.5, 0.0, 0.0])
    assert drop_points(0.9, 0.925) == pytest.approx(-2.5)


def test_student_depths_and_losses():
    assert student_depths(6) == (1, 2, 3, 4, 5)
    assert student_depths(6, [3, 1, 3]) == (1, 3)
    with pytest.raises(ConfigError, match="the teacher has 6 layers"):
        student_depths(6, [7])
    with pytest.raises(ConfigError, match="no copy:N student is smaller"):
        student_depths(1)
    assert check_losses(["kd", "adkd", "kd"]) == ("kd", "adkd")
    with pytest.raises(ConfigError):
        check_losses(["ce"])


def test_length_cuts_are_percentiles_within_limits():
    lengths = list(range(1, 101))  # 1..100 tokens
    assert length_cuts(lengths, 128) == {90: 91, 95: 96, 99: 100}  # p100 cuts at 100 too: kept once
    cuts = length_cuts(lengths, 64)
    assert max(cuts.values()) == 64 and list(cuts.values()) == sorted(set(cuts.values()))
    assert length_cuts([2, 3, 3], 128) == {90: 8}  # never below the shortest max length kdkit accepts


def test_a_plan_covers_every_dimension():
    space = SearchSpace(depths=(1, 2, 3), lengths={90: 40, 100: 64}, losses=("kd", "adkd"), max_epochs=2)
    trial = optuna.trial.FixedTrial(
        {"length_percentile": 100, "depth": 2, "loss": "adkd", "temperature": 3.0, "alpha": 0.5,
         "learning_rate": 1e-4, "epochs": 2, "precision": "int8", "vocab": "pruned"}
    )  # fmt: skip
    plan = space.suggest(trial)
    assert plan.student == "copy:2" and plan.max_length == 64 and plan.precision == "int8"
    assert plan.loss_options() == {"adkd": {"temperature": 3.0, "alpha": 0.5}}
    named = [name for name, _ in space.describe()]
    assert len(named) == 9 and "precision" in named and "vocabulary" in named


def test_pareto_front_and_choice():
    rows = [_row(0, 0.90, 5.0), _row(1, 0.88, 2.0), _row(2, 0.87, 3.0), _row(3, 0.91, 9.0), _row(4, 0.85, 1.0)]
    assert dominates((-0.88, 2.0), (-0.87, 3.0)) and not dominates((-0.88, 2.0), (-0.88, 2.0))
    front = pareto_front(rows, with_size=False)
    assert [row["number"] for row in front] == [4, 1, 0, 3]  # 2 is dominated by 1; fastest first
    budget = Budget(max_latency_ms=4, max_drop=4)
    assert choose(rows, budget, teacher_score=0.92)["number"] == 1
    assert choose(rows, Budget(max_latency_ms=0.5), 0.92) is None
    assert [row["number"] for row in closest(rows, Budget(max_latency_ms=0.5), 0.92, count=2)] == [4, 1]
    error = unmet_error(rows, Budget(max_latency_ms=0.5), 0.92)
    assert "trial 4 (copy:5, fp32) misses latency p95 1.00 ms > 0.5 ms" in str(error)


def test_size_is_an_objective_only_with_a_size_budget():
    rows = [_row(0, 0.90, 2.0, mb=30), _row(1, 0.90, 2.5, mb=10)]
    assert [row["number"] for row in pareto_front(rows, with_size=False)] == [0]
    assert [row["number"] for row in pareto_front(rows, with_size=True)] == [0, 1]


def test_pruning_is_left_out_for_a_tokenizer_that_is_not_wordpiece():
    from tokenizers import Tokenizer, models

    from kdkit.compress.search import _prunable
    from kdkit.errors import KdkitWarning

    wordpiece = type("T", (), {"backend_tokenizer": Tokenizer(models.WordPiece({"[UNK]": 0}, unk_token="[UNK]"))})()
    bpe = type("T", (), {"backend_tokenizer": Tokenizer(models.BPE())})()
    assert _prunable(wordpiece)
    with pytest.warns(KdkitWarning, match="needs a WordPiece tokenizer, not BPE"):
        assert not _prunable(bpe)
