"""Gopher's repetition rules: drop documents that repeat their own lines, paragraphs or n-grams.

Rae et al. 2021 ("Scaling Language Models: Methods, Analysis & Insights from Training Gopher"),
App. A.1.1 and Table A1: a document is removed when any of these fractions exceeds its threshold
(defaults are the published ones; a recipe sets them in ``data.curation.repetition``):

===================================================  =========
duplicate paragraph fraction / character fraction    0.30 / 0.20
duplicate line fraction / character fraction         0.30 / 0.20
top 2-, 3-, 4-gram character fraction                0.20, 0.18, 0.16
duplicate 5- ... 10-gram character fraction          0.15, 0.14, 0.13, 0.12, 0.11, 0.10
===================================================  =========

The measures follow datatrove's ``GopherRepetitionFilter`` (0.10), which FineWeb ran, so a
decision here is the decision there up to word tokenisation:

- paragraphs are the text (stripped) split on runs of two or more newlines, lines on runs of
  newlines; an element is a duplicate at its second and later occurrences, and the character
  fraction is the duplicates' characters over the whole text's;
- the top n-gram's characters are its count times its length with single spaces between words,
  the first-seen n-gram winning a tie in count;
- duplicate n-gram characters are counted left to right, skipping past each repeated n-gram so no
  word is counted twice by overlapping repeats, words joined without spaces;
- checks run in the order above and the first one that fails names the reason; every comparison
  is strict (a fraction equal to its threshold passes).

Words are runs of letters, digits and combining marks (with inner periods or commas) and runs of
other non-space characters, the same split for every language, where datatrove uses spaCy's
English tokenizer for every document: counts can differ by a few characters, which moves
documents near a threshold. ``bench/repetition_vs_datatrove.py`` measures the agreement: the same
keep/drop decision on 99.3% of a fifth of the default corpus's prose (every Austen, Brown and
Bible document alike), and on every hostile case these rules exist for (a line, phrase or
paragraph repeated many times).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import regex

_PARAGRAPH = re.compile(r"\n{2,}")
_LINE = re.compile(r"\n+")
# a word: letters, digits and combining marks (Indic vowel signs are marks, not \w in ``re``),
# with inner periods or commas ("3.4.1", "1,000", "os.path", as spaCy keeps them); or a run of
# other non-space characters (punctuation, hyphens and apostrophes split off, as spaCy does)
_WORD = regex.compile(r"[\w\p{M}]+(?:[.,][\w\p{M}]+)*|[^\w\s\p{M}]+")
TOP_NGRAMS = (2, 3, 4)
DUP_NGRAMS = (5, 6, 7, 8, 9, 10)


@dataclass(frozen=True)
class RepetitionRules:
    """The thresholds of Gopher's Table A1, each a maximum fraction; None switches a rule off
    (1.0 does not: the top n-gram measure joins words with spaces the text may not have, as
    datatrove does, so "buy now! buy now! ..." has a top 3-gram fraction just over 1)."""

    dup_paragraph_fraction: float | None = 0.30
    dup_paragraph_char_fraction: float | None = 0.20
    dup_line_fraction: float | None = 0.30
    dup_line_char_fraction: float | None = 0.20
    top_ngram_char_fraction: tuple[float | None, ...] = (0.20, 0.18, 0.16)  # n = 2, 3, 4
    dup_ngram_char_fraction: tuple[float | None, ...] = (0.15, 0.14, 0.13, 0.12, 0.11, 0.10)

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> RepetitionRules:
        """From the recipe's ``data.curation.repetition`` mapping (schema-checked fields)."""
        return cls(
            dup_paragraph_fraction=cfg["dup_paragraph_fraction"],
            dup_paragraph_char_fraction=cfg["dup_paragraph_char_fraction"],
            dup_line_fraction=cfg["dup_line_fraction"],
            dup_line_char_fraction=cfg["dup_line_char_fraction"],
            top_ngram_char_fraction=tuple(cfg[f"top_{n}gram_char_fraction"] for n in TOP_NGRAMS),
            dup_ngram_char_fraction=tuple(cfg[f"dup_{n}gram_char_fraction"] for n in DUP_NGRAMS),
        )


def default_config() -> dict[str, Any]:
    """The recipe mapping (``data.curation.repetition``) of the published thresholds and no
    exempt source, for callers that build a curation config by hand."""
    rules = RepetitionRules()
    return {
        "dup_paragraph_fraction": rules.dup_paragraph_fraction,
        "dup_paragraph_char_fraction": rules.dup_paragraph_char_fraction,
        "dup_line_fraction": rules.dup_line_fraction,
        "dup_line_char_fraction": rules.dup_line_char_fraction,
        **{
            f"top_{n}gram_char_fraction": v
            for n, v in zip(TOP_NGRAMS, rules.top_ngram_char_fraction, strict=True)
        },
        **{
            f"dup_{n}gram_char_fraction": v
            for n, v in zip(DUP_NGRAMS, rules.dup_ngram_char_fraction, strict=True)
        },
        "exempt_sources": [],
    }


