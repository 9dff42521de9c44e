"""Bibles packaged as SWORD zText modules (Debian ``sword-text-*``), one document per chapter.

Layout. A package holds one ``usr/share/sword/mods.d/<module>.conf`` (``[Module]`` then
``Key=Value`` lines: ``DataPath``, ``ModDrv``, ``CompressType``, ``BlockType``, ``SourceType``,
``Versification``, ``Encoding``) and, under ``DataPath``, three files per testament (``ot``,
``nt``), all little-endian:

- ``ot.bzs``: block index, 12 bytes a block: offset and size in ``ot.bzz``, inflated size;
- ``ot.bzz``: the zlib-compressed blocks (``BlockType=BOOK``: one block a book);
- ``ot.bzv``: key index, 10 bytes a key: block number (u32), offset (u32) and length (u16) of the
  key's text inside the inflated block.

Key ``i`` of a testament is the ``i``-th position of the module's *versification*: 0 the module
heading, 1 the testament heading, then per book a book heading and per chapter a chapter
heading followed by one key per verse. The versification (chapter and verse counts per book) is
not stored in the module, so it comes from ``pysword``'s copy of SWORD's canon tables
(``pysword.canons``). pysword's own reader is *not* used: its ``ZTextModule`` inflates the whole
book block again for every verse (6.5 s for the Psalms alone) and returns empty text for a
corrupt block or an index past the end instead of failing, which would silently shrink a pinned
source. Here each block is inflated once, every inconsistency raises, and the key count of each
``.bzv`` must equal the versification's, which catches a wrong ``Versification=``.

Text. Keys hold OSIS XML fragments. Kept: the words (``<w>`` loses its Strong's ``lemma`` and
``morph`` attributes), quotes, names, words the translators added (``<transChange>``) and
canonical titles (Psalm superscriptions). Dropped with their content: notes (footnotes, cross
references, variant readings), editors' section titles, speaker labels, catch words.
Paragraph milestones become a blank line, poetry lines a line break. Verse numbers are not
written: a chapter reads as running text, as in a reader's edition, so the model sees prose
rather than reference numbering. Book and chapter heading keys (the WEB's preface, book
titles, the Psalter's "BOOK 1") belong to no chapter and are left out.
"""

from __future__ import annotations

import html
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pysword.canons import canons

from openrecipe.errors import SourceError

SWORD_RELPATH = Path("usr/share/sword")
TESTAMENTS = ("ot", "nt")
_KEY = struct.Struct("<IIH")
_BLOCK = struct.Struct("<III")
# File-name letter per BlockType (SWORD's zText driver: ot.bzv, ot.czv, ot.vzv ...).
_BLOCK_LETTER = {"BOOK": "b", "CHAPTER": "c", "VERSE": "v"}

# Elements dropped with everything inside them. A <title> is dropped unless canonical="true".
_DROP = {"note", "speaker", "catchWord", "rdg", "rdgGroup", "figure", "index", "abbr"}
_PARA = "\x00P"  # paragraph break
_LINE = "\x00L"  # line break
_GAP = "\x00G"  # where dropped content was: a space only if it sat between two words
_TAG = re.compile(r"<(/?)([A-Za-z][\w:.-]*)((?:\s+[\w:.-]+\s*=\s*(?:\"[^\"]*\"|'[^']*'))*)\s*(/?)>")
_ATTR = re.compile(r"([\w:.-]+)\s*=\s*(?:\"([^\"]*)\"|'([^']*)')")


@dataclass(frozen=True)
class Module:
    """The parts of a module's .conf that decide how to read it."""

    name: str
    data_path: Path
    block_letter: str
    versification: str
    encoding: str


def read_conf(root: Path) -> Module:
    """The single module of an unpacked ``sword-text-*`` package; refuses what this reader
    cannot decode (another driver, compression or markup) instead of yielding garbage."""
    confs = sorted((root / SWORD_RELPATH / "mods.d").glob("*.conf"))
    if len(confs) != 1:
        raise SourceError(f"{root / SWORD_RELPATH}/mods.d: expected one .conf, found {confs}")
    name, fields = "", {}
    for line in confs[0].read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]") and not name:
            name = line[1:-1]
        elif "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            fields.setdefault(key.strip(), value.strip())  # repeated keys: the first one
    expected = {"ModDrv": "ztext", "CompressType": "zip", "SourceType": "osis"}
    for key, want in expected.items():
        if fields.get(key, "").lower() != want:
            raise SourceError(f"{confs[0]}: {key}={fields.get(key)!r}; this reader handles {want}")
    block_type = fields.get("BlockType", "CHAPTER").upper()
    versification = fields.get("Versification", "KJV").lower()
    if block_type not in _BLOCK_LETTER or versification not in canons:
        raise SourceError(f"{confs[0]}: unsupported BlockType {block_type} or {versification}")
    return Module(
        name=name,
        data_path=root / SWORD_RELPATH / fields["DataPath"].lstrip("./"),
        block_letter=_BLOCK_LETTER[block_type],
        versification=versification,
        encoding=fields.get("Encoding", "latin-1"),
    )


