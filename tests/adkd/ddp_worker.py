"""One AD-KD distillation on the tiny data, run by tests/adkd/test_ddp.py in one process or under
``python -m torch.distributed.run --nproc_per_node 2`` (gloo, CPU).

    python ddp_worker.py TEACHER TRAIN_CSV VALIDATION_CSV OUTPUT PER_DEVICE_BATCH
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from kdkit import api
from kdkit.config import DataConfig, DistillConfig, TrainingConfig
from kdkit.plugins.manager import PluginManager


def build_config(teacher: str, train: str, validation: str, output: str, batch_size: int) -> DistillConfig:
    """Six steps, no warm-up, β large enough that L_attr dominates the loss."""
    return DistillConfig(
        loss="adkd",
        teacher=teacher,
        student="copy:1",
        # random batches: length-grouped ones are grouped per process under DDP, so 1 and 2 processes would differ
        data=DataConfig(train_file=train, validation_file=validation, max_length=32, group_by_length=False),  # type: ignore[arg-type]
        training=TrainingConfig(
            max_steps=6,
            batch_size=batch_size,
            logging_steps=1,
            learning_rate=1e-3,
            warmup_ratio=0.0,
            term_grad_norm_steps=0,
            seed=7,
            precision="fp32",  # 1 and 2 processes agree to 1e-4 in fp32; bf16's rounding depends on the reduction order
        ),
        options={"adkd": {"beta": float(os.environ.get("ADKD_BETA", "10")), "alpha": 0.5}, "ig": {"steps": 2}},
        output=output,  # type: ignore[arg-type]
        quiet=True,
    )


def main(teacher: str, train: str, validation: str, output: str, batch_size: int) -> None:
    torch.set_num_threads(1)
    config = build_config(teacher, train, validation, output, batch_size)
    api.distill(config, plugins=PluginManager(autoload=False, enable=["adkd"]))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
