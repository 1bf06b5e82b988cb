"""A real-sized SST-2 student for the end-to-end tests of the clients and the web page: a copy of the first
layers of the embedded MiniLM (its real tokenizer and vocabulary), untrained, its head perturbed and centred on 20
SST-2 dev sentences so that their labels vary; saved as kdkit saves a student."""

from __future__ import annotations

from pathlib import Path

#: the dev sentences the head is centred on (the tests predict these)
SENTENCES = 20


def save_minilm_sst2_student(folder: Path, glue_dir: Path, layers: int) -> Path:
    """Save the student (``layers`` of MiniLM's 6) under ``folder / "model"``; returns that folder."""
    import pandas as pd
    import torch

    from kdkit.config import default_base_model
    from kdkit.data.tasks import get_task
    from kdkit.models.loading import load_base_for_task, load_tokenizer
    from kdkit.models.saving import save_model
    from kdkit.models.students import copy_student
    from kdkit.testing.models import perturb_parameters

    task = get_task("sst2")
    base = default_base_model()
    tokenizer = load_tokenizer(base)
    student = copy_student(load_base_for_task(base, task), layers).eval()
    perturb_parameters(student.classifier, seed=0, scale=0.5)
    # an untrained head gives every sentence one label; centre it on these sentences so that labels vary
    raw = pd.read_parquet(glue_dir / "sst2" / "validation-00000-of-00001.parquet")["sentence"][:SENTENCES].tolist()
    with torch.no_grad():
        logits = student(**tokenizer(raw, padding=True, return_tensors="pt")).logits
        student.classifier.bias[1] += (logits[:, 0] - logits[:, 1]).median()
    save_model(student, tokenizer, task, folder / "model", max_length=128)
    return folder / "model"
