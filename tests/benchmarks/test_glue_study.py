"""The GLUE study's bookkeeping (benchmarks/glue_study.py): pairing by seed, the verdict, per-task budgets."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "glue_study.py"


@pytest.fixture(scope="module")
def study() -> ModuleType:
    sys.path.insert(0, str(SCRIPT.parent))  # the scripts share study_common, beside them
    spec = importlib.util.spec_from_file_location("glue_study", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["glue_study"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def common(study: ModuleType) -> ModuleType:
    """study_common, the home of the bookkeeping the GLUE scripts share (beside glue_study, on its path)."""
    import study_common

    return study_common


def run(task: str, method: str, seed: int, value: float) -> dict:
    return {"task": task, "method": method, "seed": seed, "metrics": {"mcc": value}}


def test_differences_are_paired_by_seed_and_skip_unpaired_seeds(common: ModuleType) -> None:
    runs = [run("cola", "adkd", 1, 0.30), run("cola", "kd", 1, 0.25), run("cola", "adkd", 2, 0.20)]
    runs += [run("cola", "kd", 2, 0.22), run("cola", "kd", 3, 0.5)]
    assert common.paired_difference(runs, "cola", "adkd", "kd") == pytest.approx([5.0, -2.0])


def test_verdict_needs_a_difference_beyond_the_spread_and_the_standard_error(common: ModuleType) -> None:
    assert common.verdict([2.0, 2.1, 1.9], spread=0.5) == "AD-KD better"
    assert common.verdict([-2.0, -2.1, -1.9], spread=0.5) == "AD-KD worse"
    assert common.verdict([2.0, 2.1, 1.9], spread=3.0).startswith("no clear difference")
    assert common.verdict([3.0, -2.0, 1.0], spread=0.1).startswith("no clear difference")
    assert common.verdict([2.0], spread=0.0) == "too few seeds to say"


def test_metric_values_and_mean_std_format(common: ModuleType) -> None:
    runs = [run("cola", "kd", 2, 0.2), run("cola", "kd", 1, 0.1), run("cola", "adkd", 1, 0.9)]
    assert common.metric_values(runs, "cola", "kd") == [0.1, 0.2]
    assert common.fmt([0.1, 0.2]) == "15.00 ± 7.07"
    assert common.fmt([]) == "–"


def test_teacher_epochs_per_task(common: ModuleType) -> None:
    args = argparse.Namespace(teacher_epochs=3, teacher_epochs_for="stsb=1,mrpc=2")
    assert [common.teacher_epochs(args, t) for t in ("cola", "stsb", "mrpc")] == [3, 1, 2]


def test_methods_share_everything_but_the_loss_options(common: ModuleType) -> None:
    ce, kd, adkd = common.method_runs("cola", 2, ["ce", "kd", "adkd"])
    assert (ce.loss, kd.loss, adkd.loss) == ("ce", "adkd", "adkd")
    assert kd.options == {"adkd": {"ablation": "no_attr"}} and adkd.options == {}
    assert {r.seed for r in (ce, kd, adkd)} == {2}
    assert kd.directory(Path("w")) == Path("w/cola/kd/seed-2")


def test_intermediate_methods_are_the_study_baselines_plus_one_term(common: ModuleType) -> None:
    kd, adkd, kd_hidden, adkd_hidden, layer2 = common.method_runs("sst2", 1, list(common.INTERMEDIATE_METHODS))
    assert (kd.method, adkd.method) == ("kd", "adkd")
    assert kd_hidden.loss == adkd_hidden.loss == "adkd+hidden"
    assert kd_hidden.options == {"adkd": {"ablation": "no_attr"}, "hidden": common.HIDDEN}
    assert adkd_hidden.options == {"hidden": common.HIDDEN}
    assert (layer2.loss, layer2.options) == ("adkd", {"ig": {"layer": 2}})
    assert {r.preset for r in (kd, adkd, kd_hidden, adkd_hidden, layer2)} == {"paper"}
    assert kd_hidden.directory(Path("w")) == Path("w/sst2/kd+hidden/seed-1")


def test_verdict_names_the_method(common: ModuleType) -> None:
    assert common.verdict([2.0, 2.1, 1.9], spread=0.5, method="KD + hidden") == "KD + hidden better"


def test_the_intermediate_section_replaces_only_itself(study: ModuleType, tmp_path: Path) -> None:
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import glue_study_intermediate as part
    finally:
        sys.path.remove(str(SCRIPT.parent))
    begin, end = part.INTERMEDIATE_BEGIN, part.INTERMEDIATE_END
    report = tmp_path / "results.md"
    report.write_text("# Study\n\n| table | kept |\n")
    part.replace_section(report, begin, end, [begin, "first", end])
    assert report.read_text() == f"# Study\n\n| table | kept |\n\n{begin}\nfirst\n{end}\n"
    report.write_text(report.read_text() + "\n## after\n")
    part.replace_section(report, begin, end, [begin, "second", end])
    text = report.read_text()
    assert "first" not in text and "second" in text
    assert text.startswith("# Study\n\n| table | kept |\n") and text.endswith("\n## after\n")
    # a section that goes first (the paper-budget study's): right after the title, then replaced in place
    part.replace_section(report, "<!-- a -->", "<!-- b -->", ["<!-- a -->", "top", "<!-- b -->"], after_title=True)
    assert report.read_text().startswith("# Study\n\n<!-- a -->\ntop\n<!-- b -->\n\n| table | kept |")
    part.replace_section(report, "<!-- a -->", "<!-- b -->", ["<!-- a -->", "new", "<!-- b -->"], after_title=True)
    assert "top" not in report.read_text() and report.read_text().count("<!-- a -->") == 1


def test_the_intermediate_section_pairs_each_method_with_its_baseline(study: ModuleType, tmp_path: Path) -> None:
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import glue_study_intermediate as part
    finally:
        sys.path.remove(str(SCRIPT.parent))
    values = {"kd": 0.20, "adkd": 0.21, "kd+hidden": 0.30, "adkd+hidden": 0.211, "adkd-layer2": 0.10}
    runs = [
        {**run("cola", method, seed, value + 0.001 * seed), "wall_time_s": 10.0}
        for method, value in values.items()
        for seed in (1, 2, 3)
    ]
    args = argparse.Namespace(epochs=1, seeds="1,2,3")
    fake = argparse.Namespace(args=args, command="python benchmarks/glue_study.py", machine="test")
    norms = {"cola": {"ce": 0.2, "kd": 1.0, "attr": 0.3, "hidden": 0.5}}
    lines = part.section(fake, runs, ["cola"], {"cola": {"mcc": 0.26}}, norms, [], "")
    text = "\n".join(lines)
    assert lines[0] == part.INTERMEDIATE_BEGIN and lines[-1] == part.INTERMEDIATE_END
    assert (
        "| KD + hidden − vanilla KD | COLA | +10.00, +10.00, +10.00 | +10.00 ± 0.00 | 0.10 | KD + hidden better |"
        in text
    )
    assert "AD-KD + hidden − AD-KD (maps at the embeddings) | COLA | +0.10, +0.10, +0.10" in text
    assert "| AD-KD, maps at layer 2 (teacher 4) − AD-KD (maps at the embeddings) | COLA |" in text
    assert "AD-KD, maps at layer 2 (teacher 4) worse" in text
    assert "| COLA | 0.200 | 1.000 | 0.300 | 0.500 | 0.50 |" in text


def test_the_plan_follows_the_parts_and_the_command_drops_parts_and_note(study: ModuleType) -> None:
    args = argparse.Namespace(tasks="cola,mrpc", ablation_tasks="cola", lever_task="sst2")
    plan = study.plan_runs(args, {"main", "ablations"}, [1, 2], [1])
    assert [(r.task, r.method, r.seed) for r in plan[:3]] == [("cola", "ce", 1), ("cola", "kd", 1), ("cola", "adkd", 1)]
    assert len(plan) == 2 * 2 * 3 + 2 and {r.method for r in plan[-2:]} == {"adkd-no-ce", "adkd-no-kd"}
    assert [r.method for r in study.plan_runs(args, {"levers"}, [1, 2], [2])] == list(study.LEVERS)
    argv = ["--tasks", "cola", "--parts", "report", "--note", "busy", "--epochs", "1"]
    assert study.regenerating_command(argv) == "python benchmarks/glue_study.py --tasks cola --epochs 1"
