"""``langid``: verify each document's declared language, or label it when the source is 'multi'.

The decision (``data.curation.langid``):
- a declared language in ``skip_langs`` (``code``) is kept as it is: a prose model has nothing to
  say about source code;
- a source declaring ``multi`` (a multilingual collection) has each document relabelled with the
  language lid.176 detects, or ``und`` below ``relabel_min_confidence``; none are dropped, since
  every language is expected there;
- a source declaring one language keeps its label; a document that lid.176 assigns to another
  language with probability at least ``mismatch_confidence`` is dropped (``lang_mismatch``):
  a French page inside an English source is an extraction error or a mislabelled file, and
  keeping it under ``en`` would corrupt per-language exclusion and weights. Below that
  confidence (short, mixed or numeric texts) the declaration wins.

Every kept document gains ``lang_detected`` and ``lang_score`` (the model's top label and
probability), and ``lang_declared`` where it was relabelled. The model's identity (package,
version, sha256 of the bundled ``lid.176.ftz``) goes into the manifest's inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from openrecipe.data.accounting import Ledger, profile, read_docs, write_outputs
from openrecipe.data.fasttext_langid import identify_docs, model_info
from openrecipe.data.sharding import gather, select_shard, shard_inputs
from openrecipe.stage import StageContext
from openrecipe.stage_config import decode_view, view_field

STEP = "langid"
MULTI = "multi"


@dataclass(frozen=True)
class LangidParams:
    """``data.curation.langid`` (the schema's descriptions say the same)."""

    mismatch_confidence: float
    """Drop a document when lid.176 names another language with at least this confidence."""
    relabel_min_confidence: float
    """A 'multi' document is relabelled with the detected language above it, 'und' below."""
    max_chars: int
    """Characters of each document the model reads."""
    skip_langs: tuple[str, ...]
    """Declared languages kept as they are (code)."""


@dataclass(frozen=True)
class LangidConfig:
    """The langid stage's view, typed: its parameters and the shard count it scatters over."""

    params: LangidParams = view_field("data.curation.langid")
    shards: int = view_field("data.curation.shards")


def label(docs: list[dict[str, Any]], cfg: LangidParams) -> tuple[list[dict[str, Any]], Ledger]:
    ledger = Ledger((STEP,))
    kept = []
    results = identify_docs(docs, skip_langs=list(cfg.skip_langs), max_chars=cfg.max_chars)
    for doc, result in zip(docs, results, strict=True):
        record = {**doc, "lang_detected": result.lang, "lang_score": result.confidence}
        if result.skipped:
            pass
        elif doc["lang"] == MULTI:
            confident = result.confidence >= cfg.relabel_min_confidence
            record.update(lang=result.lang if confident else "und", lang_declared=MULTI)
        elif result.lang != doc["lang"] and result.confidence >= cfg.mismatch_confidence:
            ledger.drop(STEP, doc, "lang_mismatch", detected=result.lang, score=result.confidence)
            continue
        ledger.keep(STEP, doc["source"])
        kept.append(record)
    ledger.cover({d["source"] for d in docs})
    return kept, ledger


def run(ctx: StageContext) -> dict[str, Any]:
    """One job over every document, one shard's job (``--part shard-NNN``), or the gather of
    the shards (inputs ``shard_NNN``): see ``openrecipe.data.sharding``."""
    config = decode_view(LangidConfig, ctx.config, ctx.stage)
    upstream = read_docs(ctx.input("docs"), STEP)
    shards = shard_inputs(ctx)
    if shards:
        summary = gather(ctx.out, upstream, shards, (STEP,))
    else:
        docs = select_shard(ctx, upstream, config.shards)
        kept, ledger = label(docs, config.params)
        summary = write_outputs(ctx.out, kept, ledger, profile(docs))
    info = model_info()
    summary["external_inputs"] = [
        {
            "name": "langid_model",
            "kind": "pypi",
            "package": info["package"],
            "version": info["version"],
            "file": info["model"],
            "sha256": info["sha256"],
            "uri": f"https://pypi.org/project/{info['package']}/{info['version']}/",
        }
    ]
    return summary
