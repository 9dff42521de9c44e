"""MinHash-LSH near-duplicate clustering, in the datasketch and the datatrove scheme."""

import random

import numpy as np
import pytest

from openrecipe.data.minhash_lsh import (
    NO_SIGNATURE,
    MinHashParams,
    cluster,
    datatrove_words,
    fuzzy_dedup,
    shingles,
    signature_matrix,
)

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


# --- the datatrove scheme (datatrove 0.10.1's MinhashConfig() decisions) ------------------------

FINEWEB = MinHashParams(num_perm=112, ngram=5, bands=14, seed=1, scheme="datatrove")


def test_datatrove_words_follow_simplify_text_and_spacy():
    # Expected words printed by datatrove 0.10.1 itself (with spaCy 3.8.18):
    # load_word_tokenizer("eng").word_tokenize(simplify_text(text)).
    assert datatrove_words("I cannot—won't pay 3.5km for ‘Hello’, Café!") == [
        "i", "can", "not", "won", "t", "pay", "0", "km", "for", "‘", "hello", "cafe",
    ]  # fmt: skip
    assert datatrove_words("You're gonna love it: dont ask © 2024 €5 x≠y") == [
        "you", "re", "gon", "na", "love", "it", "do", "nt", "ask", "©", "0", "€", "0", "x", "=",
        "y",
    ]  # fmt: skip
    assert datatrove_words("") == [] and datatrove_words(" ,;! ") == []


def test_datatrove_signatures_match_datatrove():
    # Produced with datatrove 0.10.1 (/tmp/dtvenv): sig = MinhashDedupSignature(output_folder=...)
    # with its default MinhashConfig(); sig.get_signature(sig.get_shingles(text)), bands 0 and 13.
    texts = [
        "The quick brown fox jumps over the lazy dog near the river bank.",
        "It is a truth universally acknowledged, that a single man in possession of a good "
        "fortune, must be in want of a wife.",
        "Too short to sign.",  # 4 words: no 5-gram, so datatrove writes no signature
    ]
    expected = {
        0: (
            [85330943174081874, 53782044765694948, 285742329127442222, 34440879854629237,
             824349532772971887, 77381120859862210, 495754016648651698, 204404170303891102],
            [138080280408424662, 161219536182067379, 333063281871745314, 149073857945855951,
             1765945916311590, 714816410343323786, 445166650431484192, 3963570588256049],
        ),
        1: (
            [34771693638233420, 573406353858455645, 83221046620738143, 59946084950274201,
             78008301430087880, 75364833713859551, 237601424032649476, 4923335654919388],
            [90073391848850919, 88331630950461931, 16002098371649419, 3583845194980716,
             331379148099858091, 82769037391938178, 77508525543322893, 44232903069388157],
        ),
    }  # fmt: skip
    matrix = signature_matrix(texts, FINEWEB)
    assert matrix.dtype == np.uint64 and matrix.shape == (3, 112)
    for row, (band0, band13) in expected.items():
        assert matrix[row, :8].tolist() == band0
        assert matrix[row, 104:].tolist() == band13
    assert (matrix[2] == NO_SIGNATURE).all()


def test_datatrove_identical_and_normalised_copies_cluster():
    base = _doc(1, 120)
    noisy = "  " + base.upper().replace(" ", ", ", 7) + "!!!"  # case and punctuation only
    numbers_a = (
        "On 12 May 1999 the 42 ships of the northern fleet sailed out of the harbour at dawn."
    )
    numbers_b = (
        "On 3 May 2003 the 17 ships of the northern fleet sailed out of the harbour at dawn."
    )
    ids = ["a", "b", "c", "d", "e", "f"]
    texts = [base, _doc(2, 120), base, noisy, numbers_a, numbers_b]
    result = fuzzy_dedup(ids, texts, FINEWEB)
    assert result.duplicate_of == {"c": "a", "d": "a", "f": "e"}
    assert result.clusters == [["a", "c", "d"], ["e", "f"]]
    assert result.kept == ["a", "b", "e"]
    # the datasketch scheme keeps digits (and checks Jaccard): the dated copies are distinct there
    plain = fuzzy_dedup(ids, texts, MinHashParams(num_perm=112, bands=14, seed=1))
    assert "f" not in plain.duplicate_of and plain.duplicate_of["c"] == "a"


def test_datatrove_keeps_the_union_by_size_root():
    """MinhashDedupCluster's union by size: band 0 pairs documents 1-2 (root 1, size 2), then
    band 1 pairs 0-1: the pair's first root (0) joins the larger cluster, so 1 is kept, not 0.
    Both cases checked against datatrove 0.10.1: these rows written as two bands' ``.sig`` files
    (``MinhashConfig(num_buckets=2, hashes_per_bucket=1)``) through ``MinhashDedupBuckets`` and
    ``MinhashDedupCluster`` remove documents [0, 2] and [1, 2, 3]."""
    params = MinHashParams(num_perm=2, bands=2, seed=1, scheme="datatrove")
    matrix = np.array([[10, 7], [5, 7], [5, 8], [6, 9]], dtype=np.uint64)
    result = cluster(["d0", "d1", "d2", "d3"], matrix, params)
    assert result.kept == ["d1", "d3"]
    assert result.duplicate_of == {"d0": "d1", "d2": "d1"}
    assert result.clusters == [["d1", "d0", "d2"]]
    # equal sizes: the pair's first root stays; a band equal across three documents chains them
    chain = np.array([[1, 7], [2, 8], [1, 9], [1, 8]], dtype=np.uint64)
    result = cluster(["d0", "d1", "d2", "d3"], chain, params)
    assert result.kept == ["d0"] and result.clusters == [["d0", "d1", "d2", "d3"]]
    # documents without a signature are never duplicates, not even of each other
    empty = np.full((2, 2), NO_SIGNATURE, dtype=np.uint64)
    assert cluster(["x", "y"], empty, params).kept == ["x", "y"]


def test_datatrove_scheme_is_deterministic_and_shardable():
    texts = [_doc(s, 80) for s in range(6)] + [_doc(3, 80), _edit(_doc(4, 80), 1, seed=2)]
    ids = [f"d{i}" for i in range(len(texts))]
    whole = signature_matrix(texts, FINEWEB)
    assert np.array_equal(whole, signature_matrix(texts, FINEWEB))
    shards = np.concatenate(
        [signature_matrix(texts[:3], FINEWEB), signature_matrix(texts[3:], FINEWEB)]
    )
    assert np.array_equal(whole, shards)  # rows do not depend on the other documents
    other_seed = signature_matrix(
        texts, MinHashParams(num_perm=112, bands=14, seed=2, scheme="datatrove")
    )
    assert not np.array_equal(whole, other_seed)
    first = fuzzy_dedup(ids, texts, FINEWEB)
    assert first == cluster(ids, shards, FINEWEB) == fuzzy_dedup(ids, texts, FINEWEB)
    assert first.duplicate_of == {"d6": "d3", "d7": "d4"}


def test_datatrove_scheme_rejects_what_datatrove_cannot_do():
    with pytest.raises(ValueError, match="needs bands"):
        signature_matrix(["x"], MinHashParams(scheme="datatrove"))
    with pytest.raises(ValueError, match="shingles words"):
        signature_matrix(["x"], MinHashParams(unit="char", bands=4, scheme="datatrove"))
    with pytest.raises(ValueError, match="uint64"):
        cluster(["a"], np.zeros((1, 112), dtype=np.uint32), FINEWEB)
