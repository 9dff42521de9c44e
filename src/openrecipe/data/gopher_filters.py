"""Gopher quality and Gopher repetition with datatrove 0.10.1's decisions, made faster.

``GopherQualityFilter()`` and ``GopherRepetitionFilter()`` with their default settings (the
``datatrove`` heuristics a recipe selects with ``data.curation.heuristics: datatrove``): the same
words (``openrecipe.data.spacy_en``, spaCy's English tokenizer as datatrove runs it for every
language), the same checks in the same order, the same thresholds compared the same way (strict
``>``/``<``) and the same reason strings, so a document is kept or dropped, and named, as datatrove
keeps, drops and names it. ``bench/gopher_c4_vs_datatrove.py`` checks that on the default corpus
and exits 1 on any difference.

Quality (Rae et al. 2021, A.1.1), first failing check names the reason: fewer than 50 or more than
100,000 words with a character outside datatrove's ``PUNCTUATION_SET`` (``gopher_short_doc`` /
``gopher_long_doc``); their mean length under 3 or over 10 (``gopher_below_avg_threshold`` /
``gopher_above_avg_threshold``); ``#`` or ``...`` + ``…`` occurrences over all words above 0.1
(``gopher_too_many_hashes`` / ``gopher_too_many_ellipsis``); over 90% of ``splitlines()`` lines
starting with ``•`` or ``-`` (``gopher_too_many_bullets``), over 30% ending with ``...`` or ``…``
(``gopher_too_many_end_ellipsis``); under 80% of words holding a letter
(``gopher_below_alpha_threshold``); fewer than 2 of the 8 stop words
(``gopher_enough_stop_words``, datatrove's name for too few).

Repetition: ``empty``; paragraphs (stripped text split on ``\\n{2,}``) then lines (``\\n+``)
repeated, as a fraction of elements (``dup_para_frac``, ``dup_line_frac``, > 0.3) and of the
text's characters (``dup_para_char_frac``, ``dup_line_char_frac``, > 0.2); the most frequent 2-,
3-, 4-gram (first seen wins a tie; words joined by spaces) times its count over the text's length
(``top_{n}_gram``, > 0.2, 0.18, 0.16); repeated 5- ... 10-grams (words joined without spaces,
counted left to right skipping past each repeat) over the text's length
(``duplicated_{n}_n_grams``, > 0.15 ... 0.10).

Why ours is faster with the same output: datatrove tokenises each document twice (once per filter)
with spaCy and builds every n-gram string in Python (9 passes over the words, 6 of them joining
strings). Here the words are tokenised once per distinct whitespace chunk of the corpus; the
quality statistics are per-chunk vectors summed with numpy; n-grams are integer keys (a word's id,
then dense ranks of (key, next word)), counted with numpy; the no-space n-grams, whose equality is
string equality (``ab``+``c`` equals ``a``+``bc``), get a polynomial hash of their characters,
computed from per-word hashes, and every hash group holding two different word sequences is
settled by comparing the strings, so a hash collision cannot change a decision. The left-to-right
repeat count visits only the positions whose n-gram occurs twice or more.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from itertools import chain

import numpy as np

from openrecipe.data.spacy_en import _RULES, SpacyEnglish, english

STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")  # datatrove's STOP_WORDS
TOP_N_GRAMS = ((2, 0.2), (3, 0.18), (4, 0.16))
DUP_N_GRAMS = ((5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10))
_PARAGRAPHS = re.compile(r"\n{2,}")
_LINES = re.compile("\n+")
# two primes below 2**31 (a product of two residues fits in int64) and the hash base
_P1, _P2, _B = 2147483647, 2147483629, 1 << 32


def punctuation_set() -> frozenset[str]:
    """datatrove's ``PUNCTUATION_SET`` (``PUNCTUATION`` and ``TERMINAL_PUNCTUATION``)."""
    data = json.loads(_RULES.read_text(encoding="utf-8"))
    return frozenset(data["datatrove_punctuation_set"])


