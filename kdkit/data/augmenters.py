"""The built-in augmenters (:mod:`kdkit.data.augmentation`), contributed by the built-in plugin.

Texts are split into words at whitespace; each augmenter changes some words and joins them with single spaces.

- ``mask``: each word, with probability ``probability``, is replaced by the tokenizer's mask token or, with
  probability ``drop``, removed (token masking and dropout); at least one word is changed, at least one kept.
- ``swap``: ``swaps`` times, two words trade places (word-order swaps).
- ``neighbours``: each word that is one whole token of the teacher's vocabulary is, with probability
  ``probability``, replaced by one of its ``k`` nearest whole-word tokens by cosine similarity in the teacher's
  input-embedding space (TinyBERT's augmentation without a masked-LM head: GloVe there, the teacher's own
  embeddings here). At least one replaceable word is changed when there is one.
"""

from __future__ import annotations

import random

import torch
from pydantic import BaseModel, ConfigDict, Field

from kdkit.data.augmentation import AugmentContext, Augmenter


class MaskOptions(BaseModel):
    """Options of the ``mask`` augmenter."""

    model_config = ConfigDict(extra="forbid")

    probability: float = Field(0.15, gt=0.0, le=1.0, description="share of the words masked or dropped")
    drop: float = Field(0.5, ge=0.0, le=1.0, description="chance that a chosen word is removed instead of masked")


def _chosen(count: int, probability: float, rng: random.Random) -> list[int]:
    """Positions picked each with ``probability``; at least one when ``count`` > 0."""
    picked = [i for i in range(count) if rng.random() < probability]
    return picked or ([rng.randrange(count)] if count else [])


class MaskAugmenter(Augmenter[MaskOptions]):
    """Token masking and dropout: some words become the mask token, some are removed."""

    name = "mask"
    Options = MaskOptions
    description = "token masking/dropout: words replaced by the mask token or removed"

    def augment(self, text: str, copies: int, rng: random.Random) -> list[str]:
        words = text.split()
        mask = getattr(self.context.tokenizer, "mask_token", None) or "[MASK]"
        out = []
        for _ in range(copies):
            new: list[str | None] = list(words)
            for i in _chosen(len(words), self.options.probability, rng):
                new[i] = None if rng.random() < self.options.drop else mask
            kept = [word for word in new if word is not None]
            out.append(" ".join(kept) if kept else mask)
        return out


class SwapOptions(BaseModel):
    """Options of the ``swap`` augmenter."""

    model_config = ConfigDict(extra="forbid")

    swaps: int = Field(1, ge=1, le=50, description="how many times two words trade places in each copy")


class SwapAugmenter(Augmenter[SwapOptions]):
    """Word-order swaps: two random words trade places, ``swaps`` times."""

    name = "swap"
    Options = SwapOptions
    description = "word-order swaps: two words trade places, --set swap.swaps=N times"

    def augment(self, text: str, copies: int, rng: random.Random) -> list[str]:
        words = text.split()
        out = []
        for _ in range(copies):
            new = list(words)
            for _ in range(self.options.swaps if len(new) > 1 else 0):
                i, j = rng.sample(range(len(new)), 2)
                new[i], new[j] = new[j], new[i]
            out.append(" ".join(new) or text)
        return out


class NeighbourOptions(BaseModel):
    """Options of the ``neighbours`` augmenter."""

    model_config = ConfigDict(extra="forbid")

    probability: float = Field(0.3, gt=0.0, le=1.0, description="share of the replaceable words replaced")
    k: int = Field(15, ge=1, le=200, description="how many nearest neighbours a replacement is drawn from")


class NeighbourAugmenter(Augmenter[NeighbourOptions]):
    """Words replaced by their nearest neighbours in the teacher's input-embedding space."""

    name = "neighbours"
    Options = NeighbourOptions
    description = "words replaced by nearest neighbours in the teacher's input-embedding space (TinyBERT-style)"
    needs_embeddings = True

    def __init__(self, options: NeighbourOptions, context: AugmentContext) -> None:
        super().__init__(options, context)
        if context.embeddings is None or context.tokenizer is None:
            raise ValueError("the neighbours augmenter needs the teacher's tokenizer and input embeddings")
        tokenizer = context.tokenizer
        self.tokens: list[str] = tokenizer.convert_ids_to_tokens(list(range(int(context.embeddings.shape[0]))))
        special = set(tokenizer.all_special_tokens)
        self.words = torch.tensor([t.isalpha() and t not in special for t in self.tokens])  # whole-word tokens
        self.unit = torch.nn.functional.normalize(context.embeddings.float(), dim=-1)
        self._neighbours: dict[int, list[int]] = {}

    def neighbours(self, token: int) -> list[int]:
        """The ``k`` whole-word tokens nearest ``token`` by cosine similarity (itself left out), nearest first."""
        if token not in self._neighbours:
            similarity = self.unit @ self.unit[token]
            similarity[~self.words] = -float("inf")
            similarity[token] = -float("inf")
            k = min(self.options.k, int(self.words.sum()) - 1)
            self._neighbours[token] = torch.topk(similarity, max(k, 0)).indices.tolist()
        return self._neighbours[token]

    def _token(self, word: str) -> int | None:
        """The id of ``word`` when it is one whole-word token of the vocabulary."""
        pieces = self.context.tokenizer(word, add_special_tokens=False)["input_ids"]
        if len(pieces) != 1 or not bool(self.words[pieces[0]]):
            return None
        return int(pieces[0])

    def augment(self, text: str, copies: int, rng: random.Random) -> list[str]:
        words = text.split()
        tokens = {i: token for i, word in enumerate(words) if (token := self._token(word)) is not None}
        replaceable = [i for i in tokens if self.neighbours(tokens[i])]
        out = []
        for _ in range(copies):
            new = list(words)
            for index in _chosen(len(replaceable), self.options.probability, rng):
                position = replaceable[index]
                new[position] = self.tokens[rng.choice(self.neighbours(tokens[position]))]
            out.append(" ".join(new) or text)
        return out
