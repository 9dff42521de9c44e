"""``fuzzy_dedup``: drop near-duplicates by MinHash-LSH (``openrecipe.data.minhash_lsh``).

Runs over the whole upstream stream at once (all sources together, in stream order), so a
document repeated across two sources is caught and the copy in the earlier source is the one
kept, the same first-occurrence rule as exact dedup in ``curate`` (``scheme: datasketch``; with
``scheme: datatrove`` the kept copy is the one datatrove's MinHash chain keeps, usually the first).
Parameters are ``data.curation.fuzzy_dedup`` (signature scheme, shingle unit and size,
permutations, Jaccard threshold, bands, permutation seed).

Outputs beyond the common ones: ``clusters.jsonl``, one ``{"kept", "duplicates"}`` per
near-duplicate cluster (duplicates in stream order).

Sharded (``data.curation.shards`` > 1), the expensive half is scattered the way datatrove
splits its MinHash chain: each shard job (``--part shard-NNN``) only shingles and hashes its
documents and writes ``signatures.npy`` (one row per document: uint32 in the datasketch scheme,
uint64 in the datatrove scheme) with ``ids.json``; the stage's own job then loads every shard's
signatures in stream order and does the LSH clustering, the one step that needs all documents at
once. Signatures do not depend on the other documents, so the outputs are byte-identical to one
job's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from openrecipe.data.accounting import Ledger, profile, read_docs, write_jsonl, write_outputs
from openrecipe.data.minhash_lsh import MinHashParams, cluster, signature_matrix
from openrecipe.data.sharding import select_shard, shard_inputs
from openrecipe.errors import StageInputError
from openrecipe.stage import StageContext
from openrecipe.stage_config import decode_view, view_field

STEP = "fuzzy_dedup"
SIGNATURES, IDS = "signatures.npy", "ids.json"


@dataclass(frozen=True)
class FuzzyDedupConfig:
    """The fuzzy_dedup stage's view, typed: the MinHash-LSH parameters (decoded straight into
    ``MinHashParams``) and the shard count it scatters over."""

    params: MinHashParams = view_field("data.curation.fuzzy_dedup")
    shards: int = view_field("data.curation.shards")


def gathered_signatures(docs: list[dict[str, Any]], shards: list[Path]) -> np.ndarray:
    """The shards' signature rows reordered to ``docs``' order; every document exactly once."""
    rows: dict[str, np.ndarray] = {}
    for shard in shards:
        ids = json.loads((shard / IDS).read_text(encoding="utf-8"))
        matrix = np.load(shard / SIGNATURES, allow_pickle=False)
        if len(ids) != len(matrix):
            raise StageInputError(f"{shard}: {len(ids)} ids but {len(matrix)} signatures")
        rows.update(zip(ids, matrix, strict=True))
    missing = [d["id"] for d in docs if d["id"] not in rows]
    if missing or len(rows) != len(docs):
        raise StageInputError(
            f"fuzzy_dedup: the shards hold {len(rows)} signatures for {len(docs)} documents "
            f"(missing e.g. {missing[:3]}): a shard is missing or stale"
        )
    return np.stack([rows[d["id"]] for d in docs])


def dedup(
    docs: list[dict[str, Any]], params: MinHashParams, matrix: np.ndarray | None = None
) -> tuple[list[dict[str, Any]], Ledger, list[list[str]]]:
    if matrix is None:
        matrix = signature_matrix([d["text"] for d in docs], params)
    result = cluster([d["id"] for d in docs], matrix, params)
    ledger = Ledger((STEP,))
    kept = []
    for doc in docs:
        original = result.duplicate_of.get(doc["id"])
        if original is not None:
            ledger.drop(STEP, doc, "near_duplicate", duplicate_of=original)
            continue
        ledger.keep(STEP, doc["source"])
        kept.append(doc)
    ledger.cover({d["source"] for d in docs})
    return kept, ledger, result.clusters


def run(ctx: StageContext) -> dict[str, Any]:
    config = decode_view(FuzzyDedupConfig, ctx.config, ctx.stage)
    docs = read_docs(ctx.input("docs"), STEP)
    if ctx.part:  # a shard job: signatures only
        mine = select_shard(ctx, docs, config.shards)
        matrix = signature_matrix([d["text"] for d in mine], config.params)
        np.save(ctx.out / SIGNATURES, matrix, allow_pickle=False)
        (ctx.out / IDS).write_text(json.dumps([d["id"] for d in mine]) + "\n", encoding="utf-8")
        return {"signatures": len(mine), "num_perm": int(matrix.shape[1])}
    shards = shard_inputs(ctx)
    matrix = gathered_signatures(docs, shards) if shards else None
    kept, ledger, clusters = dedup(docs, config.params, matrix)
    write_jsonl(ctx.out / "clusters.jsonl", ({"kept": c[0], "duplicates": c[1:]} for c in clusters))
    summary = write_outputs(ctx.out, kept, ledger, profile(docs))
    summary["clusters"] = len(clusters)
    return summary
