"""``curate``: validate, cap, normalise, deduplicate and filter the acquired documents.

Inputs ``raw_<source>`` (acquire directories), processed in sorted input-name order, documents in
file order, so the result depends only on the inputs and ``data.curation``. Every document leaves
each step in exactly one of three ways (kept, dropped with a reason, quarantined), and
``accounting.json`` records this per step and per source; ``in == kept + dropped + quarantined``
is asserted at every step.

Steps:
  validate   quarantine malformed records (bad UTF-8/JSON, missing fields, empty or oversized text,
             lone surrogates, duplicate ids, a ``source`` label not matching its input)
  source_cap keep the first ``max_docs_per_source`` valid documents of each source
  normalize  bidirectional override/embedding/isolate controls stripped (counted; see below),
             Unicode NFC/NFKC, control characters (except \\n, \\t) removed, newlines unified,
             trailing spaces stripped
  dedup      exact duplicates by sha1 of the normalised text; the first occurrence wins
  filter     length and Gopher/C4-style quality heuristics, then Gopher's repetition rules
             (``repetition.py``, thresholds in ``data.curation.repetition``); the prose filters
             and the repetition rules skip ``exempt_langs``, the repetition rules also
             ``repetition.exempt_sources``

Bidi policy: U+202A-U+202E (embeddings, overrides) and U+2066-U+2069 (isolates) only change how
text is *displayed*, never its logical order; in a document they can make a reader see other
words than the ones a model trains on ("Trojan Source", Boucher & Anderson 2021, CVE-2021-42574).
They are stripped rather than the document quarantined, because real right-to-left text carries
them too (a Persian page of the Debian handbook has a stray U+202C): every stripped document and
character is counted in ``accounting.json`` (``edits``) and shown in the data card.

Outputs: ``docs.jsonl`` (kept records, normalised text), ``dropped.jsonl`` (id, source, reason,
step [, duplicate_of]), ``quarantine.jsonl`` (input, line, id, reason, detail, excerpt) and
``accounting.json``.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from openrecipe.data.accounting import Ledger, profile, write_outputs
from openrecipe.data.repetition import RepetitionRules, repetition_reason
from openrecipe.errors import StageInputError
from openrecipe.stage import StageContext
from openrecipe.stage_config import decode_view, view_field

FIELDS = ("id", "source", "lang", "license", "url_or_path", "text")
STEP = "curate"
STEPS = ("validate", "source_cap", "normalize", "dedup", "filter")
BIDI_STRIPPED = "bidi_controls_stripped"  # the normalize step's counted edit
INPUT_PREFIX = "raw_"
_CONTROL = re.compile(
    r"[\x00-\x08\x0b-\x1f\x7f-\x9f]"
)  # Unicode Cc, minus \t and \n (\r handled first)
_TRAILING = re.compile(r"[ \t\f\v\u00a0]+$", re.MULTILINE)
# LRE RLE PDF LRO RLO, LRI RLI FSI PDI: the explicit bidi formatting characters (UAX #9)
BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")


@dataclass(frozen=True)
class RepetitionConfig:
    """``data.curation.repetition``: Gopher's repetition thresholds (None: rule off) and the
    sources they skip (the schema's descriptions say why)."""

    dup_paragraph_fraction: float | None
    dup_paragraph_char_fraction: float | None
    dup_line_fraction: float | None
    dup_line_char_fraction: float | None
    top_2gram_char_fraction: float | None
    top_3gram_char_fraction: float | None
    top_4gram_char_fraction: float | None
    dup_5gram_char_fraction: float | None
    dup_6gram_char_fraction: float | None
    dup_7gram_char_fraction: float | None
    dup_8gram_char_fraction: float | None
    dup_9gram_char_fraction: float | None
    dup_10gram_char_fraction: float | None
    exempt_sources: tuple[str, ...]


@dataclass(frozen=True)
class CurateConfig:
    """The curate stage's view, typed: the ``data.curation`` keys it reads. The sub-sections
    langid, fuzzy_dedup, quality and decontam belong to the later stages, so editing them does
    not rerun curate."""

    max_docs_per_source: int = view_field("data.curation.max_docs_per_source")
    normalization: Literal["NFC", "NFKC"] = view_field("data.curation.normalization")
    min_chars: int = view_field("data.curation.min_chars")
    max_chars: int = view_field("data.curation.max_chars")
    min_words: int = view_field("data.curation.min_words")
    max_mean_word_length: float = view_field("data.curation.max_mean_word_length")
    max_symbol_ratio: float = view_field("data.curation.max_symbol_ratio")
    min_alpha_ratio: float = view_field("data.curation.min_alpha_ratio")
    exempt_langs: tuple[str, ...] = view_field("data.curation.exempt_langs")
    repetition: RepetitionConfig = view_field("data.curation.repetition")


def curate_config(values: dict[str, Any]) -> CurateConfig:
    """A CurateConfig from ``{key under data.curation: value}`` (callers building one by hand)."""
    return decode_view(CurateConfig, {f"data.curation.{k}": v for k, v in values.items()}, STEP)


def _excerpt(raw: bytes) -> str:
    return raw[:200].decode("utf-8", errors="backslashreplace")


def validate_line(raw: bytes, source: str, max_chars: int) -> tuple[dict | None, str, str]:
    """A record, or (None, reason, detail) for one that is quarantined."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, "invalid_utf8", str(exc)
    try:
        doc = json.loads(line)
    except json.JSONDecodeError as exc:
        return None, "invalid_json", str(exc)
    if not isinstance(doc, dict):
        return None, "not_an_object", type(doc).__name__
    missing = [f for f in FIELDS if f not in doc]
    if missing:
        return None, "missing_fields", ",".join(missing)
    wrong = [f for f in FIELDS if not isinstance(doc[f], str)]
    if wrong:
        return None, "field_not_string", ",".join(wrong)
    try:
        for name in FIELDS:
            doc[name].encode("utf-8")
    except UnicodeEncodeError as exc:
        return None, "lone_surrogate", f"{name}: {exc.reason} at {exc.start}"
    if doc["source"] != source:
        return None, "source_mismatch", f"record says {doc['source']!r}, input is {source!r}"
    if not doc["text"].strip():
        return None, "empty_text", ""
    if len(doc["text"]) > max_chars:
        return None, "too_long", f"{len(doc['text'])} chars > max_chars {max_chars}"
    return doc, "", ""


def normalize_text(text: str, form: str) -> str:
    """Unicode form, newlines unified to \\n, control characters (except \\t, \\n) removed,
    trailing whitespace stripped from each line and blank lines trimmed at both ends."""
    text = unicodedata.normalize(form, text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    return _TRAILING.sub("", text).strip("\n")


def strip_bidi(text: str) -> tuple[str, int]:
    """``text`` without bidi embedding/override/isolate controls, and how many were removed."""
    stripped, count = BIDI_CONTROLS.subn("", text)
    return stripped, count


def quality_reason(text: str, lang: str, cfg: CurateConfig) -> str | None:
    """The first heuristic a document fails, or None.

    Thresholds follow Gopher's rules (Rae et al. 2021, App. A: 50-100k words, mean word length
    3-10, symbol ratios) and C4's (Raffel et al. 2020), as ratios over all characters so they
    apply to short proxy documents too. Code (``exempt_langs``) only gets the length filter."""
    if len(text) < cfg.min_chars:
        return "too_short"
    if lang in cfg.exempt_langs:
        return None
    words = text.split()
    if len(words) < cfg.min_words:
        return "too_few_words"
    if sum(map(len, words)) / len(words) > cfg.max_mean_word_length:
        return "long_words"
    symbols = sum(1 for ch in text if not ch.isalnum() and not ch.isspace())
    if symbols / len(text) > cfg.max_symbol_ratio:
        return "symbol_ratio"
    if sum(1 for ch in text if ch.isalpha()) / len(text) < cfg.min_alpha_ratio:
        return "low_alpha"
    return None


def filter_reason(doc: dict[str, Any], cfg: CurateConfig, rules: RepetitionRules) -> str | None:
    """Why the filter step drops ``doc``: the first failed quality heuristic, else the first
    failed repetition rule (unless its language or source is exempt), else None."""
    reason = quality_reason(doc["text"], doc["lang"], cfg)
    if reason or doc["lang"] in cfg.exempt_langs:
        return reason
    if doc["source"] in cfg.repetition.exempt_sources:
        return None
    return repetition_reason(doc["text"], rules)


def _labels(raw: bytes) -> dict[str, str]:
    """A quarantined line's lang and licence, where it is a JSON object that states them."""
    try:
        record = json.loads(raw)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        record = None
    labels = {}
    for key in ("lang", "license"):
        value = record.get(key) if isinstance(record, dict) else None
        labels[key] = value if isinstance(value, str) and value else "?"
    return labels


