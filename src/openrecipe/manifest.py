"""``manifest.json``: what a stage read, what it wrote, and under which config and code.

The file holds only deterministic content (so two identical runs write byte-identical manifests)
plus ``manifest_sha256``, the hash of that content, so an edited manifest is detected. Volatile
facts (wall time, host, start time) go to ``run_info.json`` beside it and are never hashed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from openrecipe.errors import LineageError, StageInputError
from openrecipe.hashing import canonical_json, hash_obj, sha256_file

MANIFEST_NAME = "manifest.json"
RUN_INFO_NAME = "run_info.json"
SCHEMA_VERSION = 1
# Files a stage directory may hold that are not outputs listed in its manifest: only at its top
# level (a run_info.json or manifest.json in a subfolder is a file like any other).
NOT_OUTPUTS = frozenset({MANIFEST_NAME, RUN_INFO_NAME})


def list_output_files(directory: Path) -> list[Path]:
    """All files under ``directory`` except its own top-level manifest and run info, in a stable
    order."""
    files = [
        p
        for p in directory.rglob("*")
        if p.is_file() and not (p.parent == directory and p.name in NOT_OUTPUTS)
    ]
    return sorted(files, key=lambda p: p.relative_to(directory).as_posix())


def describe_outputs(directory: Path) -> dict[str, dict[str, Any]]:
    return {
        path.relative_to(directory).as_posix(): {
            "sha256": sha256_file(path),
            "bytes": path.stat().st_size,
        }
        for path in list_output_files(directory)
    }


def seal(body: dict[str, Any]) -> dict[str, Any]:
    """Return ``body`` with ``manifest_sha256`` = hash of everything else."""
    content = {k: v for k, v in body.items() if k != "manifest_sha256"}
    return {**content, "manifest_sha256": hash_obj(content)}


def write_json_atomic(path: Path, obj: Any, *, canonical: bool = False) -> None:
    """Write ``path`` whole or not at all: a temporary name beside it, then a rename. A write
    that fails (disk full) removes its temporary file, which would otherwise sit in a stage
    directory as an unexpected file, and leaves the previous ``path`` as it was."""
    text = (
        canonical_json(obj)
        if canonical
        else json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False)
    )
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_manifest(stage_dir: Path) -> dict[str, Any]:
    path = stage_dir / MANIFEST_NAME
    if not path.is_file():
        raise StageInputError(f"{path}: missing: {stage_dir} is not a finished stage output")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StageInputError(
            f"{path}: not valid JSON ({exc}); the manifest was altered or truncated"
        ) from exc
    recorded = manifest.get("manifest_sha256")
    actual = hash_obj({k: v for k, v in manifest.items() if k != "manifest_sha256"})
    if recorded != actual:
        raise StageInputError(
            f"{path}: manifest_sha256 {recorded} does not match its content {actual}; the manifest was altered"
        )
    return manifest


def verify_stage_dir(stage_dir: Path, *, strict_extra: bool = True) -> list[str]:
    """Rehash every output listed in the manifest. Returns problems, one line each (empty = ok)."""
    try:
        manifest = read_manifest(stage_dir)
    except StageInputError as exc:
        return [str(exc)]
    problems = []
    listed = manifest.get("outputs", {})
    for rel, meta in sorted(listed.items()):
        path = stage_dir / rel
        if not path.is_file():
            problems.append(f"{path}: missing (listed in {stage_dir / MANIFEST_NAME})")
            continue
        actual = sha256_file(path)
        if actual != meta["sha256"]:
            problems.append(
                f"{path}: sha256 {actual[:12]}… does not match manifest {meta['sha256'][:12]}…"
            )
    if strict_extra:
        for path in list_output_files(stage_dir):
            rel = path.relative_to(stage_dir).as_posix()
            if rel not in listed:
                problems.append(f"{path}: unexpected file (not in {stage_dir / MANIFEST_NAME})")
    return problems


def verified_input(name: str, stage_dir: Path) -> dict[str, Any]:
    """Check an upstream stage directory and describe it for the downstream manifest."""
    problems = verify_stage_dir(stage_dir)
    if problems:
        raise StageInputError(f"input {name!r} refused:\n  " + "\n  ".join(problems))
    manifest = read_manifest(stage_dir)
    return {
        "name": name,
        "path": stage_dir.as_posix(),
        "stage": manifest["stage"],
        "manifest_sha256": manifest["manifest_sha256"],
        "files": {rel: meta["sha256"] for rel, meta in manifest["outputs"].items()},
    }


def find_stage_dir(path: Path) -> Path:
    """The stage directory (holding manifest.json) that contains ``path``."""
    path = path.resolve()
    for candidate in (path if path.is_dir() else path.parent, *path.parents):
        if (candidate / MANIFEST_NAME).is_file():
            return candidate
    raise LineageError(f"{path}: no manifest.json in any parent directory; not a stage output")
