"""datatrove's heuristic filter chain as FineWeb ran it, for ``data.curation.heuristics: datatrove``.

FineWeb's order: ``GopherRepetitionFilter``, ``GopherQualityFilter``, ``C4QualityFilter`` (each
at datatrove 0.10.1's defaults); the first that drops a document names it with datatrove's
reason string, prefixed by the filter (``gopher_repetition:top_2_gram``,
``gopher_quality:gopher_short_doc``, ``c4_quality:too_few_sentences``) so a curation ledger tells
the three apart. Each decision is datatrove's (``openrecipe.data.gopher_filters``,
``openrecipe.data.c4_filter``; ``bench/curation.py`` checks them on the default corpus).

One difference from running the three datatrove filters in a pipeline: ``C4QualityFilter``
rewrites a kept document to its kept lines; as it comes last here, that changes no decision of
this chain, and curation keeps the document's text unchanged.
"""

from __future__ import annotations

from openrecipe.data.c4_filter import c4_reason
from openrecipe.data.gopher_filters import GopherFilters


class DatatroveFilters:
    """The chain; one instance per process (it memoises the corpus's words)."""

    def __init__(self) -> None:
        self.gopher = GopherFilters()

    def reason(self, text: str) -> str | None:
        """Why the chain drops ``text`` (``<filter>:<datatrove reason>``), or None."""
        quality, repetition = self.gopher.reasons(text)
        if repetition is not None:
            return f"gopher_repetition:{repetition}"
        if quality is not None:
            return f"gopher_quality:{quality}"
        c4 = c4_reason(text, self.gopher.tok)
        return None if c4 is None else f"c4_quality:{c4}"
