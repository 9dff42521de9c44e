"""``openrecipe trace <file>``: the chain of stages behind any artifact, down to raw packages.

Reads only manifests: each stage lists its inputs (upstream stage directories with the hashes
it saw, or external packages with version and sha256), so the chain is followed without rerunning
anything. Each hop is opened by the manifest hash the downstream stage recorded
(``walk.open_upstream``): an upstream that is now another stage's output is refused, never followed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from openrecipe.errors import LineageError, StageInputError
from openrecipe.hashing import sha256_file
from openrecipe.lineage.walk import open_upstream
from openrecipe.manifest import MANIFEST_NAME, RUN_INFO_NAME, find_stage_dir, read_manifest
from openrecipe.paths import find_project_root


def trace(path: Path) -> dict[str, Any]:
    path = path.resolve()
    if not path.exists():
        raise LineageError(f"{path}: no such file")
    stage_dir = find_stage_dir(path)
    project = find_project_root(stage_dir)
    try:
        manifest = read_manifest(stage_dir)
    except StageInputError as exc:
        raise LineageError(str(exc)) from exc
    node = _trace_stage(stage_dir, manifest, project, {})
    if path.is_file() and path.parent.resolve() != path.resolve():
        rel = path.relative_to(stage_dir).as_posix()
        node["artifact"] = (
            {"path": rel, "sha256": sha256_file(path)} if rel != "manifest.json" else None
        )
    return node


def _trace_stage(
    stage_dir: Path, manifest: dict[str, Any], project: Path, seen: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """The traced node of one stage whose ``manifest`` was already read (and, for an upstream,
    checked against the hash its consumer recorded)."""
    key = stage_dir.resolve().as_posix()
    if key in seen:
        return {"ref": seen[key]["dir"]}
    node: dict[str, Any] = {
        "dir": _rel(stage_dir, project),
        "stage": manifest["stage"],
        "part": manifest.get("part"),
        "manifest_sha256": manifest["manifest_sha256"],
        "config_hash": manifest["config_hash"],
        "config_origins": manifest.get("config_origins", {}),
        "config_lines": {
            dotted: recipe_line(origin, project)
            for dotted, origin in sorted(manifest.get("config_origins", {}).items())
        },
        "code": manifest.get("code", {}),
        "git": _run_info(stage_dir).get("git", {}),
        "outputs": {rel: meta["sha256"] for rel, meta in manifest["outputs"].items()},
        "inputs": [],
        "external": [],
    }
    if manifest["stage"] == "acquire":
        node["source_spec"] = (manifest.get("config_view", {}).get("data.sources") or [{}])[0]
    seen[key] = node
    for item in manifest.get("inputs", []):
        if "stage" not in item:  # an external source (package, interpreter library)
            node["external"].append(item)
            continue
        upstream = open_upstream(project, item, stage_dir / MANIFEST_NAME)
        child = _trace_stage(upstream.dir, upstream.manifest, project, seen)
        node["inputs"].append({"name": item["name"], "node": child})
    return node


def _rel(path: Path, project: Path) -> str:
    path = path.resolve()
    return path.relative_to(project).as_posix() if project in path.parents else path.as_posix()


def recipe_line(origin: str, project: Path) -> str:
    """The text of the recipe line a config field came from (``origin`` is "file:line"), so a
    reader sees the value as written without opening the file; "" when the file is gone."""
    path, _, line = origin.rpartition(":")
    if not line.isdigit():
        return ""
    candidate = Path(path) if Path(path).is_absolute() else project / path
    try:
        lines = candidate.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return ""
    index = int(line) - 1
    return lines[index].strip() if 0 <= index < len(lines) else ""


def raw_sources(node: dict[str, Any]) -> list[dict[str, Any]]:
    """Every raw source reachable from a traced node (deduplicated, sorted by name).

    One entry per acquire stage: the package (kind, package, version, licence, language, uri)
    with its pinned sha256 (``None`` for a generated source, whose identity is then the hash of
    the documents it wrote, ``docs_sha256``), plus any other external input a stage declared
    (an imported release: ``kind`` hf_model, its repository, revision and pinned files)."""
    found: dict[str, dict[str, Any]] = {}

    def walk(n: dict[str, Any]) -> None:
        if "ref" in n:
            return
        if n["stage"] == "acquire":
            spec = n.get("source_spec", {})
            pinned = next(iter(n.get("external", [])), {})
            name = spec.get("name") or n.get("part")
            found[f"{name}:{n['manifest_sha256']}"] = {
                "name": name,
                "kind": spec.get("kind") or pinned.get("kind"),
                "package": spec.get("package") or pinned.get("package"),
                "version": spec.get("version") or pinned.get("version"),
                "sha256": pinned.get("sha256") or spec.get("sha256"),
                "uri": pinned.get("uri") or spec.get("url"),
                "license": spec.get("license"),
                "lang": spec.get("lang"),
                "docs_sha256": n["outputs"].get("docs.jsonl"),
                "dir": n["dir"],
            }
        else:
            for item in n.get("external", []):
                found[f"{item.get('name')}:{item.get('sha256')}"] = item
        for child in n.get("inputs", []):
            walk(child["node"])

    walk(node)
    return [found[k] for k in sorted(found)]


def format_tree(node: dict[str, Any]) -> str:
    lines: list[str] = []
    artifact = node.get("artifact")
    if artifact:
        lines.append(f"{node['dir']}/{artifact['path']}  sha256 {artifact['sha256'][:16]}…")
    _format(node, lines, indent=0)
    sources = raw_sources(node)
    lines.append("")
    lines.append(f"raw sources ({len(sources)}):")
    for item in sources:
        where = " ".join(
            f"{k}={item[k]}"
            for k in ("kind", "package", "version", "license", "revision")
            if item.get(k)
        )
        if item.get("files"):  # an imported release: every file pinned by its own sha256
            where += f" files={len(item['files'])}"
        pinned = (
            f"sha256 {item['sha256']}"
            if item.get("sha256")
            else f"generated, docs sha256 {item.get('docs_sha256')}"
        )
        lines.append(f"  {item.get('name')}: {where} {pinned}")
    return "\n".join(lines)


def _run_info(stage_dir: Path) -> dict[str, Any]:
    """The stage's volatile record (where the code came from); empty if absent or unreadable,
    since it is not hashed and an audit must not depend on it."""
    try:
        return json.loads((stage_dir / RUN_INFO_NAME).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}


def _format(node: dict[str, Any], lines: list[str], indent: int) -> None:
    pad = "  " * indent
    if "ref" in node:
        lines.append(f"{pad}(see {node['ref']} above)")
        return
    part = f"[{node['part']}]" if node.get("part") else ""
    code = str(node.get("code", {}).get("sha256") or "unrecorded")[:12]
    git = node.get("git", {})
    commit = (git.get("git_commit") or "unknown")[:10]
    dirty = " +diff" if git.get("uncommitted_diff_sha256") else ""
    lines.append(
        f"{pad}{node['stage']}{part}  {node['dir']}  manifest {node['manifest_sha256'][:12]}…"
        f"  config {node['config_hash'][:12]}…  code {code}… (git {commit}{dirty})"
    )
    for dotted, origin in sorted(node.get("config_origins", {}).items()):
        text = node.get("config_lines", {}).get(dotted)
        lines.append(f"{pad}  config {dotted} <- {origin}" + (f"  | {text}" if text else ""))
    for item in node.get("external", []):
        if item.get("files"):  # an imported release: repository, revision, each pinned file
            lines.append(
                f"{pad}  source {item.get('name')}: {item.get('kind')} revision "
                f"{item.get('revision')} ({len(item['files'])} files pinned)"
            )
            lines += [
                f"{pad}    {name} sha256 {sha[:16]}…" for name, sha in sorted(item["files"].items())
            ]
            continue
        lines.append(
            f"{pad}  source {item.get('name')}: {item.get('kind')} {item.get('package', '')} "
            f"{item.get('version', '')} sha256 {str(item.get('sha256'))[:16]}…"
        )
    for child in node.get("inputs", []):
        lines.append(f"{pad}  <- {child['name']}:")
        _format(child["node"], lines, indent + 2)
