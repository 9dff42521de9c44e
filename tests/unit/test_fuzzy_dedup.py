"""MinHash-LSH near-duplicate clustering."""

import random

import pytest

from openrecipe.data.fuzzy_dedup import MinHashParams, fuzzy_dedup, shingles

WORDS = [
    "river",
    "stone",
    "lantern",
    "garden",
    "quiet",
    "morning",
    "letter",
    "window",
    "harbour",
    "bread",
    "winter",
    "market",
    "candle",
    "meadow",
    "silver",
    "thread",
    "orchard",
    "whisper",
    "pocket",
    "ladder",
    "copper",
    "valley",
    "feather",
    "basket",
    "mirror",
    "engine",
    "island",
    "violet",
    "chimney",
    "shadow",
    "bridge",
    "velvet",
    "compass",
    "saddle",
    "tunnel",
    "glacier",
]


def _doc(seed: int, n: int = 300) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _edit(text: str, n_changes: int, seed: int) -> str:
    rng = random.Random(seed)
    tokens = text.split()
    for _ in range(n_changes):
        tokens[rng.randrange(len(tokens))] = "zzz"
    return " ".join(tokens)


def test_shingles_word_and_char():
    assert shingles("A b, c D", 2, "word") == {b"a b", b"b c", b"c d"}
    assert shingles("ab  c", 3, "char") == {b"ab ", b"b c"}
    assert shingles("one two", 5, "word") == {b"one two"}  # shorter than one n-gram


def test_near_duplicates_clustered_first_kept():
    base, other = _doc(1), _doc(2)
    ids = ["x0", "x1", "x2", "x3", "x4"]
    texts = [other, base, _edit(base, 2, seed=7), _doc(3), _edit(base, 1, seed=8)]
    result = fuzzy_dedup(ids, texts, MinHashParams(seed=42))
    assert result.clusters == [["x1", "x2", "x4"]]
    assert result.duplicate_of == {"x2": "x1", "x4": "x1"}
    assert result.kept == ["x0", "x1", "x3"]


def test_distinct_documents_all_kept_and_char_mode_agrees():
    texts = [_doc(s) for s in range(20)]
    ids = [f"d{s}" for s in range(20)]
    for params in (MinHashParams(), MinHashParams(unit="char", ngram=24, num_perm=260, bands=20)):
        result = fuzzy_dedup(ids, texts, params)
        assert result.kept == ids and not result.clusters


def test_heavily_edited_copy_is_not_a_duplicate():
    base = _doc(5)
    result = fuzzy_dedup(["a", "b"], [base, _edit(base, 120, seed=1)], MinHashParams())
    assert result.kept == ["a", "b"]


def test_deterministic_under_seed():
    texts = [_doc(1), _edit(_doc(1), 2, 3), _doc(9)]
    ids = ["a", "b", "c"]
    first = fuzzy_dedup(ids, texts, MinHashParams(seed=3))
    assert first == fuzzy_dedup(ids, texts, MinHashParams(seed=3))
    assert first.duplicate_of == {"b": "a"}


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="not unique"):
        fuzzy_dedup(["a", "a"], ["x", "y"], MinHashParams())
    with pytest.raises(ValueError, match="bands"):
        fuzzy_dedup(["a"], ["x"], MinHashParams(bands=7))
