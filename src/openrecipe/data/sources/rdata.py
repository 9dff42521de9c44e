"""A small reader for R's XDR serialization and lazy-load databases (``.rdb`` + ``.rdx``).

Why our own: the janeaustenr package ships its novels only as an R lazy-load DB, and pulling in R
(or a pyreadr/rpy2 build) for six character vectors is out of proportion. The format is documented
in R's ``src/main/serialize.c`` (``ReadItem``, ``UnpackFlags``) and ``src/library/base/R/lazyload.R``:

* a serialization stream starts with ``X\\n`` (XDR = big-endian), then the format version (2 or 3),
  the writer's and the minimal reader's R versions, and for version 3 the native encoding name;
* each item starts with a 32-bit flags word: type in bits 0-7, "is object" bit 8, "has attributes"
  bit 9, "has tag" bit 10, and for CHARSXP the encoding levels in bits 12-27;
* ``.rdx`` is a gzip file holding a serialized list ``variables`` of (offset, length) pairs into the
  ``.rdb``; each ``.rdb`` blob is a 4-byte big-endian uncompressed length followed by zlib data
  (R's ``compress=TRUE``), itself a serialization stream.

Only what data packages use is supported (vectors, lists, pairlists, symbols, references,
compact ALTREP sequences); anything else raises ``RDataError`` naming the type code.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openrecipe.errors import SourceError


class RDataError(SourceError):
    """The bytes are not an R serialization stream this reader understands."""


# SEXP type codes and special pseudo-types, from R's Rinternals.h and serialize.c.
NILSXP, SYMSXP, LISTSXP, CLOSXP, ENVSXP = 0, 1, 2, 3, 4
LANGSXP, CHARSXP, LGLSXP, INTSXP, REALSXP, STRSXP, VECSXP = 6, 9, 10, 13, 14, 16, 19
ALTREP_SXP, ATTRLISTSXP, ATTRLANGSXP = 238, 239, 240
BASEENV_SXP, EMPTYENV_SXP, GLOBALENV_SXP, NILVALUE_SXP, REFSXP = 241, 242, 253, 254, 255
_SINGLETONS = {BASEENV_SXP: "<baseenv>", EMPTYENV_SXP: "<emptyenv>", GLOBALENV_SXP: "<globalenv>"}
NA_INTEGER = -(2**31)
_UTF8_MASK, _LATIN1_MASK, _BYTES_MASK = 1 << 3, 1 << 2, 1 << 1  # CHARSXP levels (bits 12+)


@dataclass
class RObject:
    """A decoded R value: ``value`` is a Python list (vectors) or str (symbols); ``attributes``
    holds R attributes such as ``names``, ``class`` and ``row.names``."""

    type: int
    value: Any
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> list[str] | None:
        names = self.attributes.get("names")
        return names.value if isinstance(names, RObject) else None


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.refs: list[Any] = []

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise RDataError(
                f"truncated stream: wanted {n} bytes at offset {self.pos} of {len(self.data)}"
            )
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def int(self) -> int:
        return struct.unpack(">i", self.take(4))[0]

    def header(self) -> None:
        magic = self.take(2)
        if magic != b"X\n":
            raise RDataError(
                f"not an XDR serialization stream (starts with {magic!r}, expected b'X\\n')"
            )
        version = self.int()
        self.int(), self.int()  # writer's R version, minimal reader version
        if version == 3:
            self.take(self.int())  # native encoding name
        elif version != 2:
            raise RDataError(f"serialization format version {version} (supported: 2, 3)")

    def item(self) -> Any:
        flags = self.int()
        kind = flags & 0xFF
        has_attr, has_tag = bool(flags & (1 << 9)), bool(flags & (1 << 10))
        if kind == NILVALUE_SXP:
            return None
        if kind in _SINGLETONS:
            return _SINGLETONS[kind]
        if kind == REFSXP:
            index = flags >> 8 or self.int()
            return self.refs[index - 1]
        if kind == SYMSXP:
            symbol = self.item()  # a CHARSXP
            self.refs.append(symbol)
            return symbol
        if kind in (LISTSXP, LANGSXP, ATTRLISTSXP, ATTRLANGSXP):
            return self._pairlist(kind, has_attr, has_tag)
        if kind == CHARSXP:
            return self._charsxp(flags)
        if kind == ALTREP_SXP:
            return self._altrep()
        if kind in (LGLSXP, INTSXP):
            n = self._length()
            values = list(struct.unpack(f">{n}i", self.take(4 * n)))
            return self._with_attrs(RObject(kind, values), has_attr)
        if kind == REALSXP:
            n = self._length()
            return self._with_attrs(
                RObject(kind, list(struct.unpack(f">{n}d", self.take(8 * n)))), has_attr
            )
        if kind in (STRSXP, VECSXP):
            n = self._length()
            return self._with_attrs(RObject(kind, [self.item() for _ in range(n)]), has_attr)
        raise RDataError(f"unsupported R type code {kind} at offset {self.pos - 4}")

    def _length(self) -> int:
        n = self.int()
        if n == -1:  # long vector: two more ints
            upper, lower = self.int(), self.int()
            n = (upper << 32) + lower
        return n

    def _charsxp(self, flags: int) -> str | None:
        n = self.int()
        if n == -1:
            return None  # NA_character_
        raw = self.take(n)
        levels = flags >> 12
        if levels & _LATIN1_MASK:
            return raw.decode("latin-1")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RDataError(f"CHARSXP at offset {self.pos - n} is not UTF-8 ({exc})") from exc

    def _pairlist(self, kind: int, has_attr: bool, has_tag: bool) -> RObject:
        attributes = self._attributes() if has_attr else {}
        tag = self.item() if has_tag else None
        car = self.item()
        cdr = self.item()
        cells = [(tag, car)]
        if isinstance(cdr, RObject) and cdr.type == LISTSXP:
            cells.extend(cdr.value)
        return RObject(LISTSXP, cells, attributes)  # value: [(tag, car), ...]

    def _attributes(self) -> dict[str, Any]:
        """An attribute pairlist as {name: value}."""
        pairs = self.item()
        return dict(pairs.value) if isinstance(pairs, RObject) else {}

    def _with_attrs(self, obj: RObject, has_attr: bool) -> RObject:
        if has_attr:
            obj.attributes = self._attributes()
        return obj

    def _altrep(self) -> RObject:
        info = self.item()  # pairlist (class symbol, package symbol, type)
        state = self.item()
        attributes = self._attributes()
        class_name = info.value[0][1] if isinstance(info, RObject) else None
        if class_name in ("compact_intseq", "compact_realseq"):
            n, start, step = state.value[:3]
            kind = INTSXP if class_name == "compact_intseq" else REALSXP
            cast = int if kind == INTSXP else float
            return RObject(kind, [cast(start + i * step) for i in range(int(n))], attributes)
        raise RDataError(f"unsupported ALTREP class {class_name!r}")


def unserialize(data: bytes) -> Any:
    """Decode one XDR serialization stream (the bytes R's ``serialize(x, NULL)`` returns)."""
    reader = _Reader(data)
    reader.header()
    return reader.item()


def read_blob(rdb: bytes, offset: int, length: int) -> Any:
    """One object of a lazy-load ``.rdb``: 4-byte big-endian raw length + zlib stream."""
    blob = rdb[offset : offset + length]
    if len(blob) != length or length < 5:
        raise RDataError(f"rdb blob at {offset} (+{length}) lies outside the {len(rdb)}-byte file")
    expected = struct.unpack(">I", blob[:4])[0]
    try:
        raw = zlib.decompress(blob[4:])
    except zlib.error as exc:
        raise RDataError(
            f"rdb blob at {offset}: not zlib data ({exc}); bzip2/xz DBs are unsupported"
        ) from exc
    if len(raw) != expected:
        raise RDataError(
            f"rdb blob at {offset}: {len(raw)} bytes after inflating, header says {expected}"
        )
    return unserialize(raw)


def load_lazy_db(base: Path) -> dict[str, Any]:
    """All variables of the lazy-load DB ``base.rdb``/``base.rdx``, by name."""
    rdx_path, rdb_path = base.with_suffix(".rdx"), base.with_suffix(".rdb")
    index = unserialize(gzip.decompress(rdx_path.read_bytes()))
    variables = dict(zip(index.names or [], index.value, strict=True)).get("variables")
    if not isinstance(variables, RObject):
        raise RDataError(f"{rdx_path}: no 'variables' index")
    rdb = rdb_path.read_bytes()
    return {
        name: read_blob(rdb, *map(int, where.value[:2]))
        for name, where in zip(variables.names or [], variables.value, strict=True)
    }
