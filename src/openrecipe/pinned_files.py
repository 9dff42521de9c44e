"""Files a release published, pinned by sha256: copied out of a snapshot, fetched only by rule.

Three stages take such files: ``import`` (a checkpoint), ``tokenizer_import`` (a tokenizer) and
``acquire_hf`` (Parquet data). They share what it means to take one: the copy is hashed as it is
written and refused on any other sha256, so what a stage reads is exactly what it checked; a
missing file is fetched only when the network is allowed (``HF_HUB_OFFLINE`` read as
huggingface_hub reads it) and only into a directory inside the project, since a stage writes
nothing elsewhere on disk. The messages name the recipe field (``where``) and give the
``hf download`` command that makes the copy by hand.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from openrecipe.errors import StageInputError

CHUNK = 1 << 20
_TRUE = frozenset({"1", "ON", "YES", "TRUE"})  # huggingface_hub's reading of HF_HUB_OFFLINE


def offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` forbids the network, read as huggingface_hub reads it."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in _TRUE


def copy_verified(
    source: Path,
    target: Path,
    expected: str,
    where: str,
    error: type[Exception] = StageInputError,
) -> None:
    """Copy ``source`` to ``target``, hashing what is written; refuse a missing file or another
    sha256 (``where`` names the pinned entry, e.g. ``init.files: config.json``)."""
    if not source.is_file():
        raise error(
            f"{where}: missing from the snapshot ({source}); expected sha256 {expected}, "
            "found no file"
        )
    digest = hashlib.sha256()
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(source, "rb") as src, open(target, "wb") as dst:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            dst.write(chunk)
    found = digest.hexdigest()
    if found != expected:
        raise error(
            f"{where}: sha256 {found} does not match the pinned {expected} ({source}); "
            "another revision, or an altered or partial download"
        )


def check_download_allowed(
    snapshot: Path,
    project: Path,
    *,
    missing: str,
    release: str,
    command: str,
    stage: str,
    error: type[Exception] = StageInputError,
) -> None:
    """Refuse a download before any request: offline, or into a directory outside the project.
    ``missing`` says what is absent and where (``init.snapshot: <dir> does not exist``),
    ``release`` what would be downloaded (``repo@revision``)."""
    if offline():
        raise error(
            f"{missing} and HF_HUB_OFFLINE is set, so {release} cannot be downloaded; run "
            f"`{command}` where there is a network, or point the snapshot at an existing copy"
        )
    if not snapshot.resolve().is_relative_to(project.resolve()):
        raise error(
            f"{missing}, and the {stage} stage downloads only into the project ({project}), "
            f"never elsewhere on disk; set a project-relative snapshot directory, or run "
            f"`{command}` yourself"
        )
