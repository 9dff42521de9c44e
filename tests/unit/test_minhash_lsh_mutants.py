"""Behaviour the MinHash-LSH step promises and ``test_minhash_lsh.py`` left unpinned (found by
mutation testing, ``bench/mutation.py --only data/minhash_lsh.py``): the seed reaching the
permutations, a two-document cluster being listed, the threshold as an inclusive bound, the
smallest valid layouts, the empty signature matrix, and each refusal's exact message."""

from __future__ import annotations

import numpy as np
import pytest
from datasketch import MinHash

from openrecipe.data.minhash_lsh import (
    MinHashParams,
    cluster,
    fuzzy_dedup,
    shingles,
    signature_matrix,
)

A = "the quick brown fox jumps over the lazy dog near the quiet river bank today"
B = "the quick brown fox jumps over the lazy dog near the quiet river bank again"


def _datasketch(text: str, params: MinHashParams) -> np.ndarray:
    sig = MinHash(num_perm=params.num_perm, seed=params.seed)
    for shingle in shingles(text, params.ngram, params.unit):
        sig.update(shingle)
    return sig.hashvalues


def test_the_seed_chooses_the_permutations() -> None:
    """Signatures are datasketch's for the recipe's seed, not its default seed."""
    seeded = MinHashParams(num_perm=64, seed=7)
    matrix = signature_matrix([A, B], seeded)
    assert matrix.tolist() == [_datasketch(A, seeded).tolist(), _datasketch(B, seeded).tolist()]
    assert matrix.tolist() != signature_matrix([A, B], MinHashParams(num_perm=64, seed=1)).tolist()


def test_a_pair_is_a_cluster_listed_with_its_kept_document_first() -> None:
    result = fuzzy_dedup(
        ["a", "b", "c"], [A, A, "something else entirely, unrelated"], MinHashParams()
    )
    assert result.clusters == [["a", "b"]]
    assert result.kept == ["a", "c"] and result.duplicate_of == {"b": "a"}


def test_the_threshold_is_inclusive() -> None:
    """Two documents whose estimated Jaccard equals the threshold exactly are near-duplicates."""
    params = MinHashParams(
        num_perm=64, seed=3, bands=64
    )  # rows of 1: any shared value is a candidate
    matrix = signature_matrix([A, B], params)
    estimate = float(np.mean(matrix[0] == matrix[1]))
    assert 0 < estimate < 1
    at = MinHashParams(num_perm=64, seed=3, bands=64, threshold=estimate)
    assert cluster(["a", "b"], matrix, at).duplicate_of == {"b": "a"}
    above = MinHashParams(num_perm=64, seed=3, bands=64, threshold=np.nextafter(estimate, 1.0))
    assert cluster(["a", "b"], matrix, above).duplicate_of == {}


def test_no_texts_give_an_empty_uint32_matrix_of_num_perm_columns() -> None:
    empty = signature_matrix([], MinHashParams(num_perm=32))
    assert empty.shape == (0, 32) and empty.dtype == np.uint32
    assert cluster([], empty, MinHashParams(num_perm=32)).kept == []


def test_the_smallest_layouts_are_accepted() -> None:
    assert MinHashParams(num_perm=128, bands=1).lsh_params() == (1, 128)
    datatrove = MinHashParams(num_perm=112, bands=14, ngram=1, scheme="datatrove")
    assert datatrove.datatrove_layout() == (14, 8)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: cluster(["a"], np.zeros((2, 8), np.uint32), MinHashParams(num_perm=8)),
         "fuzzy_dedup: 1 ids but 2 signatures"),
        (lambda: cluster(["a", "a"], np.zeros((2, 8), np.uint32), MinHashParams(num_perm=8)),
         "fuzzy_dedup: ids are not unique"),
        (lambda: cluster(["a"], np.zeros((1, 8), np.uint32), MinHashParams(num_perm=8, scheme="x")),  # type: ignore[arg-type]
         "fuzzy_dedup: unknown scheme 'x'"),
        (lambda: signature_matrix([A], MinHashParams(scheme="x")),  # type: ignore[arg-type]
         "fuzzy_dedup: unknown scheme 'x'"),
        (lambda: fuzzy_dedup(["a", "b"], [A], MinHashParams()),
         "fuzzy_dedup: 2 ids but 1 texts"),
        (lambda: shingles(A, 5, "token"),  # type: ignore[arg-type]
         "fuzzy_dedup: unit must be 'word' or 'char', got 'token'"),
        (lambda: MinHashParams(num_perm=112, bands=14, ngram=0, scheme="datatrove").datatrove_layout(),
         "fuzzy_dedup: ngram must be >= 1, got 0"),
        (lambda: MinHashParams(num_perm=112, scheme="datatrove").datatrove_layout(),
         "fuzzy_dedup: the datatrove scheme needs bands (datatrove's num_buckets; its default "
         "and FineWeb's is 14 bands with num_perm 112)"),
    ],
)  # fmt: skip
def test_each_refusal_says_exactly_what_is_wrong(call, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        call()
    assert str(raised.value) == message
