"""C4 quality with datatrove 0.10.1's decisions: ``C4QualityFilter()`` at its default settings.

Raffel et al. 2020 (C4), as datatrove runs it. Each ``splitlines()`` line, stripped, is dropped
when a whitespace-separated word is over 1,000 characters; then citations (``[1]``, ``[edit]``,
``[citation needed]``) are cut out and the line is dropped when it does not end in ``.``, ``?``,
``!``, ``"`` or ``'`` or ends in ``...``, when it has fewer than 3 words (counted before the cut),
when it says ``javascript`` or a cookie / privacy / terms-of-use phrase (any case). A line that
survives to those checks and says ``lorem ipsum`` (any case) drops the document
(``lorem_ipsum``), one with ``{`` too (``curly_bracket``), whichever line comes first. A document
whose kept lines hold fewer than 5 sentences (spaCy's ``sentencizer`` over each line) is dropped
(``too_few_sentences``). datatrove also rewrites the kept document to its kept lines; this module
decides only (curation keeps the text it was given).

Why it is faster with the same output: datatrove runs spaCy (tokenizer and sentencizer) on every
kept line to count its sentences. Every kept line has at least one sentence, so a document with
5 kept lines passes without counting; the sentences of the few others are counted with
``openrecipe.data.spacy_en``'s tokenizer, which gives spaCy's tokens, and the sentencizer's rule.
"""

from __future__ import annotations

import re

from openrecipe.data.spacy_en import SpacyEnglish, english

CITATION = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
END_PUNCTUATION = (".", "?", "!", '"', "'")
POLICY = (
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
)
MIN_SENTENCES = 5


def c4_reason(text: str, tokenizer: SpacyEnglish | None = None) -> str | None:
    """C4QualityFilter's reason for dropping ``text``, or None when it keeps it."""
    kept: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        words = line.split()
        if any(len(word) > 1000 for word in words):
            continue
        line = CITATION.sub("", line)
        if not line.endswith(END_PUNCTUATION) or line.endswith("..."):
            continue
        if len(words) < 3:
            continue
        lower = line.lower()
        if "lorem ipsum" in lower:
            return "lorem_ipsum"
        if "javascript" in lower:
            continue
        if "{" in line:
            return "curly_bracket"
        if any(p in lower for p in POLICY):
            continue
        kept.append(line)
    if len(kept) >= MIN_SENTENCES:  # each kept line has a sentence at least
        return None
    tok = tokenizer or english()
    if sum(tok.sentences(line) for line in kept) < MIN_SENTENCES:
        return "too_few_sentences"
    return None
