"""Vocabulary pruning: fewer embedding rows, the same tokens (remapped) and the same logits on the task's texts,
in PyTorch and through the ONNX export; tokenizers other than WordPiece refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kdkit.compress.trial import _all_texts
from kdkit.errors import ConfigError
from kdkit.export.inference import OnnxClassifier
from kdkit.export.stage import ExportOptions, export_onnx
from kdkit.models.loading import load_classifier, load_tokenizer
from kdkit.models.saving import read_task_file, verify_saved_model
from kdkit.models.vocab import _remap_tokenizer_json, prune_vocabulary
from kdkit.testing.models import BINARY_TASK, save_tiny_classifier


def _logits(directory, texts):
    tokenizer = load_tokenizer(str(directory))
    model = load_classifier(str(directory), BINARY_TASK).eval()
    with torch.no_grad():
        batch = tokenizer(texts, padding=True, return_tensors="pt")
        return model(**batch).logits.numpy(), batch["input_ids"]


def test_pruned_model_gives_the_same_logits_on_the_task_texts(tiny_inputs, tmp_path):
    teacher, data = tiny_inputs
    texts = _all_texts(data)
    pruned = prune_vocabulary(teacher, texts, tmp_path / "pruned")
    verify_saved_model(pruned.directory)  # checksums written after the embedding was cut
    assert read_task_file(pruned.directory) == read_task_file(teacher)
    model = load_classifier(str(pruned.directory), BINARY_TASK)
    assert model.get_input_embeddings().weight.shape[0] == pruned.kept < pruned.original
    assert model.config.vocab_size == pruned.kept
    before, old_ids = _logits(teacher, texts)
    after, new_ids = _logits(pruned.directory, texts)
    lookup = np.full(pruned.original, -1)
    lookup[pruned.kept_ids] = np.arange(pruned.kept)
    assert np.array_equal(lookup[old_ids.numpy()], new_ids.numpy())
    np.testing.assert_allclose(after, before, atol=1e-5)
    export = export_onnx(pruned.directory, ExportOptions(output=tmp_path / "onnx", data=data, exporter="torchscript"))
    served = OnnxClassifier(export.directory, threads=1).logits(texts[:8])[0]
    np.testing.assert_allclose(served, before[:8], atol=1e-4)


def test_unseen_words_still_tokenise(tiny_inputs, tmp_path):
    teacher, data = tiny_inputs
    pruned = prune_vocabulary(teacher, _all_texts(data)[:4], tmp_path / "pruned")
    tokenizer = load_tokenizer(str(pruned.directory))
    ids = tokenizer("zzzz qqqq")["input_ids"]
    assert all(0 <= i < pruned.kept for i in ids)  # pruned pieces fall back to [UNK], never past the matrix


def test_a_roberta_keeps_its_padding_id_remapped(tiny_inputs, tmp_path):
    """RoBERTa's positions start after its padding id (1 here): the id must follow the pruning."""
    _, data = tiny_inputs
    roberta = save_tiny_classifier(tmp_path / "roberta", BINARY_TASK, architecture="roberta")
    texts = _all_texts(data)
    pruned = prune_vocabulary(roberta, texts, tmp_path / "pruned")
    model = load_classifier(str(pruned.directory), BINARY_TASK)
    assert model.config.pad_token_id == pruned.kept_ids.index(1)
    np.testing.assert_allclose(_logits(pruned.directory, texts)[0], _logits(roberta, texts)[0], atol=1e-5)


def test_a_tokenizer_that_is_not_wordpiece_is_refused():
    with pytest.raises(ConfigError, match="supports WordPiece tokenizers"):
        _remap_tokenizer_json({"model": {"type": "BPE", "vocab": {}, "merges": []}}, [0, 1])
