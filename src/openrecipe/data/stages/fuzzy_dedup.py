"""``fuzzy_dedup``: drop near-duplicates by MinHash-LSH (``openrecipe.data.fuzzy_dedup``).

Runs over the whole upstream stream at once (all sources together, in stream order), so a
document repeated across two sources is caught and the copy in the earlier source is the one
kept, the same first-occurrence rule as exact dedup in ``curate``. Parameters are
``data.curation.fuzzy_dedup`` (shingle unit and size, permutations, Jaccard threshold, bands,
permutation seed).

Outputs beyond the common ones: ``clusters.jsonl``, one ``{"kept", "duplicates"}`` per
near-duplicate cluster (ids in stream order).
"""

from __future__ import annotations

from typing import Any

from openrecipe.data.accounting import Ledger, profile, read_docs, write_jsonl, write_outputs
from openrecipe.data.fuzzy_dedup import MinHashParams, fuzzy_dedup
from openrecipe.stage import StageContext

STEP = "fuzzy_dedup"


def dedup(
    docs: list[dict[str, Any]], cfg: dict[str, Any]
) -> tuple[list[dict[str, Any]], Ledger, list[list[str]]]:
    params = MinHashParams(
        num_perm=cfg["num_perm"],
        ngram=cfg["ngram"],
        unit=cfg["unit"],
        threshold=cfg["threshold"],
        bands=cfg["bands"],
        seed=cfg["seed"],
    )
    result = fuzzy_dedup([d["id"] for d in docs], [d["text"] for d in docs], params)
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
    docs = read_docs(ctx.input("docs"), STEP)
    kept, ledger, clusters = dedup(docs, ctx.cfg("data.curation.fuzzy_dedup"))
    write_jsonl(ctx.out / "clusters.jsonl", ({"kept": c[0], "duplicates": c[1:]} for c in clusters))
    summary = write_outputs(ctx.out, kept, ledger, profile(docs))
    summary["clusters"] = len(clusters)
    return summary
