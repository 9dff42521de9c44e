"""Near-duplicate removal by MinHash-LSH (Broder 1997; Leskovec et al., "Mining of Massive
Datasets", ch. 3), as in the fuzzy-deduplication step of Nemotron-CC / NeMo Curator, in one of
two signature schemes (``MinHashParams.scheme``).

``datasketch`` (the default): each document becomes a set of shingles (word or character n-grams
of its lowercased text); a MinHash of ``num_perm`` permutations estimates the Jaccard similarity of
two sets; LSH splits the signature into ``bands`` x ``rows`` so that only pairs likely above
``threshold`` are compared. Candidate pairs are then checked against the MinHash Jaccard estimate
(dropping LSH false positives) and joined into clusters by union-find (connected components, as
NeMo Curator does). In each cluster the first document in stream order is kept, so the result
depends only on the input order and the parameters, never on hash-table iteration order.

``datatrove``: datatrove 0.10.1's MinHash decisions (FineWeb's), document for document; implemented in
``openrecipe.data.minhash_datatrove``.

Defaults: word 5-grams, 128 permutations, Jaccard 0.8. FineWeb uses word 5-grams with 112
permutations (14 bands x 8 rows, datatrove's scheme) and RefinedWeb word 5-grams; NeMo Curator
uses character 24-grams, 260 permutations (20 x 13) and a 0.8 Jaccard threshold. ``bands=None``
lets datasketch choose the (bands, rows) that minimise the false-positive + false-negative
probability mass at ``threshold`` (datasketch scheme only).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from datasketch import MinHash, MinHashLSH

from openrecipe.data import minhash_datatrove
from openrecipe.data.minhash_datatrove import NO_SIGNATURE, datatrove_words

__all__ = [
    "NO_SIGNATURE",
    "DedupResult",
    "MinHashParams",
    "cluster",
    "datatrove_words",
    "fuzzy_dedup",
    "signature_matrix",
]

_WORD = re.compile(r"\w+")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class MinHashParams:
    """Recipe-level parameters; ``seed`` fixes the permutations (derive it from the recipe seed).
    ``scheme="datatrove"`` reproduces datatrove's decisions: it needs ``unit="word"`` and
    ``bands`` (datatrove's ``num_buckets``; ``num_perm / bands`` is its ``hashes_per_bucket``) and
    ignores ``threshold``."""

    num_perm: int = 128
    ngram: int = 5
    unit: Literal["word", "char"] = "word"
    threshold: float = 0.8
    bands: int | None = None
    seed: int = 1
    scheme: Literal["datasketch", "datatrove"] = "datasketch"

    def lsh_params(self) -> tuple[int, int] | None:
        if self.bands is None:
            return None
        if self.bands < 1 or self.num_perm % self.bands:
            raise ValueError(
                f"fuzzy_dedup: bands={self.bands} must divide num_perm={self.num_perm}"
            )
        return self.bands, self.num_perm // self.bands

    def datatrove_layout(self) -> tuple[int, int]:
        """(bands, rows) of the datatrove scheme, checked."""
        if self.unit != "word":
            raise ValueError(f"fuzzy_dedup: the datatrove scheme shingles words, not {self.unit!r}")
        layout = self.lsh_params()
        if layout is None:
            raise ValueError(
                "fuzzy_dedup: the datatrove scheme needs bands (datatrove's num_buckets; its "
                "default and FineWeb's is 14 bands with num_perm 112)"
            )
        if self.ngram < 1:
            raise ValueError(f"fuzzy_dedup: ngram must be >= 1, got {self.ngram}")
        return layout


@dataclass
class DedupResult:
    """``clusters``: groups of >= 2 near-duplicate ids, each the kept id first and then the others
    in stream order, listed by the position of the kept id (in the datasketch scheme the kept id is
    the cluster's first); ``duplicate_of``: dropped id -> kept id."""

    kept: list[str] = field(default_factory=list)
    clusters: list[list[str]] = field(default_factory=list)
    duplicate_of: dict[str, str] = field(default_factory=dict)


def shingles(text: str, ngram: int, unit: Literal["word", "char"]) -> set[bytes]:
    """The n-gram set of ``text`` (lowercased; words are ``\\w+`` runs, characters have whitespace
    collapsed). A text shorter than one n-gram is a single shingle of its whole content, so short
    documents are still compared rather than all colliding on the empty set."""
    text = text.lower()
    if unit == "word":
        units: Sequence[str] = _WORD.findall(text)
        sep = " "
    elif unit == "char":
        units = _SPACE.sub(" ", text).strip()
        sep = ""
    else:
        raise ValueError(f"fuzzy_dedup: unit must be 'word' or 'char', got {unit!r}")
    if len(units) <= ngram:
        return {sep.join(units).encode("utf-8")}
    return {sep.join(units[i : i + ngram]).encode("utf-8") for i in range(len(units) - ngram + 1)}


def signatures(texts: Sequence[str], params: MinHashParams) -> list[MinHash]:
    """One MinHash per text; ``MinHash.bulk`` shares the permutation arrays across documents."""
    sets = [shingles(t, params.ngram, params.unit) for t in texts]
    return MinHash.bulk(sets, num_perm=params.num_perm, seed=params.seed)


def _find(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def signature_matrix(texts: Sequence[str], params: MinHashParams) -> np.ndarray:
    """The MinHash values of ``texts`` as one ``(len(texts), num_perm)`` array: what a shard job
    computes and stores, the expensive part of the step (shingling and hashing). uint32 in the
    datasketch scheme; uint64 in the datatrove scheme, where a document without a shingle has the
    row ``NO_SIGNATURE`` (a value no real hash takes)."""
    if params.scheme == "datatrove":
        return minhash_datatrove.signatures(
            texts, *params.datatrove_layout(), params.ngram, params.seed
        )
    if params.scheme != "datasketch":
        raise ValueError(f"fuzzy_dedup: unknown scheme {params.scheme!r}")
    sigs = signatures(texts, params)
    if not sigs:
        return np.zeros((0, params.num_perm), dtype=np.uint32)
    return np.stack([sig.hashvalues for sig in sigs])


def cluster(ids: Sequence[str], matrix: np.ndarray, params: MinHashParams) -> DedupResult:
    """Cluster near-duplicates from precomputed signatures (rows of ``matrix``, in stream order)
    and keep one per cluster: the first (datasketch scheme) or datatrove's root."""
    if len(ids) != len(matrix):
        raise ValueError(f"fuzzy_dedup: {len(ids)} ids but {len(matrix)} signatures")
    if len(set(ids)) != len(ids):
        raise ValueError("fuzzy_dedup: ids are not unique")
    if params.scheme == "datatrove":
        kept, clusters, duplicate_of = minhash_datatrove.cluster(
            ids, matrix, *params.datatrove_layout()
        )
        return DedupResult(kept, clusters, duplicate_of)
    if params.scheme != "datasketch":
        raise ValueError(f"fuzzy_dedup: unknown scheme {params.scheme!r}")
    scheme = MinHash.bulk([set()], num_perm=params.num_perm, seed=params.seed)[0].scheme
    sigs = [
        MinHash(num_perm=params.num_perm, seed=params.seed, hashvalues=row, scheme=scheme)
        for row in matrix
    ]
    lsh = MinHashLSH(
        threshold=params.threshold, num_perm=params.num_perm, params=params.lsh_params()
    )
    parent = list(range(len(ids)))
    for i, sig in enumerate(sigs):
        for key in lsh.query(sig):  # only earlier documents are in the index
            if sig.jaccard(sigs[key]) >= params.threshold:
                a, b = _find(parent, i), _find(parent, key)
                if a != b:  # the root is always the earliest member
                    parent[max(a, b)] = min(a, b)
        lsh.insert(i, sig)
    groups: dict[int, list[int]] = {}
    for i in range(len(ids)):
        groups.setdefault(_find(parent, i), []).append(i)
    result = DedupResult()
    for i in range(len(ids)):
        root = _find(parent, i)
        if root == i:
            result.kept.append(ids[i])
            if len(groups[root]) > 1:
                result.clusters.append([ids[j] for j in groups[root]])
        else:
            result.duplicate_of[ids[i]] = ids[root]
    return result


def fuzzy_dedup(ids: Sequence[str], texts: Sequence[str], params: MinHashParams) -> DedupResult:
    """Cluster near-duplicates among ``texts`` (with their unique ``ids``) and keep one of each
    cluster (the first in stream order in the datasketch scheme, datatrove's choice in its)."""
    if len(ids) != len(texts):
        raise ValueError(f"fuzzy_dedup: {len(ids)} ids but {len(texts)} texts")
    return cluster(ids, signature_matrix(texts, params), params)
