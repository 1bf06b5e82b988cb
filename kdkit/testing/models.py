"""Tiny random models, a tiny WordPiece tokenizer and tiny data sets for tests.

tokenizer = tiny_tokenizer(tmp_path)
model = tiny_classifier("bert", num_labels=2, vocab_size=len(tokenizer))
"""

from __future__ import annotations

import csv
import random
import string
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    BertTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from kdkit.data.tasks import TaskSpec
from kdkit.models.saving import save_model

#: the words of the tiny vocabulary (plus single letters and ##letters, so any lowercase text tokenises)
TINY_WORDS = (
    "the",
    "a",
    "an",
    "and",
    "or",
    "but",
    "not",
    "no",
    "is",
    "was",
    "are",
    "be",
    "it",
    "this",
    "that",
    "movie",
    "film",
    "good",
    "great",
    "bad",
    "awful",
    "fine",
    "love",
    "hate",
    "boring",
    "fun",
    "story",
    "actor",
    "plot",
    "very",
    "really",
    "quite",
    "too",
    "so",
    "of",
    "in",
    "on",
    "to",
    "with",
    "for",
    "at",
    "by",
    "from",
    "as",
    "i",
    "you",
    "he",
    "she",
    "we",
    "they",
    "my",
    "your",
    "his",
    "her",
    "our",
    "their",
    "one",
    "two",
    "three",
    "cat",
    "dog",
    "sat",
    "mat",
    "ran",
    "fast",
    "slow",
    "happy",
    "sad",
    "news",
    "world",
    "sports",
    "business",
    "science",
    "tech",
    "market",
    "game",
    "team",
    "win",
    "lose",
)
ModuleT = TypeVar("ModuleT", bound=nn.Module)

_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
#: ids of the tiny tokenizer's special tokens
TINY_PAD_ID, TINY_UNK_ID, TINY_CLS_ID, TINY_SEP_ID, TINY_MASK_ID = range(len(_SPECIAL))
#: the padding id of the RoBERTa family's tiny tokenizer: 1, as in RoBERTa (positions start after it)
ROBERTA_PAD_ID = 1

#: the architectures :func:`tiny_classifier` builds (model families kdkit is tested on, docs/architecture.md)
ARCHITECTURES = ("bert", "roberta", "deberta-v2", "distilbert", "electra", "albert", "modernbert")
#: families whose real tokenizers give no token_type_ids (their models have no or a single token type)
_NO_TOKEN_TYPES = frozenset({"roberta", "distilbert", "modernbert"})


def tiny_tokenizer(directory: Path, architecture: str = "bert") -> PreTrainedTokenizerBase:
    """A BERT WordPiece tokenizer over :data:`TINY_WORDS` (~140 tokens), saved in ``directory``.

    With ``architecture``, it gives what that family's real tokenizer gives: no ``token_type_ids`` for
    RoBERTa, DistilBERT and ModernBERT, and for RoBERTa the padding id 1 (:data:`ROBERTA_PAD_ID`; the ids of
    [PAD] and [UNK] swap)."""
    directory.mkdir(parents=True, exist_ok=True)
    letters = list(string.ascii_lowercase) + [f"##{c}" for c in string.ascii_lowercase]
    punctuation = list(".,!?'-")
    special = list(_SPECIAL)
    if architecture == "roberta":
        special[TINY_PAD_ID], special[ROBERTA_PAD_ID] = special[ROBERTA_PAD_ID], special[TINY_PAD_ID]
    vocab = list(dict.fromkeys(special + punctuation + list(TINY_WORDS) + letters))
    extra: dict[str, Any] = {}
    if architecture in _NO_TOKEN_TYPES:
        extra["model_input_names"] = ["input_ids", "attention_mask"]
    tokenizer = BertTokenizer(vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=True, **extra)
    tokenizer.save_pretrained(directory)
    return tokenizer


#: what makes each tiny family look like its real models: RoBERTa's padding offset and single token type,
#: DeBERTa-v2's relative attention (DeBERTa-v3's settings: no absolute positions), ALBERT's one shared layer and
#: embedding projection (embedding size = half the hidden size), ModernBERT's alternating global and
#: sliding-window (8 tokens) attention with rotary positions and its first layer without attn_norm. ELECTRA's
#: embeddings are 32 wide (a projection when ``hidden_size`` differs; ``embedding_size=16`` gives one at 32)
_ARCHITECTURES: dict[str, dict[str, Any]] = {
    "bert": {"model_type": "bert", "type_vocab_size": 2},
    "roberta": {"model_type": "roberta", "type_vocab_size": 1, "pad_token_id": ROBERTA_PAD_ID},
    "distilbert": {"model_type": "distilbert"},
    "electra": {"model_type": "electra", "embedding_size": 32},
    "deberta-v2": {
        "model_type": "deberta-v2",
        "relative_attention": True,
        "position_biased_input": False,
        "pos_att_type": ["p2c", "c2p"],
        "max_relative_positions": -1,
        "position_buckets": 16,
        "norm_rel_ebd": "layer_norm",
        "share_att_key": True,
        "type_vocab_size": 0,
    },
    "albert": {"model_type": "albert", "embedding_size": 0.5, "num_hidden_groups": 1, "inner_group_num": 1},
    "modernbert": {
        "model_type": "modernbert",
        "pad_token_id": TINY_PAD_ID,
        "cls_token_id": TINY_CLS_ID,
        "sep_token_id": TINY_SEP_ID,
        "bos_token_id": TINY_CLS_ID,
        "eos_token_id": TINY_SEP_ID,
        "local_attention": 8,
        "global_attn_every_n_layers": 3,
    },
}


