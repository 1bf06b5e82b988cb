"""The SST-2 compress study's report (benchmarks/compress_study.py): its section of docs/compress.md replaces
only itself, and the table and verdict come from what was measured."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from kdkit.compress import Budget

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "compress_study.py"


@pytest.fixture(scope="module")
def study() -> ModuleType:
    sys.path.insert(0, str(SCRIPT.parent))  # compress_latency_check, beside it
    spec = importlib.util.spec_from_file_location("compress_study", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["compress_study"] = module
    spec.loader.exec_module(module)
    return module


def _measured(score: float, p95: float) -> dict:
    return {"score": score, "p50_ms": p95 / 2, "p95_ms": p95, "size_bytes": 20_000_000, "precision": "int8"}


def test_the_section_reports_the_frontier_the_baselines_and_the_latency_check(study: ModuleType) -> None:
    chosen = {"number": 4, "params": {"student": "copy:2", "vocab": "pruned"}, "measured": _measured(0.9, 2.0)}
    result = type("Result", (), {"frontier": [chosen], "chosen": chosen, "rows": [chosen]})()
    facts = {
        "date": "2026-12-08", "size": "3 trials", "command": "python benchmarks/compress_study.py ...",
        "teacher": _measured(0.91, 9.0), "result": result, "budget": Budget(max_latency_ms=3.0, max_drop=1.5),
        "speedup": 3.0, "search_cpu": 600.0, "baseline_cpu": 300.0, "unmet": None,
        "checks": [("trial #4", (1.0, 2.0), (1.1, 2.1))],
        "baselines": [{"depth": 1, "measured": _measured(0.85, 1.5), "cpu_seconds": 60.0}],
    }  # fmt: skip
    text = study.section(facts)
    assert "| search #4 (copy:2, int8, vocab pruned) | 90.00 | +1.00 | 1.00 | 2.00 | 4.5x | 20.0 | - |" in text
    assert "| copy:1 KD (hand-made) | 85.00 | +6.00 | 0.75 | 1.50 | 6.0x | 20.0 | 1.0 |" in text
    assert (
        "trial #4: p50 1.10 / p95 2.10 ms against the reported 1.00 / 2.00 ms (p95 ratio 1.05, within 10%: yes)" in text
    )
    facts["checks"] = [("trial #4", (1.0, 2.0), (1.0, 2.4))]
    assert "within 10%: no" in study.section(facts)


def test_the_section_replaces_only_itself(study: ModuleType, tmp_path: Path) -> None:
    doc = tmp_path / "compress.md"
    doc.write_text(f"before\n{study.START}\nold\n{study.END}\nafter\n")
    study.write_section("new text\n", doc)
    assert doc.read_text() == f"before\n{study.START}\nnew text\n{study.END}\nafter\n"
