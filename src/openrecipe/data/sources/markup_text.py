"""What the two markup extractors (Debian handbook HTML, GNOME Mallard XML) share: the language of
a locale directory, and how a tree walk's output becomes text.

A walker appends text pieces to a list, ``BREAK`` around block elements and verbatim blocks
(``<pre>``, ``<code>``) wrapped by :func:`verbatim`; :func:`join_blocks` then collapses the
whitespace of prose blocks, keeps verbatim blocks as they are, and separates blocks by one blank
line. The walkers themselves stay per format: their skip rules and block elements differ.
"""

from __future__ import annotations

import re

BREAK = "\x00"
_OPEN, _CLOSE = "\x01", "\x02"
# lid.176 (the langid stage's model) says "no" for Norwegian Bokmål: with "nb" every
# Norwegian page would count as a language mismatch.
_LANG_ALIASES = {"nb": "no"}


def locale_lang(locale: str) -> str:
    """ISO 639-1 language of a locale directory name: ``fr-FR`` -> ``fr``, ``pt_BR`` -> ``pt``,
    ``sr@latin`` -> ``sr``, ``C``/``POSIX`` -> ``en``."""
    lang = re.split(r"[-_@.]", locale, maxsplit=1)[0].lower()
    if lang in ("c", "posix"):
        return "en"
    return _LANG_ALIASES.get(lang, lang)


def verbatim(text: str) -> list[str]:
    """The pieces that put ``text`` in a block of its own, kept verbatim by join_blocks."""
    return [BREAK, _OPEN + text.strip("\n") + _CLOSE, BREAK]


def join_blocks(pieces: list[str]) -> str:
    """A walk's pieces as text: blocks separated by one blank line, empty blocks dropped."""
    blocks = []
    for chunk in "".join(pieces).split(BREAK):
        if chunk.startswith(_OPEN) and chunk.endswith(_CLOSE):
            blocks.append(chunk[1:-1].rstrip())
        else:
            blocks.append(re.sub(r"\s+", " ", chunk).strip())
    return "\n\n".join(b for b in blocks if b.strip())
