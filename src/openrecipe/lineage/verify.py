"""``openrecipe verify <dir>``: rehash every stage directory below ``dir`` against its manifest.

Reports each altered, missing or unexpected file by name, and each manifest whose own hash no
longer matches its content. A stage whose inputs were rewritten after it ran is reported too:
the input hashes it recorded no longer match the upstream manifest.
"""

from __future__ import annotations

import json
from pathlib import Path

from openrecipe.hashing import hash_obj
from openrecipe.manifest import MANIFEST_NAME, list_output_files, read_manifest, verify_stage_dir
from openrecipe.paths import find_project_root

# Audit records written beside a finished stage's outputs after it ran (``openrecipe lock``):
# not outputs of the stage, so not in its manifest; each carries its own content hash instead.
AUDIT_FILES = {"release.lock.json": "lock_sha256"}


def _audit_file_problems(path: Path) -> list[str]:
    # imported here: verify loads the signing code only when a run holds a lock
    from openrecipe.errors import OpenRecipeError
    from openrecipe.lineage.predicates import lock_in_envelope

    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        return [f"{path}: audit file unreadable ({exc})"]
    # The lock is a signed envelope; verify checks its shape and hash only. The signature is
    # ``reproduce --check``'s to check, against the keys its user trusts.
    try:
        record = lock_in_envelope(record, path)
    except OpenRecipeError as exc:
        return [str(exc)]
    key = AUDIT_FILES[path.name]
    if hash_obj({k: v for k, v in record.items() if k != key}) != record.get(key):
        return [f"{path}: {key} does not match its content; the file was altered"]
    return []


def check_stage_dir(stage_dir: Path) -> list[str]:
    """``verify_stage_dir`` with the extra-file check done here, so audit files pass (after
    their own hash check) while any other file not in the manifest is reported by name."""
    problems = verify_stage_dir(stage_dir, strict_extra=False)
    try:
        listed = read_manifest(stage_dir).get("outputs", {})
    except Exception:  # an unreadable manifest is already the problem reported
        return problems
    for path in list_output_files(stage_dir):
        rel = path.relative_to(stage_dir).as_posix()
        if rel in listed:
            continue
        if rel in AUDIT_FILES:
            problems.extend(_audit_file_problems(path))
        else:
            problems.append(f"{path}: unexpected file (not in {stage_dir / MANIFEST_NAME})")
    return problems


def stage_dirs(root: Path) -> list[Path]:
    dirs = {
        p.parent
        for p in root.rglob(MANIFEST_NAME)
        if not any(part.startswith(".") for part in p.relative_to(root).parts)
    }
    if (root / MANIFEST_NAME).is_file():
        dirs.add(root)
    return sorted(dirs)


def verify_tree(root: Path) -> tuple[list[str], int]:
    root = root.resolve()
    if not root.exists():
        return [f"{root}: no such directory"], 0
    dirs = stage_dirs(root)
    if not dirs:
        return [f"{root}: no manifest.json found; not a run directory"], 0
    project = find_project_root(root)
    problems: list[str] = []
    for stage_dir in dirs:
        problems.extend(check_stage_dir(stage_dir))
        try:
            manifest = read_manifest(stage_dir)
        except Exception:  # already reported by verify_stage_dir
            continue
        for item in manifest.get("inputs", []):
            if "stage" not in item:
                continue
            upstream = project / item["path"]
            try:
                current = read_manifest(upstream)["manifest_sha256"]
            except Exception as exc:
                problems.append(f"{stage_dir}: input {item['name']}: {exc}")
                continue
            if current != item["manifest_sha256"]:
                problems.append(
                    f"{stage_dir}: input {item['name']} ({item['path']}) changed since this stage ran "
                    f"(manifest {current[:12]}…, consumed {item['manifest_sha256'][:12]}…)"
                )
    return problems, len(dirs)
