"""``blend``: apply ``data.exclude``, order each source as its own stream, and budget tokens.

Each source's documents are shuffled with ``random.Random(derive_seed(seed, "blend", source))``
and nothing else, so excluding one source (or documents of one source) never reorders another
source's stream: a sovereign rerun without source X trains on the same sequence of every other
source's documents.

A phase weight is keyed by a source name or by a language, ``lang:<code>`` (the document's
``lang`` after the langid stage). A source that some phase names is always drawn from its own
stream; a ``lang:<code>`` key draws the documents of that language from every source no phase
names (so a multilingual collection can be weighted language by language, and a sovereign rerun
can raise one language without naming every source that holds it). Documents of a source no
phase names whose language no phase names are not trained on, and are counted as unweighted.
A language stream is ordered by a hash of (seed, key, document id), not a shuffle, so removing
documents (an exclusion, a dropped source) never reorders the documents that remain.

Budgets are in tokens the trainer consumes: ``steps * micro_batch_size * grad_accum *
(seq_length + 1)`` (each sequence carries one extra token for the shifted labels). A phase gets
``fraction`` of them and each source ``weight`` of its phase (weights are token shares, docs/recipes.md
"Blend"); integer budgets use largest-remainder rounding so they add up exactly. The pack stage
fills each budget by cycling the source's stream and records the repetitions.

Outputs: ``streams/<source>.jsonl`` (records in stream order), ``streams/lang/<code>.jsonl`` per
``lang:<code>`` key, ``excluded.jsonl`` (id, source, rule), ``plan.json``.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openrecipe.data.exclusion import rule_matches
from openrecipe.errors import RecipeError, StageInputError
from openrecipe.hashing import derive_seed
from openrecipe.recipe import LANG_PREFIX
from openrecipe.stage import StageContext
from openrecipe.stage_config import decode_view, optional_key, plain, view_field


@dataclass(frozen=True)
class Phase:
    """One ``data.phases`` entry: its share of the tokens and its weights by source or
    ``lang:<code>`` key."""

    name: str
    fraction: float
    weights: dict[str, float]


@dataclass(frozen=True)
class ExcludeRule:
    """One ``data.exclude`` rule; it names only some fields (``openrecipe.data.exclusion``)."""

    source: str | None = optional_key()
    license: str | None = optional_key()
    lang: str | None = optional_key()
    path_glob: str | None = optional_key()
    ids: tuple[str, ...] | None = optional_key()
    quality_bucket_below: int | None = optional_key()
    buckets: tuple[int, ...] | None = optional_key()


@dataclass(frozen=True)
class BlendConfig:
    """The blend stage's view, typed: the seed, the exclusions, the phases and the fields of
    the token budget."""

    seed: int = view_field("seed")
    exclude: tuple[ExcludeRule, ...] = view_field("data.exclude")
    phases: tuple[Phase, ...] = view_field("data.phases")
    steps: int = view_field("pretrain.steps")
    seq_length: int = view_field("pretrain.seq_length")
    micro_batch_size: int = view_field("pretrain.micro_batch_size")
    grad_accum: int = view_field("pretrain.grad_accum")

    @property
    def total_tokens(self) -> int:
        """Tokens the trainer consumes (one extra per sequence for the shifted labels)."""
        return self.steps * self.micro_batch_size * self.grad_accum * (self.seq_length + 1)


def stream_path(key: str) -> str:
    """Where a weight key's stream lives, relative to the blend directory."""
    if key.startswith(LANG_PREFIX):
        return f"streams/lang/{key.removeprefix(LANG_PREFIX)}.jsonl"
    return f"streams/{key}.jsonl"


def language_streams(
    docs: list[dict], phases: tuple[Phase, ...], seed: int
) -> tuple[dict[str, list[dict]], dict[str, int]]:
    """({lang key: documents in stream order}, {source: documents no key draws}).

    Sources named by any phase are drawn by their own key; the rest feed the ``lang:`` keys."""
    keys = {k for phase in phases for k in phase.weights}
    named_sources = {k for k in keys if not k.startswith(LANG_PREFIX)}
    lang_keys = sorted(k for k in keys if k.startswith(LANG_PREFIX))
    streams: dict[str, list[dict]] = {k: [] for k in lang_keys}
    unweighted: dict[str, int] = {}
    for doc in docs:
        if doc["source"] in named_sources:
            continue
        key = LANG_PREFIX + doc["lang"]
        if key in streams:
            streams[key].append(doc)
        else:
            unweighted[doc["source"]] = unweighted.get(doc["source"], 0) + 1

    def order(key: str, doc: dict) -> bytes:
        return hashlib.sha256(f"{seed}\0{key}\0{doc['id']}".encode()).digest()

    for key, members in streams.items():
        members.sort(key=lambda doc, key=key: order(key, doc))
    return streams, dict(sorted(unweighted.items()))


def apply_exclusions(docs: list[dict], rules: list[dict]) -> tuple[list[dict], list[dict]]:
    """(kept docs, excluded records with the index of the first matching rule)."""
    kept, excluded = [], []
    for doc in docs:
        index = next((i for i, rule in enumerate(rules) if rule_matches(rule, doc)), None)
        if index is None:
            kept.append(doc)
        else:
            excluded.append({"id": doc["id"], "source": doc["source"], "rule": index})
    return kept, excluded


def source_stream(docs: list[dict], seed: int, source: str) -> list[dict]:
    """One source's documents (in curated order) shuffled by a seed of its own."""
    stream = list(docs)
    random.Random(derive_seed(seed, "blend", source)).shuffle(stream)
    return stream


