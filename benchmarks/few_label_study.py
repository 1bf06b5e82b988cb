"""The few-label study (issue 27, labels optional): where distillation pays, with few labels and unlabelled text.

SST-2, a fine-tuned teacher (the embedded MiniLM fine-tuned on SST-2's training set: ``--teacher RUN/best``, or
fine-tuned here), ``copy:3`` students, labelled subsets of K examples per class drawn per seed, the rest of SST-2's
training texts as the unlabelled pool (their labels unused). Rows, each trained for the same number of optimiser
steps (``--steps``, batch 32; rows with unlabelled examples draw ``--transfer-ratio`` of each batch from them) and
evaluated on SST-2's dev set (the best of ``--evals`` evaluations):

- ``ce``: the labelled subset alone (``--plugin ce``);
- ``kd``: the labelled subset, with the teacher;
- ``kd+transfer``: the subset plus the unlabelled pool (``--transfer-file``);
- ``kd+augment``: the subset and ``--augment-copies`` copies of it by ``--augmenter`` (``--augment``);
- ``soft``: the teacher's probabilities on the subset and the pool, written to a JSONL file first (as an API would
  give them), learnt with ``--soft-labels`` and ``kd.alpha=1`` (the student copies the teacher's layers through
  ``--base-model``, as the other rows' ``copy:3``);
- ``setfit``: SetFit (``pip install setfit``) on the same base model and labelled subset (skipped, with the reason,
  when it is not installed).

    python benchmarks/few_label_study.py run --teacher runs/sst2-teacher/best         # the full study
    python benchmarks/few_label_study.py run --per-class 16 --seeds 0 --steps 20 --pool 200 --eval-samples 64 \\
        --work /tmp/few-label --results /tmp/few-label/results.json                   # a smoke test
    python benchmarks/few_label_study.py report                                       # the docs/results.md table

Results: benchmarks/results/few_label_study.json (one record per row, K and seed; a record already there is not
run again).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Any

from study_common import fmt, replace_section

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "few_label_study.json"
REPORT = ROOT / "docs" / "results.md"
BEGIN = "<!-- few-label study (issue 27): written by benchmarks/few_label_study.py report; edit the script -->"
END = "<!-- end of the few-label section -->"
ROWS = ("ce", "kd", "kd+transfer", "kd+augment", "soft", "setfit")
NAMES = {
    "ce": "CE (labelled subset alone)",
    "kd": "KD",
    "kd+transfer": "KD + transfer (unlabelled pool)",
    "kd+augment": "KD + augmentation",
    "soft": "soft labels only (teacher's probabilities from a file)",
    "setfit": "SetFit",
}
LABELS = ("negative", "positive")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=["run", "report"])
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "glue")
    parser.add_argument("--teacher", help="fine-tuned SST-2 teacher (default: fine-tuned here, --teacher-epochs)")
    parser.add_argument("--teacher-epochs", type=float, default=2.0)
    parser.add_argument("--teacher-samples", type=int, help="train the teacher on the first N examples (smoke tests)")
    parser.add_argument("--per-class", default="16,64,256", help="labelled examples per class, comma-separated")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--steps", type=int, default=2000, help="optimiser steps of every student row")
    parser.add_argument("--evals", type=int, default=5, help="dev evaluations per run (the best is kept)")
    parser.add_argument("--pool", type=int, help="use N texts of the unlabelled pool (default: all)")
    parser.add_argument("--transfer-ratio", type=float, default=0.5, help="unlabelled share of each batch")
    parser.add_argument("--augmenter", default="neighbours")
    parser.add_argument("--augment-copies", type=int, default=16)
    parser.add_argument("--eval-samples", type=int, help="evaluate on the first N dev examples (smoke tests)")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--setfit-steps", type=int, default=-1, help="cap SetFit's steps (smoke tests; -1: its own)")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "few-label")
    parser.add_argument("--results", type=Path, default=RESULTS)
    return parser.parse_args()


# -- data -------------------------------------------------------------------------------------------------------


def _sst2(args: argparse.Namespace) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """SST-2's (text, label) training and dev examples from the local GLUE copy."""
    from kdkit.config import DataConfig
    from kdkit.data.loading import load_raw

    raw = load_raw(DataConfig(task="sst2", data_dir=args.data_dir, max_eval_samples=args.eval_samples))
    assert raw.train is not None
    dev = raw.validation["validation"]
    return list(zip(raw.train["sentence"], raw.train["label"], strict=True)), list(
        zip(dev["sentence"], dev["label"], strict=True)
    )


