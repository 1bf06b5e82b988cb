"""The paper's per-task hyper-parameters (AD-KD, Appendix A.2, Table 5) as the ``paper`` preset.

``kdkit distill --plugin adkd --task cola --preset paper`` applies, beneath the user's own options:
learning rate, batch size and epochs (epochs from the authors' scripts), α, β, T and K. K is "of 768"
(BERT-base) in the paper; kdkit stores it as ``top_k_fraction = K/768`` so that it scales to the teacher's
hidden size (MiniLM: 384). IG steps are 1 everywhere; views are ``all`` (for two classes that is the one
view the reference code uses; for MNLI the three views it uses; for STS-B the single regression view).
The reference scripts anneal T linearly to 1 on MNLI, MRPC and QQP (``kd_anneal``: one T per epoch, from T at the
first to 1 at the last); so does the preset there (``adkd.anneal``), and nowhere else.
"""

from __future__ import annotations

from typing import Any

from kdkit.plugin_api import ConfigError

#: paper width that K is quoted against
PAPER_HIDDEN = 768

#: tasks whose reference script anneals T (``--distill_loss kd_anneal+...``)
ANNEALED = frozenset({"mnli", "mrpc", "qqp"})

#: task -> (learning rate, batch size, epochs, alpha, beta, temperature, K of 768)
PAPER_TABLE: dict[str, tuple[float, int, int, float, float, float, int]] = {
    "cola": (4e-5, 32, 10, 0.9, 1.0, 1.0, 768),
    "mnli": (4e-5, 64, 6, 0.8, 10.0, 3.0, 768),
    "sst2": (5e-5, 32, 6, 0.8, 1.0, 2.0, 768),
    "qnli": (4e-5, 32, 6, 0.9, 100.0, 3.0, 768),
    "mrpc": (3e-5, 16, 10, 0.9, 10.0, 4.0, 768),
    "qqp": (4e-5, 32, 8, 1.0, 50.0, 4.0, 734),
    "rte": (2e-5, 16, 12, 0.9, 10.0, 2.0, 700),
    "stsb": (5e-5, 16, 8, 0.8, 1.0, 3.0, 640),
}


def paper_preset(task: str) -> dict[str, Any]:
    """Config values (``options`` and ``training``) of the paper for ``task``."""
    key = task.lower().replace("-", "")
    if key not in PAPER_TABLE:
        raise ConfigError(
            f"the AD-KD paper has no hyper-parameters for task '{task}'",
            f"use --preset paper with one of {', '.join(PAPER_TABLE)}, or set adkd.* options yourself",
        )
    lr, batch, epochs, alpha, beta, temperature, k = PAPER_TABLE[key]
    adkd: dict[str, Any] = {
        "alpha": alpha,
        "beta": beta,
        "temperature": temperature,
        "anneal": key in ANNEALED,
        "views": "all",
    }
    adkd["top_k_fraction"] = None if k >= PAPER_HIDDEN else round(k / PAPER_HIDDEN, 6)
    return {
        "options": {"adkd": adkd, "ig": {"steps": 1}},
        "training": {"learning_rate": lr, "batch_size": batch, "epochs": epochs},
    }
