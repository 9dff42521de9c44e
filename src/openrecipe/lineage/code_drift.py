"""Which finished stages were made by other code than the checkout's, and what depends on them.

Snakemake reruns such a stage (its ``code`` param changed) but only says "params changed";
this module says which module, data file or package changed, and which stages downstream
will rerun with it. ``openrecipe verify`` uses the same comparison to flag a run "made by
other code" without failing its byte checks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from openrecipe.codeid import changed_parts, stage_code_identity
from openrecipe.manifest import MANIFEST_NAME


@dataclass(frozen=True)
class Drift:
    stage_dir: str  # project-relative
    stage: str
    changes: tuple[str, ...]


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None  # verify reports unreadable manifests; drift has nothing to say about them


def stage_drift(manifest: dict) -> tuple[str, ...]:
    """What differs between the code a manifest recorded and the checkout's (empty: same)."""
    stage = manifest.get("stage")
    recorded = manifest.get("code")
    try:
        current = stage_code_identity(stage)
    except KeyError:
        return ()  # not a stage this checkout knows (a test's toy stage): nothing to compare
    if not isinstance(recorded, dict) or "modules" not in recorded:
        return ("no stage code identity recorded (made before code was a rerun input)",)
    if recorded.get("sha256") == current["sha256"]:
        return ()
    return tuple(changed_parts(recorded, current)) or ("stage code identity differs",)


def _manifests(project: Path, roots: list[Path]) -> dict[str, dict]:
    found: dict[str, dict] = {}
    for root in roots:
        if not root.is_dir():
            continue
        for path in sorted(root.rglob(MANIFEST_NAME)):
            rel = path.parent.relative_to(project)
            if any(part.startswith(".") for part in rel.parts):
                continue
            manifest = _load(path)
            if manifest is not None and "stage" in manifest:
                found[rel.as_posix()] = manifest
    return found


def find_drift(project: Path, roots: list[Path]) -> tuple[list[Drift], dict[str, list[str]]]:
    """(drifted stages, {stage dir: stage dirs that consumed it}) under ``roots``."""
    manifests = _manifests(project, roots)
    consumers: dict[str, list[str]] = {}
    for stage_dir, manifest in manifests.items():
        for item in manifest.get("inputs", []):
            if "stage" in item and "path" in item:
                consumers.setdefault(item["path"], []).append(stage_dir)
    drifts = []
    for stage_dir, manifest in manifests.items():
        changes = stage_drift(manifest)
        if changes:
            drifts.append(Drift(stage_dir, manifest["stage"], changes))
    return drifts, consumers


def downstream(stage_dir: str, consumers: dict[str, list[str]]) -> list[str]:
    seen: set[str] = set()
    todo = list(consumers.get(stage_dir, []))
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(consumers.get(current, []))
    return sorted(seen)


def explain(project: Path, roots: list[Path]) -> list[str]:
    """Lines for the Snakemake plan: each stage made by other code, what changed, and the
    stages downstream of it. Empty when every finished stage matches the checkout's code."""
    drifts, consumers = find_drift(project, roots)
    if not drifts:
        return []
    lines = [
        "openrecipe: code changed since these stages ran; they rerun, with what depends on them:"
    ]
    for drift in sorted(drifts, key=lambda d: d.stage_dir):
        lines.append(f"  {drift.stage_dir} ({drift.stage}): {'; '.join(drift.changes)}")
        below = downstream(drift.stage_dir, consumers)
        if below:
            lines.append(f"    downstream: {', '.join(below)}")
    return lines


def made_by_other_code(project: Path, roots: list[Path]) -> list[str]:
    """One line per stage under ``roots`` whose recorded code identity differs from the
    checkout's. Information, not failure: the outputs may still verify byte for byte; they
    were computed by code this checkout no longer has (or has not yet run)."""
    drifts, _ = find_drift(project, roots)
    return [
        f"{d.stage_dir}: made by other code ({d.stage}: {'; '.join(d.changes)})"
        for d in sorted(drifts, key=lambda d: d.stage_dir)
    ]
