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

from kdkit.models import save_model
from kdkit.tasks import TaskSpec

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


def tiny_tokenizer(directory: Path) -> PreTrainedTokenizerBase:
    """A BERT WordPiece tokenizer over :data:`TINY_WORDS` (~110 tokens), saved in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    letters = list(string.ascii_lowercase) + [f"##{c}" for c in string.ascii_lowercase]
    punctuation = list(".,!?'-")
    vocab = list(dict.fromkeys(_SPECIAL + punctuation + list(TINY_WORDS) + letters))
    tokenizer = BertTokenizer(vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=True)
    tokenizer.save_pretrained(directory)
    return tokenizer


_ARCHITECTURES: dict[str, dict[str, Any]] = {
    "bert": {"model_type": "bert", "type_vocab_size": 2},
    "roberta": {"model_type": "roberta", "type_vocab_size": 1, "pad_token_id": 1},
    "distilbert": {"model_type": "distilbert"},
    "electra": {"model_type": "electra", "embedding_size": 32},
    "deberta-v2": {"model_type": "deberta-v2", "relative_attention": False, "position_biased_input": True},
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
) -> PretrainedConfig:
    """A tiny configuration of ``architecture`` (bert, roberta, distilbert, electra, deberta-v2)."""
    extra = dict(_ARCHITECTURES[architecture])
    model_type = extra.pop("model_type")
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
) -> Path:
    """Save a tiny BERT classifier for ``task`` with the tiny tokenizer into ``directory`` (a teacher)."""
    tokenizer = tiny_tokenizer(directory / "_tokenizer")
    model = tiny_classifier(
        "bert",
        num_labels=task.num_labels,
        vocab_size=len(tokenizer),
        seed=seed,
        num_layers=num_layers,
        hidden_size=hidden_size,
    )
    if task.label_names is not None:
        model.config.id2label = dict(enumerate(task.label_names))
        model.config.label2id = {name: i for i, name in enumerate(task.label_names)}
    save_model(model, tokenizer, task, directory, max_length=64)
    return directory


def write_tiny_csv(path: Path, rows: int, labels: tuple[str, ...] = ("pos", "neg"), seed: int = 0) -> Path:
    """A CSV with ``text,label`` columns of random tiny-vocabulary sentences; the label is a word in it."""
    rng = random.Random(seed)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for _ in range(rows):
            label = rng.choice(labels)
            words = [rng.choice(TINY_WORDS) for _ in range(rng.randint(3, 12))]
            words.insert(rng.randint(0, len(words)), {"pos": "good", "neg": "bad"}.get(label, label))
            writer.writerow([" ".join(words), label])
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
