"""``openrecipe verify <dir>``: rehash every stage directory below ``dir`` against its manifest.

Reports each altered, missing or unexpected file by name, and each manifest whose own hash no
longer matches its content. A stage whose inputs were rewritten after it ran is reported too:
the input hashes it recorded no longer match the upstream manifest.
"""

from __future__ import annotations

from pathlib import Path

from openrecipe.manifest import MANIFEST_NAME, read_manifest, verify_stage_dir
from openrecipe.paths import find_project_root


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
        problems.extend(verify_stage_dir(stage_dir))
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
