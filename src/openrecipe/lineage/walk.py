"""Following a manifest's inputs upstream, by hash: the one way every lineage walk opens a stage.

A downstream manifest records, for each upstream stage it consumed, the path it read it from and
that stage's ``manifest_sha256``. The path says where to look; the hash says what must be there.
A walk that believed the path alone would, after the run directory was copied and the original
rerun, or after any rerun in place, follow into another stage's output and certify, trace or lock
facts about a model that never saw them. So every walk (trace, certify, verify-certificate, diff,
lock, verify) opens an upstream through ``open_upstream``, which refuses a stage whose manifest
hash differs from the one recorded, naming the downstream manifest, the path and both hashes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openrecipe.errors import LineageError, StageInputError
from openrecipe.manifest import MANIFEST_NAME, read_manifest


@dataclass(frozen=True)
class Upstream:
    """An upstream stage as a downstream manifest named it, opened and checked by hash."""

    name: str  # the input's name in the downstream manifest (``pack``, ``raw_brown``)
    recorded_path: str  # the path as the downstream manifest recorded it
    dir: Path  # where it was found (absolute)
    manifest: dict[str, Any]  # its manifest; manifest_sha256 equals the one recorded downstream


def stage_inputs(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The inputs of a manifest that are upstream stage directories (external packages and
    interpreter libraries carry a ``sha256`` of their own and no ``stage``)."""
    return [item for item in manifest.get("inputs", []) if "stage" in item]


def locate(project: Path, recorded_path: str) -> Path:
    """The directory a recorded input path names (project-relative unless absolute)."""
    path = Path(recorded_path)
    return (path if path.is_absolute() else project / path).resolve()


def open_upstream(project: Path, item: dict[str, Any], consumer: Path) -> Upstream:
    """Open the upstream stage that input ``item`` of the manifest ``consumer`` (a
    ``manifest.json`` path) names, and check it is the very stage the consumer read.

    Raises ``LineageError`` when the upstream is missing, its manifest is unreadable or altered,
    or it is another stage's output (its ``manifest_sha256`` differs from the recorded one)."""
    name, recorded_path = item.get("name", "?"), item.get("path")
    expected = item.get("manifest_sha256")
    if not isinstance(recorded_path, str) or not isinstance(expected, str):
        raise LineageError(
            f"{consumer}: input {name!r} records no path or manifest_sha256; "
            "the upstream stage cannot be identified"
        )
    stage_dir = locate(project, recorded_path)
    try:
        manifest = read_manifest(stage_dir)
    except StageInputError as exc:
        raise LineageError(f"{consumer}: input {name!r} ({recorded_path}): {exc}") from exc
    found = manifest.get("manifest_sha256")
    if found != expected:
        raise LineageError(
            f"{consumer}: input {name!r} ({recorded_path}) is another stage's output: "
            f"{recorded_path}/{MANIFEST_NAME} has manifest_sha256 {found}, but this manifest "
            f"recorded {expected}; the upstream was rerun or replaced since (a copied run still "
            "names the original's paths), so the lineage cannot be followed"
        )
    return Upstream(name, recorded_path, stage_dir, manifest)


def upstreams(project: Path, stage_dir: Path, manifest: dict[str, Any]) -> Iterator[Upstream]:
    """Every upstream stage of ``manifest`` (read from ``stage_dir``), each checked by hash."""
    consumer = stage_dir / MANIFEST_NAME
    for item in stage_inputs(manifest):
        yield open_upstream(project, item, consumer)


def closure(project: Path, roots: Iterable[Path]) -> dict[Path, dict[str, Any]]:
    """{stage dir: manifest} of ``roots`` and everything upstream of them, each upstream found
    through ``open_upstream`` (so a mismatch anywhere raises ``LineageError``); stable order:
    the roots as given, then upstreams breadth-first."""
    found: dict[Path, dict[str, Any]] = {}
    queue: list[tuple[Path, dict[str, Any]]] = []
    for root in roots:
        root = root.resolve()
        if root not in found:
            try:
                found[root] = read_manifest(root)
            except StageInputError as exc:
                raise LineageError(str(exc)) from exc
            queue.append((root, found[root]))
    while queue:
        stage_dir, manifest = queue.pop(0)
        for upstream in upstreams(project, stage_dir, manifest):
            if upstream.dir not in found:
                found[upstream.dir] = upstream.manifest
                queue.append((upstream.dir, upstream.manifest))
    return found