def _split(train: list[tuple[str, int]], per_class: int, seed: int, pool: int | None) -> tuple[list[Any], list[str]]:
    """K labelled examples per class (drawn with ``seed``) and the other training texts (a sample of ``pool``)."""
    rng = random.Random(f"few-label:{seed}")
    order = list(range(len(train)))
    rng.shuffle(order)
    chosen: list[int] = []
    for label in range(len(LABELS)):
        chosen += [i for i in order if train[i][1] == label][:per_class]
    taken = set(chosen)
    rest = [train[i][0] for i in order if i not in taken]
    return [train[i] for i in chosen], rest[:pool] if pool else rest


def _write_csv(path: Path, rows: list[tuple[str, int]]) -> Path:
    import csv

    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sentence", "label"])
        writer.writerows([text, LABELS[label]] for text, label in rows)
    return path


def _write_inputs(folder: Path, labelled: list[Any], pool: list[str], dev: list[Any]) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pool.txt").write_text("".join(text.replace("\n", " ") + "\n" for text in pool), encoding="utf-8")
    return {
        "train": _write_csv(folder / "train.csv", labelled),
        "validation": _write_csv(folder / "validation.csv", dev),
        "pool": folder / "pool.txt",
    }


# -- the teacher ------------------------------------------------------------------------------------------------


def _teacher(args: argparse.Namespace) -> str:
    """The teacher: ``--teacher``, or the embedded MiniLM fine-tuned on SST-2's training set now (kept in --work)."""
    if args.teacher:
        return str(args.teacher)
    from kdkit import api
    from kdkit.config import DataConfig, FinetuneConfig, TrainingConfig

    output = args.work / "teacher"
    if not (output / "best").is_dir():
        limits = {"max_train_samples": args.teacher_samples, "max_eval_samples": args.eval_samples}
        data = DataConfig(task="sst2", data_dir=args.data_dir, max_length=args.max_length).model_copy(update=limits)
        training = TrainingConfig(epochs=args.teacher_epochs, learning_rate=5e-5)
        api.finetune(FinetuneConfig(data=data, training=training, output=output, quiet=True))
    return str(output / "best")


