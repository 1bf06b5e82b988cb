"""The paper-budget study (benchmarks/paper_study.py) at tiny sizes: summaries per finished run, skipping what is
done, stopping at a budget, teacher fingerprints checked on a rebuild, one-command re-runs, the report."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from kdkit.data.tasks import get_task

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import paper_plan as plan  # noqa: E402
import paper_records as records  # noqa: E402
import paper_study  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kdkit.testing import save_tiny_classifier

    return save_tiny_classifier(tmp_path_factory.mktemp("base") / "base", get_task("cola"), num_layers=2)


def study_args(root: Path, glue_dir: Path, base: Path, *extra: str) -> list[str]:
    return [
        "--tasks", "cola", "--data-dir", str(glue_dir), "--work", str(root / "runs"),
        "--results", str(root / "results"), "--report", str(root / "results.md"), "--base-model", str(base),
        "--teacher-grid", "1e-3,3e-4", "--teacher-epochs", "1", "--epochs", "cola=1", "--seeds", "cola=2",
        "--no-levers", "--max-train-samples", "48", "--max-eval-samples", "32", "--student", "copy:1",
        "--max-length", "64", *extra,
    ]  # fmt: skip


def forbid_training(monkeypatch: pytest.MonkeyPatch, *commands: str) -> None:
    from kdkit import api

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("trained although its summary was present")

    for command in commands:
        monkeypatch.setattr(api, command, refuse)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, glue_dir: Path, tiny_base: Path) -> Path:
    """A whole tiny study: 2 teachers, CE/KD/AD-KD for 2 seeds."""
    root = tmp_path_factory.mktemp("study")
    with pytest.MonkeyPatch.context() as patch:  # module-scoped: conftest's per-test KDKIT_HOME is not set yet
        patch.setenv("KDKIT_HOME", str(root / "kdkit-home"))
        assert paper_study.main(["run", *study_args(root, glue_dir, tiny_base)]) == 0
    return root


def test_each_finished_run_leaves_a_verified_summary(finished: Path) -> None:
    results = finished / "results"
    teachers = sorted(p.name for p in (results / "cola" / "teacher").glob("*.json"))
    assert teachers == ["lr-1e-3.json", "lr-3e-4.json"]
    chosen = max(
        (records.read_summary(p) for p in (results / "cola" / "teacher").glob("*.json")), key=lambda s: s["dev_score"]
    )
    students = sorted(results.glob(f"cola/t-{chosen['fingerprint']}/*/seed-*.json"))
    assert [f"{p.parent.name}/{p.name}" for p in students] == [
        f"{m}/seed-{s}.json" for m in ("adkd", "ce", "kd") for s in (1, 2)
    ]
    summary = records.read_summary(students[0])
    assert summary is not None
    assert summary["spec"]["teacher"] == {"fingerprint": chosen["fingerprint"], "dev_score": chosen["dev_score"]}
    assert summary["main_metric"] == "mcc" and len(summary["curve"]) == 1
    assert summary["cost"]["wall_time_s"] > 0 and summary["cost"]["load_samples"] >= 1
    assert summary["machine"]["cores"] and summary["options"]["adkd"]["beta"] == 1.0
    assert "/" not in summary["config"]["data"]["data_dir"][:1]  # no absolute path of this machine
    # a hand-edited summary is refused, not reused
    edited = json.loads(students[0].read_text())
    edited["metrics"]["mcc"] = 0.99
    students[0].with_name("edited.json").write_text(json.dumps(edited))
    with pytest.raises(records.RecordError, match="checksum"):
        records.read_summary(students[0].with_name("edited.json"))
    students[0].with_name("edited.json").unlink()


def test_a_second_call_trains_nothing_and_the_report_reads_the_summaries(
    finished: Path, glue_dir: Path, tiny_base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    forbid_training(monkeypatch, "finetune", "distill")
    assert paper_study.main(["run", *study_args(finished, glue_dir, tiny_base)]) == 0
    report = (finished / "results.md").read_text()
    assert "## Paper budget (CPU)" in report and "Progress: 8 of 8 planned runs finished" in report
    for row in ("| student alone (CE) | 2 |", "| vanilla KD | 2 |", "| AD-KD | 2 |", "AD-KD − vanilla KD"):
        assert row in report


def test_the_budget_stops_between_runs(tmp_path: Path, glue_dir: Path, tiny_base: Path, capsys) -> None:
    assert paper_study.main(["run", *study_args(tmp_path, glue_dir, tiny_base, "--budget-minutes", "0")]) == 0
    assert "budget of 0 min reached" in capsys.readouterr().out
    assert not list((tmp_path / "results").rglob("*.json")) if (tmp_path / "results").exists() else True


def test_a_rebuilt_teacher_is_checked_against_its_fingerprint(
    finished: Path, glue_dir: Path, tiny_base: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    root = tmp_path / "elsewhere"  # another machine: the committed summaries, no run folders
    shutil.copytree(finished / "results", root / "results")
    forbid_training(monkeypatch, "distill")
    assert paper_study.main(["run", *study_args(root, glue_dir, tiny_base)]) == 0  # the same teacher: nothing else
    rebuilt = [p.name for p in (root / "runs" / "cola" / "teacher-grid").iterdir()]
    assert len(rebuilt) == 1  # only the chosen teacher was fine-tuned again
    monkeypatch.undo()

    # a teacher that comes out different: its students are trained and reported apart, nothing overwritten
    shutil.rmtree(root / "runs")
    real = records.teacher_fingerprint
    monkeypatch.setattr(
        records, "teacher_fingerprint", lambda path: "f" * 16 if "elsewhere" in str(path) else real(path)
    )
    before = sorted(p.relative_to(root) for p in (root / "results").rglob("*.json"))
    assert paper_study.main(["run", *study_args(root, glue_dir, tiny_base)]) == 0
    after = sorted(p.relative_to(root) for p in (root / "results").rglob("*.json"))
    assert set(before) < set(after)
    assert Path("results/cola/teacher/rebuilt-ffffffffffffffff.json") in after
    assert len(list((root / "results" / "cola" / f"t-{'f' * 16}").rglob("seed-*.json"))) == 6
    report = (root / "results.md").read_text()
    assert "Students of a **rebuilt** COLA teacher" in report


def test_rerun_trains_a_summary_again_and_lands_within_the_spread(
    finished: Path, glue_dir: Path, tiny_base: Path, capsys
) -> None:
    summary = next((finished / "results" / "cola").glob("t-*/adkd/seed-1.json"))
    assert paper_study.main(["rerun", str(summary), *study_args(finished, glue_dir, tiny_base)]) == 0
    out = capsys.readouterr().out
    assert "(+0.00 points)" in out and "within" in out  # same command, same seed: the same student


def test_tuned_rows_come_from_levers_that_beat_their_preset() -> None:
    scores = {"kd": 0.30, "kd-T2": 0.29, "adkd": 0.31, "adkd-beta10": 0.35, "adkd-T4": 0.33}
    tuned = plan.tuned_students("cola", 2, scores)
    assert [(r.method, r.seed, dict(r.adkd)) for r in tuned] == [
        ("tuned-adkd-beta10", 1, {"beta": 10.0}),
        ("tuned-adkd-beta10", 2, {"beta": 10.0}),
    ]
    assert plan.tuned_students("cola", 2, {"kd": 0.3, "kd-T4": 0.3, "adkd": 0.3}) == []  # a tie keeps the preset


def test_grid_names_and_parsing() -> None:
    assert plan.parse_grid("1e-4, 5e-5@16") == ((1e-4, 32), (5e-5, 16))
    assert [plan.grid_name(*entry) for entry in ((1e-4, 32), (5e-5, 16), (2e-4, 32))] == [
        "lr-1e-4",
        "lr-5e-5-b16",
        "lr-2e-4",
    ]


def test_a_lever_run_never_shares_a_path_with_the_dev_row_of_its_method_and_seed(tmp_path: Path) -> None:
    """The levers ``kd`` and ``adkd`` (the preset, on the held-out split) and the dev rows ``kd``/``adkd`` of the
    same seed are different runs: their folders and summaries must differ, or one overwrites the other."""
    settings = plan.Settings(work=tmp_path / "runs", results=tmp_path / "results")
    study = paper_study.Study(settings)
    levers = {run.method: run for run in plan.lever_students(settings)}
    for run in plan.main_students(settings.lever_task, 1):
        if run.method in levers:
            lever = levers[run.method]
            assert (lever.seed, lever.method) == (run.seed, run.method)
            dev_paths, lever_paths = study.student_paths(run, "fp"), study.student_paths(lever, "fp")
            assert not set(dev_paths) & set(lever_paths)
            assert plan.HOLDOUT_DIR in lever_paths[1].parts and plan.HOLDOUT_DIR not in dev_paths[1].parts


def budget_for_one_run() -> Any:
    """A ``Study.check_budget`` that lets the first run start and stops before the next."""
    checks: list[str] = []

    def check(study: Any, what: str, estimate: float | None) -> None:
        checks.append(what)
        if len(checks) > 1:
            raise paper_study.BudgetReached(f"budget reached before {what}")

    return check


def test_teachers_trains_every_grid_lr_by_lr_across_tasks_and_no_student(
    tmp_path: Path, glue_dir: Path, tiny_base: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = study_args(tmp_path, glue_dir, tiny_base)
    args[args.index("--tasks") + 1] = "cola,mrpc"
    forbid_training(monkeypatch, "distill")
    with monkeypatch.context() as budget:  # the budget runs out after the first teacher
        budget.setattr(paper_study.Study, "check_budget", budget_for_one_run())
        assert paper_study.main(["teachers", *args]) == 0
    partial = (tmp_path / "results.md").read_text()
    assert "(not yet trained: lr-3e-4; the teacher is chosen when the grid is complete)" in partial
    assert paper_study.main(["teachers", *args]) == 0
    started = [line.split("the ")[1] for line in capsys.readouterr().out.splitlines() if "fine-tuning" in line]
    assert started == [
        "cola teacher lr-1e-3", "mrpc teacher lr-1e-3", "cola teacher lr-3e-4", "mrpc teacher lr-3e-4"
    ]  # fmt: skip
    found = sorted(str(p.relative_to(tmp_path / "results")) for p in (tmp_path / "results").rglob("*.json"))
    assert found == [f"{t}/teacher/lr-{lr}.json" for t in ("cola", "mrpc") for lr in ("1e-3", "3e-4")]
    report = (tmp_path / "results.md").read_text()
    assert "**MRPC teachers**" in report and "| MRPC teachers (grid) | 2 |" in report  # curves and cost, no student
    forbid_training(monkeypatch, "finetune")
    assert paper_study.main(["teachers", *args]) == 0  # all present: nothing trained again
