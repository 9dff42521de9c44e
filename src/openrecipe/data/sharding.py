"""Scatter a curation stage over shards, and gather the shards back.

Why: the expensive part of each curation stage after ``curate`` looks at one document at a
time (language identification, MinHash signatures, the quality model's perplexity,
decontamination n-grams), so a cluster can run it as ``data.curation.shards`` independent jobs
(Snakemake scatters them, one job per shard; see ``workflow/rules/data.smk``). The stage's own
job then gathers them and does what needs every document at once, and writes exactly what one
job over the whole input would have written, whatever the shard count. So the shard count is a
scheduling choice, never a change to the data (tests check the hashes).

- A document's shard is ``sha1(id) mod shards``: stable when other documents come or go, and
  balanced without reading the whole input first.
- A shard job is the stage run with ``--part shard-NNN``; its directory is a stage output with
  its own manifest.
- The gather job is the stage run with inputs ``shard_NNN``:
  - langid and decontam (per-document decisions): their shard jobs are the whole stage on their
    documents, and :func:`gather` merges kept documents and dropped/quarantined records back
    into input order (by each document's position in the upstream ``docs.jsonl``), sums the
    per-step counts and recomputes the profiles from the upstream input;
  - fuzzy_dedup: shard jobs write MinHash signatures; the gather clusters them (LSH needs all);
  - quality: shard jobs write perplexities; the gather cuts the quantile buckets (needs all).

``curate`` stays one job: its exact dedup and per-source cap need the whole input, and its
per-document steps (validation, normalisation, filters) cost seconds on the default corpus.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

from openrecipe.data.accounting import ACCOUNTING, DOCS, Ledger, profile, write_outputs
from openrecipe.errors import StageInputError
from openrecipe.stage import StageContext

PART_PREFIX = "shard-"
INPUT_PREFIX = "shard_"


def shard_part(index: int) -> str:
    """The ``--part`` of shard ``index``."""
    return f"{PART_PREFIX}{index:03d}"


def shard_input(index: int) -> str:
    """The gather job's input name for shard ``index``."""
    return f"{INPUT_PREFIX}{index:03d}"


def shard_of(doc_id: str, shards: int) -> int:
    return int.from_bytes(hashlib.sha1(doc_id.encode("utf-8")).digest()[:8], "big") % shards


def shard_inputs(ctx: StageContext) -> list[Path]:
    """The shard directories a gather job merges, in shard order ([] for an ordinary run)."""
    names = sorted(name for name in ctx.inputs if name.startswith(INPUT_PREFIX))
    expected = [shard_input(i) for i in range(len(names))]
    if names != expected:
        raise StageInputError(f"stage {ctx.stage}: shard inputs {names}, expected {expected}")
    return [ctx.inputs[name] for name in names]


def select_shard(
    ctx: StageContext, docs: list[dict[str, Any]], shards: int
) -> list[dict[str, Any]]:
    """The documents of this job: all of them, or those of the shard ``ctx.part`` names
    (``shards``: the stage's ``data.curation.shards``)."""
    if not ctx.part:
        return docs
    if not ctx.part.startswith(PART_PREFIX) or not ctx.part[len(PART_PREFIX) :].isdigit():
        raise StageInputError(f"stage {ctx.stage}: --part {ctx.part!r} is not shard-NNN")
    index = int(ctx.part[len(PART_PREFIX) :])
    if index >= shards:
        raise StageInputError(f"stage {ctx.stage}: {ctx.part} but data.curation.shards is {shards}")
    return [doc for doc in docs if shard_of(doc["id"], shards) == index]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def gather(
    out: Path, upstream: list[dict[str, Any]], shard_dirs: list[Path], steps: tuple[str, ...]
) -> dict[str, Any]:
    """Merge shard outputs into one stage output in ``out``; returns write_outputs' summary."""
    position = {doc["id"]: i for i, doc in enumerate(upstream)}
    if len(position) != len(upstream):
        raise StageInputError("gather: the upstream documents do not have unique ids")
    ledger = Ledger(steps)
    kept: list[dict[str, Any]] = []
    for shard in shard_dirs:
        accounting = json.loads((shard / ACCOUNTING).read_text(encoding="utf-8"))
        if accounting["order"] != list(steps):
            raise StageInputError(f"{shard / ACCOUNTING}: steps {accounting['order']} != {steps}")
        for step in steps:
            for source, c in accounting["steps"][step]["sources"].items():
                tally = ledger.tally(step, source)
                tally.n_in += c["in"]
                tally.kept += c["kept"]
                tally.dropped.update(Counter(c["dropped"]))
                tally.quarantined += c["quarantined"]
        kept += read_jsonl(shard / DOCS)
        ledger.dropped += read_jsonl(shard / "dropped.jsonl")
        ledger.quarantine += read_jsonl(shard / "quarantine.jsonl")

    def order(record: dict[str, Any]) -> tuple[int, int]:
        return steps.index(record["step"]), position[record["id"]]

    kept.sort(key=lambda doc: position[doc["id"]])
    ledger.dropped.sort(key=order)
    ledger.quarantine.sort(key=order)
    if sum(c.n_in for c in ledger.counts[steps[0]].values()) != len(upstream):
        raise StageInputError(
            f"gather: the shards saw {sum(c.n_in for c in ledger.counts[steps[0]].values())} "
            f"documents, the input holds {len(upstream)}: a shard is missing or stale"
        )
    ledger.cover({doc["source"] for doc in upstream})
    return write_outputs(out, kept, ledger, profile(upstream))
