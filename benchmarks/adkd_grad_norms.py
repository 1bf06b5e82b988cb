"""Gradient norm of each AD-KD loss term at the start of training (the stability finding in docs/adkd.md).

    python benchmarks/adkd_grad_norms.py --teacher runs/sst2-teacher --task sst2 [--batches 8]

For random training batches (batch 32), a fresh ``copy:3`` student of the teacher (train mode) and the
paper's α and T for the task, prints ‖∇_θ term‖ for (1-α)·CE, α·KD and β·L_attr with β ∈ {1, 10}, under two
reductions of L_attr:

- ``per-token`` (kdkit, the reference code): Σ_{b,i} (â^t - â^s)² / (real tokens in the batch);
- ``summed``   (the collapsed prototype): Σ_{b,i} (â^t - â^s)² / B, the per-example sum over tokens,
  which is (real tokens / B) ≈ the mean sentence length times larger.

No optimiser step is taken; the student is the same for every batch.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads sleep: the cores are shared

import torch
from kdkit_adkd.ig import IntegratedGradients
from kdkit_adkd.loss import ADKDLoss, ADKDOptions
from kdkit_adkd.maps import map_distance
from kdkit_adkd.presets import PAPER_TABLE

from kdkit.attribution.base import EmbeddingForward, capture_embedding_output, token_maps
from kdkit.config import DataConfig
from kdkit.data.batching import MODEL_INPUTS, DistillationCollator
from kdkit.data.tokenizing import load_task_data
from kdkit.losses.base import Batch, LossContext
from kdkit.models.loading import freeze, load_classifier, load_tokenizer
from kdkit.models.students import build_student
from kdkit.records.runs import resolve_model_dir

GLUE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "glue"


def norm(value: torch.Tensor, parameters: list[torch.nn.Parameter]) -> float:
    grads = torch.autograd.grad(value, parameters, retain_graph=True, allow_unused=True)
    return math.sqrt(sum(float(g.pow(2).sum()) for g in grads if g is not None))


@dataclass
class Setup:
    """The frozen teacher, the fresh student (train mode) and the AD-KD loss whose terms are measured."""

    task: Any
    teacher: Any
    student: Any
    parameters: list[torch.nn.Parameter]
    loss: ADKDLoss
    provider: IntegratedGradients


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--data-dir", type=Path, default=GLUE)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-train-samples", type=int, default=8000)
    parser.add_argument("--out", type=Path, default=None)
    return parser


def _setup(teacher_dir: str, task: Any, alpha: float, temperature: float) -> Setup:
    """The teacher of ``teacher_dir``, a ``copy:3`` student of it (seed 0) and the loss at the paper's α and T."""
    teacher = freeze(load_classifier(teacher_dir, task))
    torch.manual_seed(0)
    student = build_student("copy:3", teacher, task, attn_implementation="eager").train()
    parameters = [p for p in student.parameters() if p.requires_grad]
    loss = ADKDLoss(ADKDOptions(alpha=alpha, beta=1.0, temperature=temperature), task)
    return Setup(task, teacher, student, parameters, loss, IntegratedGradients())


def _record(setup: Setup, batch: Batch) -> dict[str, float]:
    """The gradient norms of each term on one batch, under both reductions of L_attr."""
    teacher, student, parameters = setup.teacher, setup.student, setup.parameters
    loss, provider = setup.loss, setup.provider
    ctx = LossContext(task=setup.task, student=student, teacher=teacher, provider_factory=lambda _name: provider)
    with torch.no_grad():
        signals = loss.teacher_signals(teacher, batch, ctx)
    with capture_embedding_output(student) as captured:
        logits = student(**batch.inputs).logits
    assert captured.tensor is not None
    ctx.student_forward = EmbeddingForward(captured.tensor, logits)
    terms = loss(batch, logits, signals, ctx)
    targets, weights = loss.views(logits, batch.labels, signals["logits"], provider)
    student_maps = token_maps(
        provider.attribute(student, batch.inputs, targets, create_graph=True, forward=ctx.student_forward),
        batch.attention_mask,
    )
    summed = map_distance(
        signals["attr_map"],
        student_maps,
        batch.attention_mask,
        view_weights=weights,
        token_count=torch.tensor(float(batch.size)),
    )
    tokens_per_example = float(batch.attention_mask.sum()) / batch.size
    attr = norm(terms["attr"], parameters)
    summed_norm = norm(summed, parameters)
    return {
        "ce": norm(terms["ce"], parameters),
        "kd": norm(terms["kd"], parameters),
        "attr_per_token_beta1": attr,
        "attr_per_token_beta10": 10 * attr,
        "attr_summed_beta1": summed_norm,
        "attr_summed_beta10": 10 * summed_norm,
        "attr_value_per_token": float(terms["attr"].detach()),
        "attr_value_summed": float(summed.detach()),
        "tokens_per_example": tokens_per_example,
    }


def main() -> None:
    args = _parser().parse_args()
    torch.set_num_threads(2)
    teacher_dir = str(resolve_model_dir(Path(args.teacher)))
    tokenizer = load_tokenizer(teacher_dir)
    data = load_task_data(
        DataConfig(task=args.task, data_dir=args.data_dir, max_train_samples=args.max_train_samples), tokenizer
    )
    assert data.train is not None
    _, _, _, alpha, _, temperature, _ = PAPER_TABLE[args.task]
    setup = _setup(teacher_dir, data.task, alpha, temperature)
    collator = DistillationCollator(int(tokenizer.pad_token_id or 0))
    order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0)).tolist()
    records: list[dict[str, float]] = []
    for index in range(args.batches):
        rows = [data.train[i] for i in order[index * args.batch_size : (index + 1) * args.batch_size]]
        collated = collator(rows)
        batch = Batch({k: collated[k] for k in MODEL_INPUTS if k in collated}, collated["labels"])
        record = _record(setup, batch)
        records.append(record)
        print(json.dumps({k: round(v, 4) for k, v in record.items()}), flush=True)
    summary: dict[str, Any] = {
        "task": args.task,
        "teacher": args.teacher,
        "alpha": alpha,
        "temperature": temperature,
        "batches": args.batches,
        "batch_size": args.batch_size,
        "median": {k: statistics.median(r[k] for r in records) for k in records[0]},
        "min": {k: min(r[k] for r in records) for k in records[0]},
        "max": {k: max(r[k] for r in records) for k in records[0]},
    }
    print(json.dumps(summary, indent=2))
    out = args.out or Path(__file__).resolve().parent / "results" / f"adkd_grad_norms_{args.task}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"summary": summary, "records": records}, indent=2) + "\n")


if __name__ == "__main__":
    main()
