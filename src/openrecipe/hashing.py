"""Content hashing used by every manifest: sha256 of files and of canonical JSON.

Canonical JSON (sorted keys, no whitespace, UTF-8) makes a config subtree's hash independent of
YAML formatting, key order and comments, so only a change of value reruns a stage."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_json(obj: Any) -> str:
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def hash_obj(obj: Any) -> str:
    """sha256 of the canonical JSON of ``obj`` (a config subtree, a manifest body)."""
    return sha256_bytes(canonical_json(obj).encode("utf-8"))


def derive_seed(base_seed: int, *names: str) -> int:
    """A 31-bit seed from the recipe seed and a stage (and sub-stream) name.

    Every random stream in the project is derived this way, so adding a stage or a source never
    shifts the seed of another one."""
    key = ":".join([str(base_seed), *names]).encode("utf-8")
    return int.from_bytes(hashlib.sha256(key).digest()[:4], "big") & 0x7FFFFFFF