def tiny_config(
    architecture: str = "bert",
    *,
    num_labels: int = 2,
    vocab_size: int = 120,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    max_positions: int = 64,
    attn_implementation: str | None = None,
    **overrides: Any,
) -> PretrainedConfig:
    """A tiny configuration of ``architecture`` (one of :data:`ARCHITECTURES`); ``overrides`` are configuration
    fields set beyond the family's defaults (e.g. ``embedding_size=16`` for ELECTRA)."""
    if architecture not in _ARCHITECTURES:
        raise ValueError(f"unknown tiny architecture {architecture!r}: one of {', '.join(ARCHITECTURES)}")
    extra = {**_ARCHITECTURES[architecture], **overrides}
    model_type = extra.pop("model_type")
    if isinstance(extra.get("embedding_size"), float):  # a share of the hidden size
        extra["embedding_size"] = int(extra["embedding_size"] * hidden_size)
    if model_type == "distilbert":
        sizes = {"dim": hidden_size, "n_layers": num_layers, "n_heads": num_heads, "hidden_dim": 2 * hidden_size}
    else:
        sizes = {
            "hidden_size": hidden_size,
            "num_hidden_layers": num_layers,
            "num_attention_heads": num_heads,
            "intermediate_size": 2 * hidden_size,
        }
    config = AutoConfig.for_model(
        model_type,
        vocab_size=vocab_size,
        max_position_embeddings=max_positions,
        num_labels=num_labels,
        problem_type="regression" if num_labels == 1 else "single_label_classification",
        **sizes,
        **extra,
    )
    if attn_implementation is not None:
        config._attn_implementation = attn_implementation
    return config


def tiny_classifier(
    architecture: str = "bert",
    *,
    num_labels: int = 2,
    vocab_size: int = 120,
    seed: int = 0,
    **config_kwargs: Any,
) -> PreTrainedModel:
    """A tiny randomly initialised sequence classifier (eval mode; deterministic for a seed)."""
    torch.manual_seed(seed)
    config = tiny_config(architecture, num_labels=num_labels, vocab_size=vocab_size, **config_kwargs)
    model = AutoModelForSequenceClassification.from_config(config)
    return model.eval()


def perturb_parameters(model: ModuleT, seed: int = 0, scale: float = 0.2) -> ModuleT:
    """Add Gaussian noise (std ``scale``) to every parameter, in place; returns the model.

    A freshly initialised classifier has zero biases and near-uniform outputs, which makes attributions and
    score differences degenerate (many exact ties and zeros); tests of attribution providers and losses
    want a model whose outputs depend on every token.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            noise = torch.randn(parameter.shape, generator=generator, dtype=torch.float32)
            parameter.add_(noise.to(parameter.dtype) * scale)
    return model


def save_tiny_classifier(
    directory: Path,
    task: TaskSpec,
    *,
    num_layers: int = 2,
    seed: int = 0,
    hidden_size: int = 32,
    architecture: str = "bert",
    max_positions: int = 64,
    max_length: int = 64,
    **overrides: Any,
) -> Path:
    """Save a tiny classifier of ``architecture`` (BERT by default) for ``task`` with the tiny tokenizer of its
    family (:func:`tiny_tokenizer`) into ``directory``, as kdkit saves models (a teacher); ``max_length`` is
    the training length recorded in its ``kdkit_task.json``, ``overrides`` configuration fields
    (:func:`tiny_config`)."""
    tokenizer = tiny_tokenizer(directory / "_tokenizer", architecture)
    model = tiny_classifier(
        architecture,
        num_labels=task.num_labels,
        vocab_size=len(tokenizer),
        seed=seed,
        num_layers=num_layers,
        hidden_size=hidden_size,
        max_positions=max_positions,
        **overrides,
    )
    if task.label_names is not None:
        model.config.id2label = dict(enumerate(task.label_names))
        model.config.label2id = {name: i for i, name in enumerate(task.label_names)}
    save_model(model, tokenizer, task, directory, max_length=max_length)
    return directory


def write_tiny_csv(
    path: Path,
    rows: int,
    labels: tuple[str, ...] = ("pos", "neg"),
    seed: int = 0,
    *,
    pairs: bool = False,
    words: tuple[int, int] = (3, 12),
) -> Path:
    """A CSV with ``text,label`` columns of random tiny-vocabulary sentences; the label is a word in it. With
    ``pairs``, columns ``text,text2,label`` (a sentence-pair task: ``--text-columns text,text2``); ``words`` is
    the range of a sentence's length in words."""
    rng = random.Random(seed)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "text2", "label"] if pairs else ["text", "label"])
        for _ in range(rows):
            label = rng.choice(labels)
            sentence = [rng.choice(TINY_WORDS) for _ in range(rng.randint(*words))]
            sentence.insert(rng.randint(0, len(sentence)), {"pos": "good", "neg": "bad"}.get(label, label))
            second = [" ".join(rng.choice(TINY_WORDS) for _ in range(rng.randint(*words)))] if pairs else []
            writer.writerow([" ".join(sentence), *second, label])
    return path


#: tasks of the tiny models: two classes (the labels of :func:`write_tiny_csv`), three classes, regression
BINARY_TASK = TaskSpec(
    name="tiny",
    text_fields=("text",),
    label_names=("neg", "pos"),
    metrics=("accuracy", "macro_f1"),
    main_metric="accuracy",
)
THREE_CLASS_TASK = TaskSpec(
    name="tiny3", text_fields=("text",), label_names=("a", "b", "c"), metrics=("accuracy",), main_metric="accuracy"
)
REGRESSION_TASK = TaskSpec(
    name="tiny-regression", text_fields=("text",), label_names=None, metrics=("pearson",), main_metric="pearson"
)