def apportion(total: int, shares: dict[str, float]) -> dict[str, int]:
    """Integers proportional to ``shares`` summing to ``total`` (largest remainder; ties by name)."""
    weight_sum = sum(shares.values())
    if total == 0 or weight_sum <= 0:
        return dict.fromkeys(shares, 0)
    exact = {k: total * v / weight_sum for k, v in shares.items()}
    result = {k: math.floor(x) for k, x in exact.items()}
    by_remainder = sorted(shares, key=lambda k: (-(exact[k] - result[k]), k))
    for key in by_remainder[: total - sum(result.values())]:
        result[key] += 1
    return result


def plan_phases(
    phases: tuple[Phase, ...], total_tokens: int, available: dict[str, int]
) -> list[dict]:
    """Per phase token budgets; a positive weight on a source with no documents left is
    redistributed over the phase's other sources in proportion to their weights."""
    tokens = apportion(total_tokens, {p.name: p.fraction for p in phases})
    planned = []
    for index, phase in enumerate(phases):
        weights = dict(sorted(phase.weights.items()))
        empty = sorted(s for s, w in weights.items() if w > 0 and available.get(s, 0) == 0)
        effective = {s: (0.0 if s in empty else w) for s, w in weights.items()}
        remaining = sum(effective.values())
        if remaining <= 0:
            raise RecipeError(
                f"data.phases[{index}] ({phase.name}): every source with a positive "
                f"weight has no documents after curation and data.exclude ({empty})"
            )
        note = None
        if empty:
            effective = {s: w / remaining for s, w in effective.items()}
            note = (
                f"sources {empty} have no documents after exclusion; their weight "
                f"{sum(weights[s] for s in empty):g} was shared among the others in proportion"
            )
        planned.append(
            {
                "name": phase.name,
                "fraction": phase.fraction,
                "tokens": tokens[phase.name],
                "weights": weights,
                "effective_weights": effective,
                "renormalised": note,
                "budgets": apportion(tokens[phase.name], effective),
            }
        )
    return planned


def _read_docs(path: Path) -> list[dict]:
    if not path.is_file():
        raise StageInputError(f"blend: {path} missing (is the input a curate output?)")
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def _write_jsonl(path: Path, records: list[dict]) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        for record in records:
            handle.write(json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n")


def _source_streams(
    out: Path, by_source: dict[str, list[dict]], excluded: list[dict], seed: int
) -> dict[str, dict]:
    """Write each source's stream; its plan entry (stream, docs, chars, exclusions, seed)."""
    (out / "streams").mkdir()
    source_plan = {}
    for source, docs in by_source.items():
        stream = source_stream(docs, seed, source)
        _write_jsonl(out / "streams" / f"{source}.jsonl", stream)
        source_plan[source] = {
            "stream": f"streams/{source}.jsonl",
            "docs": len(stream),
            "chars": sum(len(d["text"]) for d in stream),
            "excluded_docs": sum(1 for e in excluded if e["source"] == source),
            "seed": derive_seed(seed, "blend", source),
        }
    return source_plan


def _lang_streams(out: Path, lang_streams: dict[str, list[dict]]) -> dict[str, dict]:
    """Write each ``lang:`` key's stream; its plan entry (stream, docs, chars, members)."""
    lang_plan = {}
    if lang_streams:
        (out / "streams" / "lang").mkdir()
    for key, stream in lang_streams.items():
        _write_jsonl(out / stream_path(key), stream)
        members: dict[str, int] = {}
        for doc in stream:
            members[doc["source"]] = members.get(doc["source"], 0) + 1
        lang_plan[key] = {
            "stream": stream_path(key),
            "docs": len(stream),
            "chars": sum(len(d["text"]) for d in stream),
            "docs_per_source": dict(sorted(members.items())),
        }
    return lang_plan


def run(ctx: StageContext) -> dict[str, Any]:
    config = decode_view(BlendConfig, ctx.config, ctx.stage)
    seed, phases, rules = config.seed, config.phases, plain(config.exclude)
    docs = _read_docs(ctx.input("curated") / "docs.jsonl")
    kept, excluded = apply_exclusions(docs, rules)
    sources = sorted(
        {d["source"] for d in docs}
        | {s for p in phases for s in p.weights if not s.startswith(LANG_PREFIX)}
    )
    by_source: dict[str, list[dict]] = {s: [] for s in sources}
    for doc in kept:
        by_source[doc["source"]].append(doc)
    source_plan = _source_streams(ctx.out, by_source, excluded, seed)
    lang_streams, unweighted = language_streams(kept, phases, seed)
    lang_plan = _lang_streams(ctx.out, lang_streams)
    _write_jsonl(ctx.out / "excluded.jsonl", excluded)

    steps, seq = config.steps, config.seq_length
    mbs, accum = config.micro_batch_size, config.grad_accum
    total_tokens = config.total_tokens
    plan = {
        "total_tokens": total_tokens,
        "token_formula": f"steps {steps} * micro_batch_size {mbs} * grad_accum {accum} * (seq_length {seq} + 1)",
        "sources": source_plan,
        "lang_streams": lang_plan,
        "unweighted_docs": unweighted,
        "phases": plan_phases(
            phases,
            total_tokens,
            {k: p["docs"] for k, p in {**source_plan, **lang_plan}.items()},
        ),
        "exclude_rules": rules,
    }
    (ctx.out / "plan.json").write_text(
        json.dumps(plan, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return {
        "docs": {s: p["docs"] for s, p in source_plan.items()},
        "lang_streams": {k: p["docs"] for k, p in lang_plan.items()},
        "unweighted_docs": unweighted,
        "excluded": len(excluded),
        "total_tokens": total_tokens,
        "renormalised_phases": [p["name"] for p in plan["phases"] if p["renormalised"]],
    }