def _source_inputs(ctx: StageContext) -> list[tuple[str, Path]]:
    names = sorted(n for n in ctx.inputs if n.startswith(INPUT_PREFIX))
    if not names:
        raise StageInputError(
            f"curate: no inputs named {INPUT_PREFIX}<source> (got {sorted(ctx.inputs)})"
        )
    pairs = []
    for name in names:
        path = ctx.input(name) / "docs.jsonl"
        if not path.is_file():
            raise StageInputError(f"curate: input {name}: {path} missing (not an acquire output?)")
        pairs.append((name[len(INPUT_PREFIX) :], path))
    return pairs


def _validate(
    sources: list[tuple[str, Path]], max_chars: int, ledger: Ledger
) -> tuple[list[dict], list[dict]]:
    """(valid records, quarantined lines as profile records): the validate step; a line that
    is not a well-formed record, or repeats an id seen earlier, is quarantined with its reason."""
    valid: list[dict] = []
    malformed: list[dict] = []
    ids: set[str] = set()
    for source, path in sources:
        with open(path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                raw = raw.rstrip(b"\n")
                doc, reason, detail = validate_line(raw, source, max_chars)
                if doc is not None and doc["id"] in ids:
                    doc, reason, detail = None, "duplicate_id", "id seen earlier"
                if doc is None:
                    ledger.quarantine_record(
                        "validate",
                        source,
                        {
                            "input": f"{INPUT_PREFIX}{source}",
                            "line": number,
                            "reason": reason,
                            "detail": detail,
                            "excerpt": _excerpt(raw),
                        },
                    )
                    text = raw.decode("utf-8", errors="replace")
                    malformed.append({"source": source, **_labels(raw), "text": text})
                    continue
                ids.add(doc["id"])
                ledger.keep("validate", source)
                valid.append(doc)
    return valid, malformed


def _cap(docs: list[dict], max_docs_per_source: int, ledger: Ledger) -> list[dict]:
    """The source_cap step: the first ``max_docs_per_source`` documents of each source (0: all)."""
    capped, per_source = [], Counter()
    for doc in docs:
        per_source[doc["source"]] += 1
        if max_docs_per_source and per_source[doc["source"]] > max_docs_per_source:
            ledger.drop("source_cap", doc, "over_source_cap")
            continue
        ledger.keep("source_cap", doc["source"])
        capped.append(doc)
    return capped


def _normalize(docs: list[dict], form: str, ledger: Ledger) -> list[dict]:
    """The normalize step: bidi controls stripped (counted), Unicode ``form``; empty ones dropped."""
    normalized = []
    for doc in docs:
        text, n_bidi = strip_bidi(doc["text"])
        if n_bidi:
            ledger.edit("normalize", doc["source"], BIDI_STRIPPED, n_bidi)
        text = normalize_text(text, form)
        if not text.strip():
            ledger.drop("normalize", doc, "empty_after_normalization")
            continue
        ledger.keep("normalize", doc["source"])
        normalized.append({**doc, "text": text})
    return normalized


def _dedup(docs: list[dict], ledger: Ledger) -> list[dict]:
    """The dedup step: the first document of each exact text (sha1), in stream order."""
    unique, first_by_hash = [], {}
    for doc in docs:
        digest = hashlib.sha1(doc["text"].encode("utf-8")).hexdigest()
        if digest in first_by_hash:
            ledger.drop("dedup", doc, "exact_duplicate", duplicate_of=first_by_hash[digest])
            continue
        first_by_hash[digest] = doc["id"]
        ledger.keep("dedup", doc["source"])
        unique.append(doc)
    return unique


def _filter(docs: list[dict], cfg: CurateConfig, ledger: Ledger) -> list[dict]:
    """The filter step: the prose heuristics and Gopher's repetition rules."""
    kept, rules = [], RepetitionRules.from_config(asdict(cfg.repetition))
    for doc in docs:
        reason = filter_reason(doc, cfg, rules)
        if reason:
            ledger.drop("filter", doc, reason)
            continue
        ledger.keep("filter", doc["source"])
        kept.append(doc)
    return kept


def curate(
    sources: list[tuple[str, Path]], cfg: CurateConfig
) -> tuple[list[dict], Ledger, list[dict]]:
    """(kept documents, ledger, profile of the input: valid records by source/lang/licence, and
    quarantined ones with the characters of their raw line, under their own lang and licence
    when the line is a JSON object that has them (an oversized document), else "?")."""
    ledger = Ledger(STEPS, edits={"normalize": (BIDI_STRIPPED,)})
    valid, malformed = _validate(sources, cfg.max_chars, ledger)
    capped = _cap(valid, cfg.max_docs_per_source, ledger)
    unique = _dedup(_normalize(capped, cfg.normalization, ledger), ledger)
    kept = _filter(unique, cfg, ledger)
    ledger.cover(source for source, _ in sources)
    ledger.check()
    return kept, ledger, profile([*valid, *malformed])


def run(ctx: StageContext) -> dict[str, Any]:
    config = decode_view(CurateConfig, ctx.config, ctx.stage)
    kept, ledger, profile_in = curate(_source_inputs(ctx), config)
    return write_outputs(ctx.out, kept, ledger, profile_in)
