"""Vocabulary pruning: keep only the token ids a task's texts use, and shrink the embedding matrix to them.

The word-embedding matrix (V, H) is about half of a small BERT student's weights (MiniLM: V = 30,522, H = 384:
11.7M of 22.7M parameters); a task's data uses a few thousand of those tokens. :func:`prune_vocabulary` keeps
the ids its texts tokenise to, plus every special token, in their old order (new id = rank among the kept), and
writes a model whose embedding rows are those rows and a tokenizer whose vocabulary is those tokens.

Why the pruned tokenizer gives the same tokens on those texts (WordPiece, the BERT family): WordPiece takes the
longest vocabulary entry that prefixes the rest of a word, left to right. Every token the full vocabulary chose
on these texts is kept, and any longer candidate was absent from the full vocabulary and so from the pruned one:
each step chooses the same token. A word the full vocabulary could not split ([UNK]) cannot be split by a
subset either. Texts outside the data may tokenise differently (a word piece that was pruned falls back to
shorter pieces or [UNK]). The result is verified: the pruned tokenizer must give ``old_to_new[ids]`` on every
text, or nothing is written. Other tokenizer models (BPE, Unigram) are refused.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from kdkit.errors import ConfigError, ModelError
from kdkit.models.loading import load_classifier, load_tokenizer
from kdkit.models.saving import read_task_file, save_model

TOKENIZER_JSON = "tokenizer.json"


@dataclass(frozen=True)
class PrunedVocabulary:
    """``directory``: the pruned model; ``kept`` of ``original`` token ids; ``kept_ids``: the old id of each new
    id (ascending)."""

    directory: Path
    kept: int
    original: int
    kept_ids: list[int]


def used_token_ids(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> list[int]:
    """Every id ``texts`` tokenise to (untruncated), with the tokenizer's special and added tokens, ascending."""
    backend: Tokenizer = tokenizer.backend_tokenizer
    used: set[int] = set(tokenizer.all_special_ids) | set(backend.get_added_tokens_decoder())
    for start in range(0, len(texts), 1000):
        for encoding in backend.encode_batch(list(texts[start : start + 1000]), add_special_tokens=False):
            used.update(encoding.ids)
    return sorted(used)


def _remap_tokenizer_json(spec: dict[str, Any], kept: list[int]) -> dict[str, Any]:
    """tokenizer.json with the WordPiece vocabulary cut to ``kept`` (new id = rank) and every id it names
    elsewhere (added tokens, the post-processor's special tokens, padding) remapped."""
    model = spec.get("model") or {}
    if model.get("type") != "WordPiece":
        raise ConfigError(
            f"vocabulary pruning supports WordPiece tokenizers (BERT family), not {model.get('type')}",
            "search without it (--no-vocab-pruning)",
        )
    new_id = {old: new for new, old in enumerate(kept)}
    model["vocab"] = {token: new_id[old] for token, old in model["vocab"].items() if old in new_id}
    spec["added_tokens"] = [dict(t, id=new_id[t["id"]]) for t in spec.get("added_tokens") or [] if t["id"] in new_id]
    processor = spec.get("post_processor") or {}
    for special in (processor.get("special_tokens") or {}).values():  # TemplateProcessing
        special["ids"] = [new_id[i] for i in special["ids"]]
    for key in ("cls", "sep"):  # BertProcessing: [token, id]
        if isinstance(processor.get(key), list):
            processor[key][1] = new_id[processor[key][1]]
    if isinstance(spec.get("padding"), dict) and "pad_id" in spec["padding"]:
        spec["padding"]["pad_id"] = new_id[spec["padding"]["pad_id"]]
    return spec


