"""Jane Austen's six novels (Debian ``r-cran-janeaustenr``), one document per chapter.

The package stores each novel as an R character vector (one Project Gutenberg line per element)
in the lazy-load DB ``data/Rdata.rdb``/``.rdx``; ``rdata`` decodes it. Chapters start at lines
``CHAPTER I``, ``Chapter 1``, ``CHAPTER 12`` ...; Emma restarts its numbering per volume, so
documents are numbered by position, not by the printed number. Text before the first chapter
(title page, advertisement) is document 0."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from openrecipe.data.sources.rdata import STRSXP, RObject, load_lazy_db
from openrecipe.errors import SourceError

DB_RELPATH = Path("usr/lib/R/site-library/janeaustenr/data/Rdata")
_CHAPTER = re.compile(r"^\s*chapter\s+([0-9]+|[ivxlc]+)\.?\s*$", re.IGNORECASE)


def split_chapters(lines: list[str]) -> list[list[str]]:
    """Lines grouped at chapter headings; element 0 is the front matter (possibly empty)."""
    chapters: list[list[str]] = [[]]
    for line in lines:
        if _CHAPTER.match(line):
            chapters.append([])
        chapters[-1].append(line)
    return chapters


def unwrap(lines: list[str]) -> str:
    """Gutenberg hard-wraps at ~70 columns; rejoin each paragraph on one line and separate
    paragraphs (and the heading) by a blank line."""
    paragraphs: list[str] = []
    current: list[str] = []
    for line in [*lines, ""]:
        if line.strip():
            current.append(line.strip())
        elif current:
            paragraphs.append(" ".join(current))
            current = []
    return "\n\n".join(paragraphs)


def documents(root: Path, source: dict) -> Iterator[dict]:
    """Novels in name order, chapters in book order; ids ``<source>/<novel>/chNNN``."""
    base = root / DB_RELPATH
    if not base.with_suffix(".rdb").is_file():
        raise SourceError(f"{base}.rdb: missing from the unpacked {source['package']} package")
    novels = load_lazy_db(base)
    for novel in sorted(novels):
        vector = novels[novel]
        if not isinstance(vector, RObject) or vector.type != STRSXP:
            raise SourceError(f"{base}.rdb: {novel} is not a character vector")
        lines = ["" if line is None else line for line in vector.value]
        for number, chapter in enumerate(split_chapters(lines)):
            text = unwrap(chapter)
            if not text:
                continue
            yield {
                "id": f"{source['name']}/{novel}/ch{number:03d}",
                "url_or_path": f"{source['package']}_{source['version']}/{DB_RELPATH}.rdb#{novel}/ch{number:03d}",
                "text": text,
            }
