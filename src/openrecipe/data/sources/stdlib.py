"""The running interpreter's standard library (``Lib/``) as a code source.

There is no archive to pin, so the pin is a hash of the file set: sha256 over the lines
``<file sha256>  <relative path>\\n`` (``sha256sum`` format, sorted by path). Another interpreter
build, or an edited stdlib file, changes it and the acquire stage refuses to run."""

from __future__ import annotations

import hashlib
import platform
import sysconfig
from collections.abc import Iterator
from pathlib import Path

from openrecipe.errors import SourceError
from openrecipe.hashing import sha256_bytes

# Tests and bundled third-party/tool trees are not "the library" (and tests hold deliberately
# broken encodings); site-packages is whatever the user installed.
EXCLUDED_DIRS = frozenset(
    {"test", "tests", "idlelib", "lib2to3", "site-packages", "turtledemo", "__pycache__"}
)


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def list_files(root: Path) -> list[tuple[str, Path]]:
    """(posix relative path, path) of every kept ``*.py``, sorted by relative path."""
    files = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if EXCLUDED_DIRS.isdisjoint(rel.parts[:-1]) and path.is_file():
            files.append((rel.as_posix(), path))
    return sorted(files)


def listing_sha256(files: list[tuple[str, bytes]]) -> str:
    """The pin: sha256 of ``sha256sum``-style lines over (relative path, content) pairs."""
    lines = "".join(f"{sha256_bytes(data)}  {rel}\n" for rel, data in sorted(files))
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


def read_pinned(source: dict, root: Path | None = None) -> tuple[str, list[tuple[str, bytes]]]:
    """The file set and its hash, after checking both against the recipe's version and sha256."""
    root = root or stdlib_root()
    files = [(rel, path.read_bytes()) for rel, path in list_files(root)]
    actual = listing_sha256(files)
    found_version = platform.python_version()
    if actual != source["sha256"]:
        raise SourceError(
            f"source {source['name']}: the stdlib at {root} (Python {found_version}, "
            f"{len(files)} files) hashes to {actual}, the recipe pins {source['sha256']} for "
            f"Python {source['version']}; run with that interpreter build or get the pinned "
            "snapshot with `dvc pull`"
        )
    if found_version != source["version"]:
        raise SourceError(
            f"source {source['name']}: running Python {found_version}, the recipe pins "
            f"{source['version']} (same files, hash {actual}); fix data.sources version"
        )
    return actual, files


def documents(files: list[tuple[str, bytes]], source: dict) -> Iterator[dict]:
    for rel, data in files:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SourceError(
                f"Lib/{rel}: not UTF-8 ({exc}); PEP 3120 makes UTF-8 the stdlib encoding"
            ) from exc
        yield {"id": f"{source['name']}/{rel}", "url_or_path": f"Lib/{rel}", "text": text}