def read_testament(module: Module, testament: str) -> list[bytes] | None:
    """Every key's raw text in index order (``b""`` for an empty key); None when the module has
    no such testament."""
    base = module.data_path / testament
    paths = [base.with_suffix(f".{module.block_letter}z{kind}") for kind in "vsz"]
    if not any(p.exists() for p in paths):
        return None
    keys, blocks_index, data = (p.read_bytes() for p in paths)
    if len(keys) % _KEY.size or len(blocks_index) % _BLOCK.size:
        raise SourceError(f"{base}: index sizes are not multiples of their record sizes")
    blocks: dict[int, bytes] = {}
    texts = []
    for block, start, length in _KEY.iter_unpack(keys):
        if length == 0:
            texts.append(b"")
            continue
        if block not in blocks:
            if block * _BLOCK.size >= len(blocks_index):
                raise SourceError(f"{base}: key points at block {block}, past the block index")
            offset, size, inflated = _BLOCK.unpack_from(blocks_index, block * _BLOCK.size)
            try:
                blocks[block] = zlib.decompress(data[offset : offset + size])
            except zlib.error as exc:
                raise SourceError(f"{base}: block {block} does not inflate: {exc}") from exc
            if len(blocks[block]) != inflated:
                raise SourceError(f"{base}: block {block} inflates to the wrong size")
        if start + length > len(blocks[block]):
            raise SourceError(f"{base}: key runs past the end of block {block}")
        texts.append(blocks[block][start : start + length])
    return texts


def chapters(
    module: Module, testament: str, keys: list[bytes]
) -> Iterator[tuple[str, int, list[str]]]:
    """(book OSIS id, chapter, verse texts) in versification order."""
    books = canons[module.versification][testament]
    expected = 2 + sum(sum(lengths) + len(lengths) + 1 for *_, lengths in books)
    if len(keys) != expected:
        raise SourceError(
            f"{module.data_path / testament}: {len(keys)} keys, versification "
            f"{module.versification} has {expected}; Versification= in the .conf is wrong"
        )
    index = 2  # after the module and testament headings
    for _name, osis, _abbrev, lengths in books:
        index += 1  # book heading
        for number, verses in enumerate(lengths, start=1):
            index += 1  # chapter heading
            raw = keys[index : index + verses]
            index += verses
            yield osis, number, [r.decode(module.encoding) for r in raw]


def _attrs(text: str) -> dict[str, str]:
    return {m[1]: m[2] or m[3] for m in _ATTR.finditer(text)}


def _break_for(name: str, attrs: dict[str, str], closing: bool) -> str | None:
    """The break an element (or milestone) marks in running text, if any."""
    if name in ("p", "lg", "list", "div"):
        if name == "div" and attrs.get("type") not in ("x-p", "paragraph", None):
            return None  # x-milestone, book, introduction ... markers carry no break
        return _PARA
    if name == "lb":
        return _PARA if attrs.get("type") == "x-p" else _LINE
    if name in ("l", "item"):
        return _LINE
    if name == "title" and closing:
        return _PARA  # after a kept (canonical) title
    return None


def osis_to_text(fragment: str) -> str:
    """OSIS markup -> plain text, following the keep/drop rules in the module docstring. The
    input may hold a whole chapter: elements may open in one verse and close in another."""
    out: list[str] = []
    stack: list[tuple[str, bool]] = []  # open elements: (name, dropped)
    pos = 0
    for match in _TAG.finditer(fragment):
        dropping = any(dropped for _, dropped in stack)
        if not dropping and match.start() > pos:
            out.append(html.unescape(fragment[pos : match.start()]))
        pos = match.end()
        closing, name, attr_text, empty = match.groups()
        attrs = _attrs(attr_text)
        if closing:
            names = [n for n, _ in stack]
            if name not in names:
                continue  # a close whose start was in a heading key: nothing to undo
            depth = len(names) - 1 - names[::-1].index(name)
            was_dropped = stack[depth][1]
            del stack[depth:]
            if not any(dropped for _, dropped in stack):
                out.append(_GAP if was_dropped else _break_for(name, attrs, closing=True) or "")
            continue
        drop = dropping or name in _DROP or (name == "title" and attrs.get("canonical") != "true")
        if not drop:
            out.append(_break_for(name, attrs, closing=False) or "")
        if not empty:
            stack.append((name, drop))
        elif drop and not dropping:
            out.append(_GAP)
    if not any(dropped for _, dropped in stack) and pos < len(fragment):
        out.append(html.unescape(fragment[pos:]))
    return "".join(out)


def tidy(text: str) -> str:
    """Markers -> whitespace: a gap left by a dropped note is a space only between two words
    ("God<note/>created"), breaks become newlines, runs of spaces one space."""
    text = re.sub(rf"(?<=[^\s(“‘\[\x00]){_GAP}(?=[\w“‘(])", " ", text)
    text = text.replace(_GAP, "")
    # A run of breaks ("end of line, start of line") is one break, the strongest in the run.
    text = re.sub(
        rf"\s*(?:(?:{_PARA}|{_LINE})\s*)+",
        lambda m: "\n\n" if _PARA in m.group() else "\n",
        text,
    )
    lines = (re.sub(r"\s+", " ", line).strip() for line in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def documents(root: Path, source: dict) -> Iterator[dict]:
    """Chapters in versification order (Old Testament, then New); ids
    ``<source>/<book OSIS id>/<chapter:03d>``. Chapters with no text (books the translation
    lacks) are skipped."""
    module = read_conf(root)
    found = False
    for testament in TESTAMENTS:
        keys = read_testament(module, testament)
        if keys is None:
            continue
        found = True
        for book, number, verses in chapters(module, testament, keys):
            text = tidy(osis_to_text(" ".join(verses)))
            if not text:
                continue
            rel = module.data_path.relative_to(root)
            yield {
                "id": f"{source['name']}/{book}/{number:03d}",
                "url_or_path": f"{source['package']}_{source['version']}/{rel}#{book}.{number}",
                "text": text,
            }
    if not found:
        raise SourceError(f"{module.data_path}: no ot or nt files for module {module.name}")
