"""Decontamination: drop training documents that share a word n-gram with an evaluation item.

Following GPT-3 (Brown et al. 2020, App. C) and Nemotron-CC / NeMo Curator's task
decontamination, both sides are normalised the same way (lowercased, punctuation treated as a
word separator, so "Hello, world!" and "hello world" match) and compared as word 13-grams; a
document sharing any 13-gram with an item is contaminated by that item. GPT-3 used a shorter
n for tasks whose items are short (minimum 8 words); likewise an item with fewer than ``n`` but
at least ``min_words`` words is matched by its whole word sequence.

Efficiency: every n-gram of every item goes into one dict keyed by an 8-byte blake2b digest of
the n-gram (a fixed hash, unlike Python's salted ``hash``; with 2^64 values a false match is
negligible at any eval-set size), so a document costs one digest and one lookup per word.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

DEFAULT_N = 13
DEFAULT_MIN_WORDS = 8  # GPT-3's smallest n (App. C)
_WORD = re.compile(r"[^\W_]+")


def words(text: str) -> list[str]:
    """Lowercased runs of letters and digits: every other character separates words."""
    return _WORD.findall(text.lower())


def _key(grams: list[str]) -> bytes:
    return hashlib.blake2b(" ".join(grams).encode("utf-8"), digest_size=8).digest()


@dataclass
class DecontamResult:
    """``matches``: doc id -> sorted ids of the eval items it overlaps, only for contaminated
    documents; ``drop``: those document ids in input order."""

    matches: dict[str, list[str]] = field(default_factory=dict)
    drop: list[str] = field(default_factory=list)


class EvalIndex:
    """The hashed n-grams of a set of evaluation items, for fast membership tests."""

    def __init__(
        self,
        items: Iterable[tuple[str, str]],
        n: int = DEFAULT_N,
        min_words: int = DEFAULT_MIN_WORDS,
    ) -> None:
        """``items``: (eval item id, text). Items shorter than ``min_words`` words are skipped and
        listed in ``too_short`` (a 3-word answer would match countless innocent documents)."""
        if not 1 <= min_words <= n:
            raise ValueError(f"decontam: need 1 <= min_words ({min_words}) <= n ({n})")
        self.n = n
        self.grams: dict[bytes, set[str]] = {}
        self.lengths: set[int] = set()  # the n-gram sizes present (n, and short items' lengths)
        self.too_short: list[str] = []
        for item_id, text in items:
            tokens = words(text)
            if len(tokens) < min_words:
                self.too_short.append(item_id)
                continue
            size = min(n, len(tokens))
            self.lengths.add(size)
            for i in range(len(tokens) - size + 1):
                self.grams.setdefault(_key(tokens[i : i + size]), set()).add(item_id)

    def match(self, text: str) -> list[str]:
        """Sorted ids of the eval items that share an indexed n-gram with ``text``."""
        tokens = words(text)
        found: set[str] = set()
        for size in sorted(self.lengths):
            for i in range(len(tokens) - size + 1):
                hit = self.grams.get(_key(tokens[i : i + size]))
                if hit:
                    found |= hit
        return sorted(found)


def decontaminate(docs: Iterable[tuple[str, str]], index: EvalIndex) -> DecontamResult:
    """Check each (doc id, text) against ``index``; contaminated documents are to be dropped."""
    result = DecontamResult()
    for doc_id, text in docs:
        hits = index.match(text)
        if hits:
            result.matches[doc_id] = hits
            result.drop.append(doc_id)
    return result
