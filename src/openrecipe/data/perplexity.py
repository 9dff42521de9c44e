"""Model-based document quality: perplexity under a reference-text language model, in buckets.

The signal. A word bigram language model with interpolated Kneser-Ney smoothing (Kneser & Ney
1995; Chen & Goodman 1998, sec. 3.5; discount D = n1 / (n1 + 2 n2), Ney et al. 1994) is trained on
a *reference* split of text we take as high quality; a document's perplexity under it measures
how much it reads like that reference. This is CCNet's quality signal (Wenzek et al. 2020: a
KenLM 5-gram trained on Wikipedia, documents split into head/middle/tail by perplexity
terciles), scaled down to a bigram so it trains in a second on a CPU. In the default corpus the
reference is part of the Austen novels and the Brown prose; those reference documents are held
out from scoring (:func:`split_reference`), since a model scores its own training text too well.

The buckets. Nemotron-CC (Su et al. 2024, sec. 2.2) scores every document with an ensemble of
three classifiers (FineWeb-Edu-style and DCLM-style fastText/embedding classifiers), maps each
classifier's score to an integer 0-19 by its percentiles over the corpus, takes the maximum over
the ensemble, and groups the 20 buckets into 5 quality levels that get different treatment
(rephrasing, upsampling). Here there is one "classifier", the reference LM, and
:func:`bucket_edges` / :func:`assign_bucket` are the percentile step: ``n_buckets`` quantiles of
the scored documents' log-perplexity, bucket ``n_buckets - 1`` being the most reference-like.
Edges are stored values, so new documents can be bucketed against the same thresholds.

Everything is deterministic: counts are exact, sums run in a fixed order, ties break by id.
:attr:`BigramKN.training_sha256` and :meth:`BigramKN.model_sha256` identify the data and the
model for the manifest.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from openrecipe.hashing import derive_seed

BOS, EOS = "<s>", "</s>"
_TOKEN = re.compile(r"\w+(?:'\w+)?|[^\w\s]")


def tokenize(text: str) -> list[list[str]]:
    """Lowercased word and punctuation tokens, one sequence per non-empty line (a paragraph in
    our prose sources), each wrapped in <s> ... </s>."""
    return [
        [BOS, *tokens, EOS] for line in text.lower().split("\n") if (tokens := _TOKEN.findall(line))
    ]


class BigramKN:
    """Interpolated Kneser-Ney word bigram model, backing off to a uniform distribution over the
    vocabulary plus one unknown word (so every token, seen or not, has a probability > 0)."""

    def __init__(self, docs: Iterable[tuple[str, str]]) -> None:
        """Train on (id, text) pairs, in the order given."""
        bigrams: Counter[tuple[str, str]] = Counter()
        training = hashlib.sha256()
        for doc_id, text in docs:
            training.update(f"{doc_id}\0{hashlib.sha256(text.encode()).hexdigest()}\n".encode())
            for seq in tokenize(text):
                bigrams.update(zip(seq, seq[1:], strict=False))
        if not bigrams:
            raise ValueError("quality: the reference split has no tokens")
        self.training_sha256 = training.hexdigest()
        self.bigrams = bigrams
        self.context_count: Counter[str] = Counter()  # c(v, .)
        self.context_types: Counter[str] = Counter()  # N1+(v, .)
        self.continuation: Counter[str] = Counter()  # N1+(., w)
        for (v, w), c in bigrams.items():
            self.context_count[v] += c
            self.context_types[v] += 1
            self.continuation[w] += 1
        self.bigram_types = len(bigrams)  # N1+(., .)
        count_of_counts = Counter(bigrams.values())
        n1, n2 = count_of_counts[1], count_of_counts[2]
        self.discount = n1 / (n1 + 2 * n2) if n1 else 0.75
        self.vocab_size = len(self.continuation)

    def _p_continuation(self, w: str) -> float:
        """Kneser-Ney unigram (how many contexts w follows), interpolated with uniform."""
        d, n = self.discount, self.bigram_types
        uniform = 1.0 / (self.vocab_size + 1)
        return max(self.continuation[w] - d, 0.0) / n + d * self.vocab_size / n * uniform

    def prob(self, v: str, w: str) -> float:
        """P(w | v)."""
        lower = self._p_continuation(w)
        c_v = self.context_count[v]
        if not c_v:
            return lower
        d = self.discount
        return (max(self.bigrams[(v, w)] - d, 0.0) + d * self.context_types[v] * lower) / c_v

    def log_perplexity(self, text: str) -> float:
        """Mean negative natural-log probability per predicted token (each word and </s>);
        ``inf`` for a text with no tokens."""
        total, n = 0.0, 0
        for seq in tokenize(text):
            for v, w in zip(seq, seq[1:], strict=False):
                total -= math.log(self.prob(v, w))
                n += 1
        return total / n if n else math.inf

    def perplexity(self, text: str) -> float:
        return math.exp(self.log_perplexity(text))

    def model_sha256(self) -> str:
        """sha256 of the model's sufficient statistics (sorted bigram counts and the discount)."""
        digest = hashlib.sha256(f"bigram-kn d={self.discount!r}\n".encode())
        for (v, w), c in sorted(self.bigrams.items()):
            digest.update(f"{v}\0{w}\0{c}\n".encode())
        return digest.hexdigest()

    def info(self) -> dict[str, Any]:
        """What a manifest records about the model."""
        return {
            "model": "word-bigram-interpolated-kneser-ney",
            "discount": round(self.discount, 12),
            "vocab_size": self.vocab_size,
            "bigram_types": self.bigram_types,
            "training_sha256": self.training_sha256,
            "model_sha256": self.model_sha256(),
        }


def split_reference(
    docs: Sequence[dict[str, Any]], reference_sources: Iterable[str], fraction: float, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(reference, to_score): a ``fraction`` of the documents of ``reference_sources`` go to the
    reference split, chosen by a hash of (seed, id) so the choice of one document never depends
    on which others are present; the rest, and every other source, are scored. Order is kept."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"quality: reference fraction must be in (0, 1), got {fraction}")
    sources = set(reference_sources)
    cut = fraction * 2**31
    reference, to_score = [], []
    for doc in docs:
        chosen = doc["source"] in sources and derive_seed(seed, "quality", doc["id"]) < cut
        (reference if chosen else to_score).append(doc)
    return reference, to_score


def bucket_edges(log_perplexities: Sequence[float], n_buckets: int) -> list[float]:
    """The ``n_buckets - 1`` ascending thresholds on quality (= -log perplexity) that split the
    given documents into equal-count quantile buckets."""
    if n_buckets < 1:
        raise ValueError(f"quality: n_buckets must be >= 1, got {n_buckets}")
    if not log_perplexities:
        raise ValueError("quality: no scored documents to take quantiles of")
    quality = sorted(-lp for lp in log_perplexities)
    return [quality[k * len(quality) // n_buckets] for k in range(1, n_buckets)]


def assign_bucket(log_perplexity: float, edges: Sequence[float]) -> int:
    """0 (least reference-like, highest perplexity) to ``len(edges)`` (most reference-like)."""
    return bisect.bisect_right(edges, -log_perplexity)