def _write_soft_labels(teacher: str, texts: list[str], path: Path, max_length: int) -> Path:
    """The teacher's probabilities on ``texts``, one JSONL row each (``id`` and ``probs``), as an API would give."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(teacher)
    model = AutoModelForSequenceClassification.from_pretrained(teacher).eval()
    with path.open("w", encoding="utf-8") as handle, torch.no_grad():
        for start in range(0, len(texts), 128):
            batch = tokenizer(texts[start : start + 128], truncation=True, max_length=max_length, padding=True)
            probs = model(**batch.convert_to_tensors("pt")).logits.softmax(dim=-1).tolist()
            for offset, row in enumerate(probs):
                handle.write(json.dumps({"id": start + offset, "probs": dict(zip(LABELS, row, strict=True))}) + "\n")
    return path


# -- one run ----------------------------------------------------------------------------------------------------


def _distill_config(row: str, files: dict[str, Path], teacher: str, args: argparse.Namespace, seed: int) -> Any:
    from kdkit.config import DataConfig, DistillConfig, TrainingConfig

    data = DataConfig(
        task="sst2", train_file=files["train"], validation_file=files["validation"], max_length=args.max_length
    )
    data = data.model_copy(update={"label_names": list(LABELS)})
    every = max(1, args.steps // args.evals)
    training = TrainingConfig(max_steps=args.steps, batch_size=32, seed=seed, eval_steps=every, learning_rate=1e-4)
    values: dict[str, Any] = {"loss": "ce" if row == "ce" else "kd", "teacher": teacher, "student": "copy:3"}
    if row in ("kd+transfer", "kd+augment", "soft"):
        values["transfer_ratio"] = args.transfer_ratio
    if row == "kd+transfer":
        values["transfer_files"] = [str(files["pool"])]
    if row == "kd+augment":
        values |= {"augment": args.augmenter, "augment_copies": args.augment_copies}
    if row == "soft":
        values |= {"teacher": None, "base_model": teacher, "soft_labels": files["soft"]}
        values |= {"transfer_files": [str(files["pool"])], "options": {"kd": {"alpha": 1.0}}}
    output = args.work / f"k{files['k']}-s{seed}" / row.replace("+", "-")
    return DistillConfig(data=data, training=training, output=output, overwrite=True, quiet=True, **values)


def _setfit(labelled: list[Any], dev: list[Any], seed: int, max_steps: int, output: Path) -> float:
    """SetFit on the embedded MiniLM (the teacher's base model) and the labelled subset: dev accuracy (its
    checkpoints in ``output``, not saved: ``save_strategy="no"``)."""
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    from kdkit.config import default_base_model

    model = SetFitModel.from_pretrained(default_base_model())
    train = Dataset.from_dict({"text": [t for t, _ in labelled], "label": [label for _, label in labelled]})
    arguments = TrainingArguments(
        output_dir=str(output), batch_size=16, num_epochs=1, seed=seed, max_steps=max_steps, save_strategy="no"
    )
    trainer = Trainer(model=model, args=arguments, train_dataset=train)
    trainer.train()
    predictions = model.predict([text for text, _ in dev])
    return sum(int(p) == label for p, (_, label) in zip(predictions, dev, strict=True)) / len(dev)


def _run_row(row: str, files: dict[str, Any], teacher: str, args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """One row of one K and seed: its dev accuracy (or why it was skipped) and its wall time."""
    start = time.perf_counter()
    record: dict[str, Any] = {"row": row, "k": files["k"], "seed": seed}
    if row == "setfit":
        try:
            output = args.work / f"k{files['k']}-s{seed}" / "setfit"
            record["accuracy"] = _setfit(files["labelled"], files["dev"], seed, args.setfit_steps, output)
        except ImportError as exc:
            record["skipped"] = f"setfit is not installed ({exc.name}): pip install setfit"
    else:
        from kdkit import api

        result = api.distill(_distill_config(row, files, teacher, args, seed))
        record["accuracy"] = result.metrics["accuracy"]
        record["examples"] = result.summary.get("examples")
    record["wall_s"] = round(time.perf_counter() - start, 1)
    return record


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every row of every K and seed not already in the results file; the file is rewritten after each run."""
    results: list[dict[str, Any]] = json.loads(args.results.read_text()) if args.results.is_file() else []
    done = {(r["row"], r["k"], r["seed"]) for r in results}
    train, dev = _sst2(args)
    teacher = _teacher(args)
    rows = [row for row in args.rows.split(",") if row]
    for seed in (int(s) for s in args.seeds.split(",")):
        for k in (int(k) for k in args.per_class.split(",")):
            labelled, pool = _split(train, k, seed, args.pool)
            folder = args.work / f"k{k}-s{seed}"
            files: dict[str, Any] = {**_write_inputs(folder, labelled, pool, dev), "k": k}
            files |= {"labelled": labelled, "dev": dev}
            if "soft" in rows and ("soft", k, seed) not in done:
                texts = [text for text, _ in labelled] + pool
                files["soft"] = _write_soft_labels(teacher, texts, folder / "soft.jsonl", args.max_length)
            for row in rows:
                if (row, k, seed) not in done:
                    results.append(_run_row(row, files, teacher, args, seed))
                    args.results.parent.mkdir(parents=True, exist_ok=True)
                    args.results.write_text(json.dumps(results, indent=1))
                    print(json.dumps(results[-1]), flush=True)
    return results


# -- the report -------------------------------------------------------------------------------------------------


def report_lines(results: list[dict[str, Any]]) -> list[str]:
    """The docs/results.md section: dev accuracy, mean ± std over seeds, per row and labelled examples per class."""
    ks = sorted({r["k"] for r in results})
    lines = [BEGIN, "", "| row | " + " | ".join(f"{k} labels/class" for k in ks) + " |"]
    lines.append("|---|" + "---|" * len(ks))
    for row in ROWS:
        cells = []
        for k in ks:
            values = [r["accuracy"] for r in results if r["row"] == row and r["k"] == k and "accuracy" in r]
            skipped = [r["skipped"] for r in results if r["row"] == row and r["k"] == k and "skipped" in r]
            cells.append(fmt(values) + (f" ({len(values)} seeds)" if values else (" skipped" if skipped else "")))
        lines.append(f"| {NAMES[row]} | " + " | ".join(cells) + " |")
    return [*lines, "", END]


def main() -> None:
    args = _arguments()
    if args.step == "run":
        run(args)
        return
    results = json.loads(args.results.read_text()) if args.results.is_file() else []
    replace_section(REPORT, BEGIN, END, report_lines(results), after="## Few labels")
    print("\n".join(report_lines(results)))


if __name__ == "__main__":
    main()