def _dup_count(elements: list[str]) -> tuple[int, int]:
    """datatrove's ``find_duplicates``: elements seen before, and their characters."""
    unique: set[str] = set()
    dups = chars = 0
    for element in elements:
        if element in unique:
            dups += 1
            chars += len(element)
        else:
            unique.add(element)
    return dups, chars


def _dense(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Dense ranks of the pairs (left[i], right[i]) (both < 2**31)."""
    packed = (left.astype(np.int64) << 31) | right.astype(np.int64)
    return np.unique(packed, return_inverse=True)[1].reshape(-1)


class GopherFilters:
    """Both Gopher filters over one word analysis per document. One instance per process: it
    keeps the corpus's word vocabulary and per-chunk statistics."""

    def __init__(self, tokenizer: SpacyEnglish | None = None) -> None:
        self.tok = tokenizer or english()
        self.punct = punctuation_set()
        self.vocab: dict[str, int] = {}
        self.words: list[str] = []
        # per word: length, two character hashes, BASE ** length for each (mod P)
        self._word = _Rows(5)
        self.chunk_index: dict[str, int] = {}
        self.chunk_ids: list[tuple[int, ...]] = []
        # per chunk: words, non-symbol words, their characters, words with a letter, stop-word
        # bits, its first token's index in tok.pair_seconds and its last token's in
        # tok.pair_firsts (-1: none)
        self._chunk = _Rows(7)
        tok = self.tok
        self._firsts = {t: i for i, t in enumerate(tok.pair_firsts)}
        self._seconds = {t: i for i, t in enumerate(tok.pair_seconds)}
        # pair_table[first, second]: the two tokens are neighbours in a special-case phrase (the
        # last row and column, which -1 selects, are all False)
        self._pair_table = np.zeros((len(tok.pair_firsts) + 1, len(tok.pair_seconds) + 1), bool)
        for a, b in tok.pairs:
            self._pair_table[self._firsts[a], self._seconds[b]] = True

    # --- per-chunk analysis --------------------------------------------------------------------
    def _word_id(self, word: str) -> int:
        wid = self.vocab.get(word)
        if wid is None:
            wid = self.vocab[word] = len(self.words)
            self.words.append(word)
            # the UTF-32 code units as one integer in base 2**32, mod P: a hash of the word that
            # composes over concatenation, h(a + b) = h(a) + h(b) * (2**32) ** len(a) (mod P)
            value = int.from_bytes(word.encode("utf-32-le"), "little")
            size = len(word)
            self._word.append(
                (size, value % _P1, value % _P2, pow(_B, size, _P1), pow(_B, size, _P2))
            )
        return wid

    def _add_chunk(self, chunk: str, words: tuple[str, ...] | None = None) -> int:
        tok = self.tok
        if words is None:
            words = tok.chunk_words(chunk)
            pre = tok.pre[chunk]
            head = self._seconds.get(pre[0], -1)
            tail = self._firsts.get(pre[-1], -1)
        else:  # a whole document's words (see _chunks)
            head = tail = -1
        ids = tuple(self._word_id(w) for w in words)
        punct = self.punct
        non_symbol = [w for w in words if not punct.issuperset(w)]
        stop = 0
        for bit, word in enumerate(STOP_WORDS):
            if word in words:
                stop |= 1 << bit
        index = self.chunk_index[chunk] = len(self.chunk_ids)
        self.chunk_ids.append(ids)
        self._chunk.append(
            (
                len(words),
                len(non_symbol),
                sum(map(len, non_symbol)),
                sum(any(c.isalpha() for c in w) for w in words),
                stop,
                head,
                tail,
            )
        )
        return index

    def _chunks(self, text: str) -> list[int]:
        split = text.split()
        ids = list(map(self.chunk_index.get, split))
        if None in ids:
            ids = [self.chunk_index.get(c) for c in split]
            for i, chunk in enumerate(split):
                if ids[i] is None:
                    index = self.chunk_index.get(chunk)
                    ids[i] = self._add_chunk(chunk) if index is None else index
        if len(ids) > 1:
            table = self._chunk.array()
            if self._pair_table[table[ids[:-1], 6], table[ids[1:], 5]].any():
                # a special case may match across two chunks: the whole document's words,
                # as one pseudo-chunk (no real chunk holds whitespace; this key does)
                key = "\0 " + text
                index = self.chunk_index.get(key)
                if index is None:
                    words = tuple(self.tok.words(text))
                    index = self._add_chunk(key, words)
                return [index]
        return ids  # type: ignore[return-value]

    # --- the filters ---------------------------------------------------------------------------
    def reasons(self, text: str) -> tuple[str | None, str | None]:
        """(GopherQualityFilter's reason, GopherRepetitionFilter's reason) for ``text``; None
        where the filter keeps it."""
        chunks = self._chunks(text)
        return self._quality(text, chunks), self._repetition(text, chunks)

    def quality(self, text: str) -> str | None:
        """GopherQualityFilter's reason for dropping ``text``, or None."""
        return self._quality(text, self._chunks(text))

    def repetition(self, text: str) -> str | None:
        """GopherRepetitionFilter's reason for dropping ``text``, or None."""
        return self._repetition(text, self._chunks(text))

    def _quality(self, text: str, chunks: list[int]) -> str | None:
        if chunks:
            rows = self._chunk.array()[chunks]
            n_words, n_non_symbol, non_symbol_chars, n_alpha = (int(x) for x in rows[:, :4].sum(0))
            stop = int(np.bitwise_or.reduce(rows[:, 4]))
        else:
            n_words = n_non_symbol = non_symbol_chars = n_alpha = stop = 0
        if n_non_symbol < 50:
            return "gopher_short_doc"
        if n_non_symbol > 100000:
            return "gopher_long_doc"
        mean = non_symbol_chars / n_non_symbol  # == np.mean of the lengths (an exact int sum)
        if mean < 3:
            return "gopher_below_avg_threshold"
        if mean > 10:
            return "gopher_above_avg_threshold"
        if text.count("#") / n_words > 0.1:
            return "gopher_too_many_hashes"
        if (text.count("...") + text.count("…")) / n_words > 0.1:
            return "gopher_too_many_ellipsis"
        lines = text.splitlines()
        stripped = [s.lstrip() for s in lines]
        if sum(s.startswith(("•", "-")) for s in stripped) / len(lines) > 0.9:
            return "gopher_too_many_bullets"
        if sum(s.rstrip().endswith(("...", "…")) for s in lines) / len(lines) > 0.3:
            return "gopher_too_many_end_ellipsis"
        if n_alpha / n_words < 0.8:
            return "gopher_below_alpha_threshold"
        if stop.bit_count() < 2:
            return "gopher_enough_stop_words"
        return None

    def _repetition(self, text: str, chunks: list[int]) -> str | None:
        if not text:
            return "empty"
        paragraphs = _PARAGRAPHS.split(text.strip())
        dups, chars = _dup_count(paragraphs)
        if dups / len(paragraphs) > 0.3:
            return "dup_para_frac"
        if chars / len(text) > 0.2:
            return "dup_para_char_frac"
        lines = _LINES.split(text)
        dups, chars = _dup_count(lines)
        if dups / len(lines) > 0.3:
            return "dup_line_frac"
        if chars / len(text) > 0.2:
            return "dup_line_char_frac"
        ids = np.fromiter(
            chain.from_iterable(map(self.chunk_ids.__getitem__, chunks)), dtype=np.int64
        )
        return self._ngram_reason(ids, len(text))

    def _ngram_reason(self, ids: np.ndarray, text_len: int) -> str | None:
        n_words = len(ids)
        lengths, h1w, h2w, p1w, p2w = self._word.array()[ids].T
        # prefix sums of word lengths: the characters of words[i:i+n] is cum[i+n] - cum[i]
        cum = np.concatenate(([0], np.cumsum(lengths)))
        key = ids  # dense id of the word sequence starting at i, for the current n
        h1, h2 = h1w.copy(), h2w.copy()  # hash of the n-gram's characters (words joined)
        q1, q2 = p1w.copy(), p2w.copy()  # base ** (its characters)
        for n in range(2, 11):
            m = n_words - n + 1
            if m <= 0:
                # no n-gram: top_n skipped (datatrove's `continue`); duplicated_n counts 0
                return None
            key = _dense(key[:m], ids[n - 1 : n - 1 + m])
            h1 = (h1[:m] + h1w[n - 1 : n - 1 + m] * q1[:m]) % _P1
            h2 = (h2[:m] + h2w[n - 1 : n - 1 + m] * q2[:m]) % _P2
            q1 = q1[:m] * p1w[n - 1 : n - 1 + m] % _P1
            q2 = q2[:m] * p2w[n - 1 : n - 1 + m] % _P2
            chars = cum[n : n + m] - cum[:m]
            if n <= 4:
                frac = dict(TOP_N_GRAMS)[n]
                counts = np.bincount(key)
                best = counts.max()
                # Counter.most_common(1): the first-seen of the most frequent n-grams
                first = int(np.flatnonzero(counts[key] == best)[0])
                top_chars = (int(chars[first]) + n - 1) * int(best)
                if top_chars / text_len > frac:
                    return f"top_{n}_gram"
            else:
                frac = dict(DUP_N_GRAMS)[n]
                skey = self._string_key(key, h1, h2, ids, n)
                if skey is not None and _repeated_chars(skey, chars, n) / text_len > frac:
                    return f"duplicated_{n}_n_grams"
        return None

    def _string_key(
        self, key: np.ndarray, h1: np.ndarray, h2: np.ndarray, ids: np.ndarray, n: int
    ) -> np.ndarray | None:
        """Keys equal exactly where the n-grams' concatenated strings are equal: the word
        sequence key, merged where different sequences spell the same string (equal hashes,
        confirmed by comparing the strings). None when no string occurs twice (equal strings
        have equal hashes, so all-distinct hashes prove it)."""
        distinct, hashed = np.unique((h1 << 31) | h2, return_inverse=True)
        if len(distinct) == len(key):
            return None
        hashed = hashed.reshape(-1)
        pairs = np.unique((hashed.astype(np.int64) << 31) | key)
        if len(pairs) == len(distinct):
            return key  # every hash group is one word sequence: string equality == key equality
        group_of_pair = pairs >> 31
        shared = np.unique(group_of_pair[np.flatnonzero(np.diff(group_of_pair) == 0)])
        merged = key.copy()
        where = np.flatnonzero(np.isin(hashed, shared))
        words = self.words
        canon: dict[str, int] = {}
        for i in where.tolist():
            string = "".join(words[w] for w in ids[i : i + n].tolist())
            merged[i] = canon.setdefault(string, int(key[i]))
        return merged


class _Rows:
    """An int64 table that grows by appending rows (capacity doubles), viewed as numpy."""

    def __init__(self, width: int) -> None:
        self._data = np.zeros((1024, width), dtype=np.int64)
        self._size = 0

    def append(self, row: tuple[int, ...]) -> None:
        if self._size == len(self._data):
            self._data = np.concatenate((self._data, np.zeros_like(self._data)))
        self._data[self._size] = row
        self._size += 1

    def array(self) -> np.ndarray:
        return self._data[: self._size]


def _repeated_chars(key: np.ndarray, chars: np.ndarray, n: int) -> int:
    """datatrove's ``find_all_duplicate``: left to right, an n-gram seen before adds its
    characters and jumps past itself; others are remembered and step one word. Positions whose
    n-gram occurs once step one word and are never seen again, so only the others are visited."""
    counts = np.bincount(key)
    repeated = np.flatnonzero(counts[key] > 1)
    if not len(repeated):
        return 0
    keys, sizes = key[repeated].tolist(), chars[repeated].tolist()
    positions = repeated.tolist()
    unique: set[int] = set()
    total = 0
    nxt = 0  # the next position the scan stands on
    for j, pos in enumerate(positions):
        if pos < nxt:
            continue
        k = keys[j]
        if k in unique:
            total += sizes[j]
            nxt = pos + n
        else:
            unique.add(k)
            nxt = pos + 1
    return total


def gopher_reasons(texts: Sequence[str]) -> list[tuple[str | None, str | None]]:
    """(quality reason, repetition reason) per text, with one ``GopherFilters``."""
    filters = GopherFilters()
    return [filters.reasons(text) for text in texts]