def _duplicates(elements: Sequence[str]) -> tuple[int, int]:
    """(how many elements repeat an earlier one, their characters)."""
    seen: set[str] = set()
    count = chars = 0
    for element in elements:
        if element in seen:
            count += 1
            chars += len(element)
        else:
            seen.add(element)
    return count, chars


def words(text: str) -> list[str]:
    return _WORD.findall(text)


@dataclass(frozen=True)
class _Grams:
    """The n-grams of one ``n``: equal n-grams share a group id."""

    groups: np.ndarray  # (positions,) group of the n-gram starting at each word
    first: np.ndarray  # (n_groups,) first position of each group
    counts: np.ndarray  # (n_groups,) occurrences of each group


def _ngram_ladder(ids: np.ndarray, top: int) -> dict[int, _Grams]:
    """Group ids of every n-gram for n = 2..top, built up one word at a time: an n-gram is the
    pair (its (n-1)-gram's group, its last word), encoded as one int64 and grouped by
    ``np.unique``. Exact (no hashing), and sorting int64 keeps it fast on long documents."""
    ladder = {}
    groups, n_words = ids, int(ids.max()) + 1 if len(ids) else 1
    for n in range(2, min(top, len(ids)) + 1):
        keys = groups[:-1] * n_words + ids[n - 1 :]  # < positions * words: fits in int64
        _, first, groups, counts = np.unique(
            keys, return_index=True, return_inverse=True, return_counts=True
        )
        groups = groups.reshape(-1)
        ladder[n] = _Grams(groups, first, counts)
    return ladder


def _top_ngram_chars(grams: _Grams, ids: np.ndarray, lengths: np.ndarray, n: int) -> int:
    """Characters of the most frequent n-gram (words joined by single spaces) times its count;
    among n-grams of equal count the one seen first."""
    top = grams.counts.max()
    start = int(grams.first[grams.counts == top].min())
    return int(top) * (int(lengths[ids[start : start + n]].sum()) + n - 1)


def _duplicate_ngram_chars(grams: _Grams, prefix: np.ndarray, n: int) -> int:
    """Characters (words without spaces) of the n-grams that repeat an earlier one, scanning left
    to right and jumping past each repeat, so overlapping repeats do not count a word twice.

    Only positions whose n-gram occurred before can be repeats, so the scan visits just those:
    one is a repeat when an earlier occurrence was visited, i.e. not jumped over. An earlier
    occurrence is either the group's first (visited unless inside a jump) or a position this
    loop already visited."""
    groups, first = grams.groups, grams.first
    later = np.flatnonzero(first[groups] < np.arange(len(groups)))
    visited_groups: set[int] = set()
    jumps: list[int] = []  # starts of the jumped-over spans [start, start + n - 1), increasing
    chars, resume = 0, 0
    for pos in later.tolist():
        if pos < resume:
            continue  # jumped over
        group = int(groups[pos])
        f = int(first[group])
        k = bisect.bisect_right(jumps, f) - 1
        first_visited = k < 0 or f >= jumps[k] + n - 1
        if group in visited_groups or first_visited:
            chars += int(prefix[pos + n] - prefix[pos])
            jumps.append(pos + 1)
            resume = pos + n
        else:
            visited_groups.add(group)
    return chars


def _over(value: float, limit: float | None) -> bool:
    return limit is not None and value > limit


def repetition_reason(text: str, rules: RepetitionRules) -> str | None:
    """The first of Gopher's repetition rules ``text`` fails (datatrove's reason name), or None."""
    if not text:
        return None
    size = len(text)
    paragraphs = _PARAGRAPH.split(text.strip())
    count, chars = _duplicates(paragraphs)
    if _over(count / len(paragraphs), rules.dup_paragraph_fraction):
        return "dup_para_frac"
    if _over(chars / size, rules.dup_paragraph_char_fraction):
        return "dup_para_char_frac"
    lines = _LINE.split(text)
    count, chars = _duplicates(lines)
    if _over(count / len(lines), rules.dup_line_fraction):
        return "dup_line_frac"
    if _over(chars / size, rules.dup_line_char_fraction):
        return "dup_line_char_frac"

    # words as integer ids (one per distinct word), so an n-gram is a row of n integers
    vocab: dict[str, int] = {}
    ids = np.array([vocab.setdefault(w, len(vocab)) for w in words(text)], dtype=np.int64)
    lengths = np.array([len(w) for w in vocab], dtype=np.int64)
    ladder = _ngram_ladder(ids, DUP_NGRAMS[-1])
    for n, limit in zip(TOP_NGRAMS, rules.top_ngram_char_fraction, strict=True):
        ok = limit is None or n not in ladder
        if not ok and _top_ngram_chars(ladder[n], ids, lengths, n) / size > limit:
            return f"top_{n}_gram"
    prefix = np.concatenate([[0], np.cumsum(lengths[ids])])  # characters of words [0, i)
    for n, limit in zip(DUP_NGRAMS, rules.dup_ngram_char_fraction, strict=True):
        ok = limit is None or n not in ladder
        if not ok and _duplicate_ngram_chars(ladder[n], prefix, n) / size > limit:
            return f"duplicated_{n}_n_grams"
    return None