def _remap_tokenizer_config(directory: Path, kept: list[int]) -> None:
    """tokenizer_config.json's ``added_tokens_decoder`` (id -> token) remapped, so transformers does not add the
    special tokens back at their old ids."""
    path = directory / "tokenizer_config.json"
    if not path.is_file():
        return
    config = json.loads(path.read_text(encoding="utf-8"))
    decoder = config.get("added_tokens_decoder")
    if isinstance(decoder, dict):
        new_id = {old: new for new, old in enumerate(kept)}
        config["added_tokens_decoder"] = {str(new_id[int(k)]): v for k, v in decoder.items() if int(k) in new_id}
        path.write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")


def _write_vocab_txt(directory: Path, spec: dict[str, Any]) -> None:
    """vocab.txt (the slow tokenizer's file) in the new id order, when the folder has one."""
    path = directory / "vocab.txt"
    if path.is_file():
        ordered = sorted(spec["model"]["vocab"].items(), key=lambda item: item[1])
        path.write_text("".join(f"{token}\n" for token, _ in ordered), encoding="utf-8")


def _shrink_embeddings(model: PreTrainedModel, kept: list[int]) -> None:
    """Keep the embedding rows ``kept`` (and remap ``pad_token_id``)."""
    old: Any = model.get_input_embeddings()
    index = torch.as_tensor(kept, dtype=torch.long)
    new = nn.Embedding(len(kept), old.weight.shape[1], padding_idx=None)
    new.weight.data.copy_(old.weight.data[index])
    model.set_input_embeddings(new)
    config: Any = model.config
    config.vocab_size = len(kept)
    if getattr(config, "pad_token_id", None) is not None and config.pad_token_id in kept:
        config.pad_token_id = kept.index(config.pad_token_id)


def _check_same_tokens(
    old: PreTrainedTokenizerBase, new: PreTrainedTokenizerBase, texts: Sequence[str], kept: list[int]
) -> None:
    """The pruned tokenizer must give the remapped ids of the full one on every text (with special tokens)."""
    lookup = np.full(max(kept) + 1, -1, dtype=np.int64)
    lookup[np.asarray(kept)] = np.arange(len(kept))
    before = old.backend_tokenizer.encode_batch(list(texts))
    after = new.backend_tokenizer.encode_batch(list(texts))
    for text, full, pruned in zip(texts, before, after, strict=True):
        if list(lookup[np.asarray(full.ids, dtype=np.int64)]) != list(pruned.ids):
            raise ModelError(f"the pruned vocabulary tokenises {text[:60]!r} differently", "report this as a bug")


def prune_vocabulary(model_dir: Path, texts: Sequence[str], output: Path) -> PrunedVocabulary:
    """Write to ``output`` the kdkit-saved classifier of ``model_dir`` with its vocabulary cut to the tokens of
    ``texts`` (a task's train and dev texts); verified before it is kept (see the module docstring)."""
    recorded = read_task_file(model_dir)
    if recorded is None:
        raise ModelError(f"{model_dir} is not a model saved by kdkit (no kdkit_task.json)", "prune a kdkit run's model")
    task, max_length = recorded
    tokenizer = load_tokenizer(str(model_dir))
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(f"the tokenizer of {model_dir} is not a fast tokenizer", "search without --vocab pruned")
    kept = used_token_ids(tokenizer, texts)
    model = load_classifier(str(model_dir), task, role="model")
    original = int(model.get_input_embeddings().weight.shape[0])  # type: ignore[index]
    _shrink_embeddings(model, kept)
    work = Path(tempfile.mkdtemp(prefix=".pruning-", dir=output.parent if output.parent.exists() else None))
    try:
        save_model(model, tokenizer, task, work, max_length=max_length)
        spec = _remap_tokenizer_json(json.loads((work / TOKENIZER_JSON).read_text(encoding="utf-8")), kept)
        (work / TOKENIZER_JSON).write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
        _write_vocab_txt(work, spec)
        _remap_tokenizer_config(work, kept)
        _check_same_tokens(tokenizer, load_tokenizer(str(work)), texts, kept)
        shutil.rmtree(output, ignore_errors=True)
        work.rename(output)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return PrunedVocabulary(output, len(kept), original, kept)
