"""``quality``: a quality bucket per document, written as fields; nothing is dropped here.

The signal and the buckets are ``openrecipe.data.perplexity``'s: perplexity under an interpolated
Kneser-Ney word-bigram model trained on a *reference split*, cut into ``n_buckets`` equal-count
quantiles (Nemotron-CC's percentile bucketing, CCNet's reference-LM perplexity). Exclusion by
bucket happens in ``blend`` (``data.exclude``: ``quality_bucket_below`` / ``buckets``), so changing
it reruns blend onwards, not this stage.

The reference split (``data.curation.quality``): ``reference_fraction`` of the documents of
``reference_sources`` (default: every source whose language is not in
``data.curation.exempt_langs``), chosen by a hash of (seed, id) so adding or excluding another
document never changes who is in it. Reference documents train the model and are not scored
(a model rates its own training text too well); they are the recipe's definition of
high quality, so they are placed in the top bucket and flagged ``quality_reference``.

Documents in ``exempt_langs`` (code) are not scored: a prose language model says nothing about
them. They get ``quality_bucket: null``, which no bucket rule matches.

Fields added to each document: ``quality_bucket`` (int or null), ``quality_logppl`` (mean
negative log-probability per token, 6 decimals, null when unscored), ``quality_reference``.
Output ``quality.json``: model identity, bucket edges, bucket counts per source.

Sharded (``data.curation.shards`` > 1), scoring is scattered: each shard job
(``--part shard-NNN``) trains the same reference model (a fraction of a second: it reads only
the reference split, chosen by hash from the whole input) and writes ``scores.json`` for its
documents; the stage's own job gathers the scores, then cuts the quantile buckets, the one step
that needs every score. The outputs are byte-identical to one job's.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openrecipe.data.accounting import Ledger, profile, read_docs, write_json, write_outputs
from openrecipe.data.perplexity import BigramKN, assign_bucket, bucket_edges, split_reference
from openrecipe.data.sharding import select_shard, shard_inputs
from openrecipe.errors import StageInputError
from openrecipe.stage import StageContext
from openrecipe.stage_config import decode_view, view_field

STEP = "quality"
SCORES = "scores.json"


@dataclass(frozen=True)
class QualityParams:
    """``data.curation.quality`` (the schema's descriptions say the same)."""

    reference_sources: tuple[str, ...]
    """Sources the reference split is drawn from (empty: every source not in exempt_langs)."""
    reference_fraction: float
    """Share of the reference sources' documents that trains the model."""
    n_buckets: int
    """Equal-count quantile buckets of the scores."""
    seed: int
    """Seed of the reference split."""


@dataclass(frozen=True)
class QualityConfig:
    """The quality stage's view, typed: its parameters, the languages it leaves unscored and
    the shard count it scatters over."""

    params: QualityParams = view_field("data.curation.quality")
    exempt_langs: tuple[str, ...] = view_field("data.curation.exempt_langs")
    shards: int = view_field("data.curation.shards")


def reference_model(
    docs: list[dict[str, Any]], cfg: QualityParams, exempt_langs: tuple[str, ...]
) -> tuple[BigramKN, list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """(model, reference docs, docs to score, reference sources) for the whole input."""
    prose = [d for d in docs if d["lang"] not in exempt_langs]
    sources = list(cfg.reference_sources) or sorted({d["source"] for d in prose})
    reference, to_score = split_reference(prose, sources, cfg.reference_fraction, cfg.seed)
    if not reference:
        raise StageInputError(
            f"quality: no reference documents from data.curation.quality.reference_sources "
            f"{sources} (are they all excluded upstream, or in exempt_langs?)"
        )
    return BigramKN((d["id"], d["text"]) for d in reference), reference, to_score, sources


def gathered_scores(to_score: list[dict[str, Any]], shards: list[Path]) -> dict[str, float]:
    """Every shard's scores, checked to cover exactly the documents to score."""
    scores: dict[str, float] = {}
    for shard in shards:
        scores.update(json.loads((shard / SCORES).read_text(encoding="utf-8")))
    if set(scores) != {d["id"] for d in to_score}:
        raise StageInputError(
            f"quality: the shards scored {len(scores)} documents, {len(to_score)} need a score: "
            "a shard is missing or stale"
        )
    return {d["id"]: scores[d["id"]] for d in to_score}


def bucketize(
    docs: list[dict[str, Any]],
    cfg: QualityParams,
    exempt_langs: tuple[str, ...],
    shards: list[Path] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(documents with quality fields, in input order; the quality report). With ``shards``,
    the scores are the shard jobs' instead of computed here."""
    model, reference, to_score, sources = reference_model(docs, cfg, exempt_langs)
    if shards:
        scores = gathered_scores(to_score, shards)
    else:
        scores = {d["id"]: model.log_perplexity(d["text"]) for d in to_score}
    edges = bucket_edges(list(scores.values()), cfg.n_buckets) if scores else []
    top = cfg.n_buckets - 1
    reference_ids = {d["id"] for d in reference}
    out = []
    for doc in docs:
        if doc["id"] in scores:
            logppl = scores[doc["id"]]
            fields = {
                "quality_bucket": assign_bucket(logppl, edges),
                "quality_logppl": round(logppl, 6),
            }
        elif doc["id"] in reference_ids:
            fields = {"quality_bucket": top, "quality_logppl": None}
        else:
            fields = {"quality_bucket": None, "quality_logppl": None}
        out.append({**doc, **fields, "quality_reference": doc["id"] in reference_ids})
    per_source: dict[str, Counter] = {}
    for doc in out:
        per_source.setdefault(doc["source"], Counter())[str(doc["quality_bucket"])] += 1
    report = {
        "model": model.info(),
        "n_buckets": cfg.n_buckets,
        "edges_quality": [round(e, 6) for e in edges],
        "edges_note": "bucket b holds -logppl in [edges[b-1], edges[b]); higher is more reference-like",
        "reference_sources": sources,
        "reference_docs": len(reference),
        "scored_docs": len(scores),
        "buckets_per_source": {s: dict(sorted(c.items())) for s, c in sorted(per_source.items())},
    }
    return out, report


def run(ctx: StageContext) -> dict[str, Any]:
    docs = read_docs(ctx.input("docs"), STEP)
    config = decode_view(QualityConfig, ctx.config, ctx.stage)
    cfg, exempt = config.params, config.exempt_langs
    if ctx.part:  # a shard job: the scores of this shard's documents only
        model, _, to_score, _ = reference_model(docs, cfg, exempt)
        mine = select_shard(ctx, to_score, config.shards)
        scores = {d["id"]: model.log_perplexity(d["text"]) for d in mine}
        write_json(ctx.out / SCORES, scores)
        return {"scored": len(scores), "model": model.info()}
    scored, report = bucketize(docs, cfg, exempt, shard_inputs(ctx))
    ledger = Ledger((STEP,))
    for doc in scored:
        ledger.keep(STEP, doc["source"])
    write_json(ctx.out / "quality.json", report)
    summary = write_outputs(ctx.out, scored, ledger, profile(docs))
    summary["buckets_per_source"] = report["buckets_per_source"]
    return summary
