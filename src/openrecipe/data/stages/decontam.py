"""``decontam``: drop training documents that share a word n-gram with an evaluation item.

The eval sets are the stage's inputs other than ``docs``; the workflow passes those of the tasks
named in the recipe's ``eval.tasks`` (common.smk, ``get_decontam_input_args``), so adding an eval
task re-decontaminates, while eval settings (limits, budgets) never rerun data stages. Known
sets, by input name: ``reasoning`` (the reasoning stage's ``heldout.jsonl``, which both
``openrecipe_reasoning_*`` tasks evaluate on) and ``eval_data.<set>`` (one standard benchmark set
of the eval_data stage, every string field of each record; ``eval_data.decontam_items``). Each item is matched on its whole text (question,
worked thinking and answer) with ``openrecipe.data.ngram_overlap`` (GPT-3-style 13-grams, shorter
items by their whole word sequence; ``data.curation.decontam``).

Outputs beyond the common ones: ``matches.jsonl`` (per contaminated document: ``{id, source,
eval_items}``) and ``eval_items.json`` (per eval set: items indexed, items too short to match,
and each matched item with the documents that contained it).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openrecipe.data.accounting import (
    Ledger,
    profile,
    read_docs,
    write_json,
    write_jsonl,
    write_outputs,
)
from openrecipe.data.ngram_overlap import EvalIndex, decontaminate
from openrecipe.data.sharding import gather, read_jsonl, select_shard, shard_inputs
from openrecipe.errors import StageInputError
from openrecipe.stage import StageContext
from openrecipe.stage_config import decode_view, view_field

STEP = "decontam"


def _reasoning_items(stage_dir: Path) -> list[tuple[str, str]]:
    path = stage_dir / "heldout.jsonl"
    if not path.is_file():
        raise StageInputError(f"decontam: {path} missing (is the input a reasoning stage dir?)")
    items = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            item = json.loads(line)
            items.append((item["id"], f"{item['question']}\n{item['thinking']}\n{item['answer']}"))
    return items


# eval-set input name -> reader of its (item id, text) pairs
EVAL_SETS: dict[str, Callable[[Path], list[tuple[str, str]]]] = {"reasoning": _reasoning_items}


def eval_items(inputs: dict[str, Path]) -> dict[str, list[tuple[str, str]]]:
    """{input name: items}. ``eval_data.<set>`` names one set of an eval_data stage dir."""
    sets = {}
    for name in sorted(inputs):
        if name == "docs":
            continue
        if name.startswith("eval_data."):
            from openrecipe.evaluate.eval_data import decontam_items

            sets[name] = decontam_items(inputs[name], [name.removeprefix("eval_data.")])
            continue
        if name not in EVAL_SETS:
            raise StageInputError(
                f"decontam: unknown eval set input {name!r}; known: {sorted(EVAL_SETS)}"
            )
        sets[name] = EVAL_SETS[name](inputs[name])
    return sets


@dataclass(frozen=True)
class DecontamParams:
    """``data.curation.decontam`` (the schema's descriptions say the same)."""

    ngram: int
    """Word n-gram length a document and an eval item must share (13, as GPT-3)."""
    min_words: int
    """Eval items shorter than this are not matched; shorter than ngram: whole sequence."""


@dataclass(frozen=True)
class DecontamConfig:
    """The decontam stage's view, typed: its parameters and the shard count it scatters over."""

    params: DecontamParams = view_field("data.curation.decontam")
    shards: int = view_field("data.curation.shards")


def decontaminate_docs(
    docs: list[dict[str, Any]], sets: dict[str, list[tuple[str, str]]], cfg: DecontamParams
) -> tuple[list[dict[str, Any]], Ledger, list[dict[str, Any]], dict[str, Any]]:
    """(kept, ledger, matches, eval item report). Item ids are prefixed by their set name."""
    items = [(f"{name}:{item_id}", text) for name, pairs in sets.items() for item_id, text in pairs]
    index = EvalIndex(items, n=cfg.ngram, min_words=cfg.min_words)
    result = decontaminate(((d["id"], d["text"]) for d in docs), index)
    ledger = Ledger((STEP,))
    kept, matches = [], []
    for doc in docs:
        hits = result.matches.get(doc["id"])
        if hits:
            ledger.drop(STEP, doc, "eval_contamination", eval_items=hits)
            matches.append({"id": doc["id"], "source": doc["source"], "eval_items": hits})
            continue
        ledger.keep(STEP, doc["source"])
        kept.append(doc)
    ledger.cover({d["source"] for d in docs})
    matched: dict[str, list[str]] = {}
    for match in matches:
        for item in match["eval_items"]:
            matched.setdefault(item, []).append(match["id"])
    report = {
        name: {
            "items": len(pairs),
            "too_short": sorted(i for i in index.too_short if i.startswith(f"{name}:")),
            "matched": {i: ids for i, ids in sorted(matched.items()) if i.startswith(f"{name}:")},
        }
        for name, pairs in sets.items()
    }
    return kept, ledger, matches, report


def _gather_matches(
    upstream: list[dict[str, Any]], shards: list[Path]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The shards' matches and eval-item reports merged into input order, as one job writes."""
    position = {doc["id"]: i for i, doc in enumerate(upstream)}
    matches = sorted(
        (m for shard in shards for m in read_jsonl(shard / "matches.jsonl")),
        key=lambda m: position[m["id"]],
    )
    reports = [json.loads((s / "eval_items.json").read_text(encoding="utf-8")) for s in shards]
    report = {}
    for name, first in reports[0].items():
        matched: dict[str, list[str]] = {}
        for r in reports:
            for item, ids in r[name]["matched"].items():
                matched.setdefault(item, []).extend(ids)
        report[name] = {
            "items": first["items"],
            "too_short": first["too_short"],
            "matched": {
                item: sorted(ids, key=position.__getitem__) for item, ids in sorted(matched.items())
            },
        }
    return matches, report


def run(ctx: StageContext) -> dict[str, Any]:
    """One job, one shard's job or the gather of the shards (``openrecipe.data.sharding``)."""
    config = decode_view(DecontamConfig, ctx.config, ctx.stage)
    upstream = read_docs(ctx.input("docs"), STEP)
    shards = shard_inputs(ctx)
    if shards:
        matches, report = _gather_matches(upstream, shards)
        summary = gather(ctx.out, upstream, shards, (STEP,))
    else:
        docs = select_shard(ctx, upstream, config.shards)
        kept, ledger, matches, report = decontaminate_docs(
            docs, eval_items(ctx.inputs), config.params
        )
        summary = write_outputs(ctx.out, kept, ledger, profile(docs))
    write_jsonl(ctx.out / "matches.jsonl", matches)
    write_json(ctx.out / "eval_items.json", report)
    summary["eval_sets"] = {
        name: {"items": r["items"], "matched_items": len(r["matched"])}
        for name, r in report.items()
    }
    return summary
