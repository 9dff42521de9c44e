"""A traced chain as W3C PROV (PROV-JSON), so standard provenance tools can read it.

Built with the maintained ``prov`` library (PROV-DM / PROV-JSON, https://www.w3.org/TR/prov-dm/)
rather than by hand, so the output is valid PROV by construction. The mapping:

- each stage run is an ``activity`` (stage, part, config hash, manifest hash, the recipe lines
  its config came from);
- each file a stage wrote is an ``entity`` with its sha256, ``wasGeneratedBy`` that activity; a
  downstream stage ``used`` the upstream files;
- each raw source package is an ``entity`` (kind, package, version, licence, sha256) that the
  acquire activity ``used``;
- the stage code identity (content hash of the code that ran, its package versions; the git
  commit from run_info.json when recorded) is a
  ``SoftwareAgent`` the activity ``wasAssociatedWith``.
"""

from __future__ import annotations

import json
from typing import Any

from prov.model import PROV_TYPE, ProvDocument

NS = "https://openrecipe.dev/ns/lineage#"


def _id(kind: str, text: str) -> str:
    """A qualified name in our namespace (PROV local parts may not hold spaces)."""
    return f"or:{kind}/{text.replace(' ', '_')}"


def to_prov(node: dict[str, Any]) -> ProvDocument:
    doc = ProvDocument()
    doc.add_namespace("or", NS)
    _add_stage(doc, node, {})
    artifact = node.get("artifact")
    if artifact:
        doc.entity(
            _id("file", f"{node['dir']}/{artifact['path']}"),
            {PROV_TYPE: "or:TracedArtifact", "or:sha256": artifact["sha256"]},
        )
    return doc


def _code_agent(doc: ProvDocument, code: dict[str, Any], git: dict[str, Any]) -> str:
    """The code that ran: its content address (the stage code identity) and, when the run
    recorded it, the commit it was checked out at."""
    digest = str(code.get("sha256") or "unrecorded")
    agent_id = _id("code", digest[:16])
    attributes = {PROV_TYPE: "prov:SoftwareAgent", "or:stage_code_sha256": digest}
    if code.get("python"):
        attributes["or:python"] = str(code["python"])
    if git.get("git_commit"):
        attributes["or:git_commit"] = git["git_commit"]
    if git.get("uncommitted_diff_sha256"):
        attributes["or:uncommitted_diff_sha256"] = git["uncommitted_diff_sha256"]
    for package, version in sorted(code.get("packages", {}).items()):
        attributes[f"or:package_{package}"] = str(version)
    doc.agent(agent_id, attributes)
    return agent_id


def _add_stage(doc: ProvDocument, node: dict[str, Any], seen: dict[str, dict[str, Any]]) -> str:
    """Declare one stage (once) and its outputs; ``seen`` maps a stage dir to its traced node,
    so a back-reference (``{"ref": dir}``, a stage reached twice) finds its outputs."""
    if "ref" in node:
        return _id("stage", node["ref"])
    activity_id = _id("stage", node["dir"])
    if node["dir"] in seen:
        return activity_id
    seen[node["dir"]] = node
    attributes: dict[str, Any] = {
        PROV_TYPE: "or:Stage",
        "or:stage": node["stage"],
        "or:config_hash": node["config_hash"],
        "or:manifest_sha256": node["manifest_sha256"],
    }
    if node.get("part"):
        attributes["or:part"] = node["part"]
    for dotted, origin in sorted(node.get("config_origins", {}).items()):
        attributes[f"or:config_origin_{dotted}"] = origin
    doc.activity(activity_id, other_attributes=attributes)
    doc.wasAssociatedWith(activity_id, _code_agent(doc, node.get("code", {}), node.get("git", {})))
    for rel, sha in sorted(node["outputs"].items()):
        entity_id = _id("file", f"{node['dir']}/{rel}")
        doc.entity(entity_id, {PROV_TYPE: "or:Artifact", "or:sha256": sha})
        doc.wasGeneratedBy(entity_id, activity_id)
    for item in node.get("external", []):
        source_id = _id("source", f"{item.get('name')}@{item.get('version')}")
        source_attrs = {PROV_TYPE: "or:RawSource"}
        spec = node.get("source_spec", {})
        for key in ("kind", "package", "version", "sha256", "uri"):
            if item.get(key) is not None:
                source_attrs[f"or:{key}"] = str(item[key])
        for key in ("license", "lang"):
            if spec.get(key) is not None:
                source_attrs[f"or:{key}"] = str(spec[key])
        doc.entity(source_id, source_attrs)
        doc.used(activity_id, source_id)
    for child in node.get("inputs", []):
        upstream = child["node"]
        _add_stage(doc, upstream, seen)
        upstream_dir = upstream.get("dir") or upstream["ref"]
        for rel in sorted(seen[upstream_dir]["outputs"]):
            doc.used(activity_id, _id("file", f"{upstream_dir}/{rel}"))
    return activity_id


def prov_json(node: dict[str, Any]) -> str:
    """PROV-JSON text, keys sorted so the same chain always gives the same bytes."""
    return json.dumps(json.loads(to_prov(node).serialize(format="json")), indent=2, sort_keys=True)
