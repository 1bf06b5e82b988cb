"""Classify texts with optimum-onnx's ORTModelForSequenceClassification from a kdkit export folder, offline.

Runs in its own environment (requirements.txt: optimum-onnx pins transformers < 4.58, kdkit needs 5):

    python classify.py REQUEST.json   ->  JSON on stdout

REQUEST: {"model": "/path/to/export", "precisions": ["fp32", "int8"], "texts": [...], "pairs": [...] | null}
Output:  {"fp32": {"labels": [...], "scores": [...], "logits": [[...], ...], "file": "onnx/model.onnx",
          "versions": {...}}, "int8": {...}}

Logits come from the model called with the tokenizer's output, one text per call (int8 quantises activations
per call, so batch composition would move its logits); labels and scores from transformers' text-classification
pipeline around the ORT model (what a user calls), for single texts.
"""

from __future__ import annotations

import json
import os
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def classify(folder: str, precision: str, texts: list[str], pairs: list[str] | None) -> dict[str, Any]:
    import numpy as np
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from transformers import AutoTokenizer, pipeline

    extra = {"file_name": "model_quantized.onnx"} if precision == "int8" else {}
    model = ORTModelForSequenceClassification.from_pretrained(folder, **extra)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    logits = []
    for i, text in enumerate(texts):
        encoded = tokenizer(text, pairs[i] if pairs else None, truncation=True, return_tensors="pt")
        logits.append(model(**encoded).logits[0].detach().numpy().astype(float).tolist())
    id2label = model.config.id2label
    if pairs:
        rows = np.asarray(logits)
        probabilities = np.exp(rows - rows.max(-1, keepdims=True))
        probabilities /= probabilities.sum(-1, keepdims=True)
        labels = [id2label[int(i)] for i in rows.argmax(-1)]
        scores = probabilities.max(-1).tolist()
    else:
        classifier = pipeline("text-classification", model=model, tokenizer=tokenizer)
        results = [classifier(text, truncation=True)[0] for text in texts]
        labels = [r["label"] for r in results]
        scores = [float(r["score"]) for r in results]
    versions = {name: metadata.version(name) for name in ("optimum-onnx", "optimum", "transformers", "onnxruntime")}
    path = Path(model.path).resolve().relative_to(Path(folder).resolve()).as_posix()
    return {"labels": labels, "scores": scores, "logits": logits, "file": path, "versions": versions}


def main() -> None:
    from transformers.utils import logging

    logging.set_verbosity_error()
    request = json.loads(Path(sys.argv[1]).read_text())
    texts, pairs = request["texts"], request.get("pairs")
    print(json.dumps({p: classify(request["model"], p, texts, pairs) for p in request["precisions"]}))


if __name__ == "__main__":
    main()
