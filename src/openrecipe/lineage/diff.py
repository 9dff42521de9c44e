"""``openrecipe diff <run A> <run B>``: which stages differ, why, and what it did to the scores.

A stage differs when its manifest hash differs. The reasons come from the manifests alone, in
the order that explains a rerun: its config view (the dotted keys whose value changed), its
inputs (upstream stages whose manifest changed: the change came from upstream), its code
identity (which modules, package data or package versions changed). The effect is the difference of
every score the two runs' evaluate stages wrote, each with its paired standard error over the
items both scored (``openrecipe.lineage.scores``); the runs may be of different recipes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from openrecipe.codeid import changed_parts
from openrecipe.errors import LineageError
from openrecipe.lineage.scores import format_scores, score_differences, training_differences
from openrecipe.lineage.verify import stage_dirs
from openrecipe.lineage.walk import closure
from openrecipe.paths import find_project_root


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted leaf paths of nested dicts (lists are leaves: a list value changes as a whole)."""
    if isinstance(obj, dict) and obj:
        out: dict[str, Any] = {}
        for key, value in obj.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: obj}


def changed_keys(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    flat_a, flat_b = flatten(a), flatten(b)
    return [
        {"key": key, "a": flat_a.get(key), "b": flat_b.get(key)}
        for key in sorted(set(flat_a) | set(flat_b))
        if flat_a.get(key) != flat_b.get(key)
    ]


def _stages(run: Path) -> dict[str, dict[str, Any]]:
    """Manifests of a run's stages keyed by ``stage[part]``: the run's own, its results, and
    every stage upstream of them (raw sources), each upstream opened by the manifest hash its
    consumer recorded (``walk.closure``), so a run whose upstream was since replaced is refused."""
    run = run.resolve()
    project = find_project_root(run)
    dirs = list(stage_dirs(run))
    if (project / "results" / run.name / "manifest.json").is_file():
        dirs.append(project / "results" / run.name)
    found = {}
    for manifest in closure(project, dirs).values():
        key = manifest["stage"] + (f"[{manifest['part']}]" if manifest.get("part") else "")
        found[key] = manifest
    return found


def scores(run: Path) -> dict[str, float]:
    """Numeric leaves of ``results/<recipe>/metrics.json`` ``scores`` and ``final_loss``."""
    # the run's own name (runs/<recipe>), not its target's: a symlinked run reads its results
    path = find_project_root(run) / "results" / run.absolute().name / "metrics.json"
    if not path.is_file():
        return {}
    metrics = json.loads(path.read_text(encoding="utf-8"))
    flat = flatten({k: metrics.get(k, {}) for k in ("scores", "final_loss")})
    return {k: v for k, v in flat.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def diff_runs(a: Path, b: Path) -> dict[str, Any]:
    stages_a, stages_b = _stages(a), _stages(b)
    if not stages_a or not stages_b:
        raise LineageError(f"diff: no stage manifests under {a if not stages_a else b}")
    stages = []
    for key in sorted(set(stages_a) | set(stages_b)):
        if key not in stages_a or key not in stages_b:
            stages.append({"stage": key, "status": "only in " + ("B" if key in stages_b else "A")})
            continue
        ma, mb = stages_a[key], stages_b[key]
        if ma["manifest_sha256"] == mb["manifest_sha256"]:
            continue
        inputs_a = {i["name"]: i.get("manifest_sha256") or i.get("sha256") for i in ma["inputs"]}
        inputs_b = {i["name"]: i.get("manifest_sha256") or i.get("sha256") for i in mb["inputs"]}
        outputs_a, outputs_b = ma["outputs"], mb["outputs"]
        stages.append(
            {
                "stage": key,
                "status": "differs",
                "config": changed_keys(ma["config_view"], mb["config_view"]),
                "inputs": sorted(
                    n for n in set(inputs_a) | set(inputs_b) if inputs_a.get(n) != inputs_b.get(n)
                ),
                "code": [
                    {"key": change}
                    for change in changed_parts(ma.get("code") or {}, mb.get("code") or {})
                ],
                "outputs_changed": sorted(
                    rel
                    for rel in set(outputs_a) | set(outputs_b)
                    if (outputs_a.get(rel) or {}).get("sha256")
                    != (outputs_b.get(rel) or {}).get("sha256")
                ),
                "summary": changed_keys(ma.get("summary", {}), mb.get("summary", {})),
            }
        )
    return {
        "a": str(a),
        "b": str(b),
        "stages": stages,
        "scores": score_differences(a, b),
        "training": training_differences(a, b),
    }


def format_diff(result: dict[str, Any]) -> str:
    lines = [f"diff {result['a']} -> {result['b']}"]
    if not result["stages"]:
        lines.append("  no stage differs (identical manifests)")
    for item in result["stages"]:
        if item["status"] != "differs":
            lines.append(f"  {item['stage']}: {item['status']}")
            continue
        reasons = []
        if item["config"]:
            reasons.append("config " + ", ".join(c["key"] for c in item["config"]))
        if item["inputs"]:
            reasons.append("inputs " + ", ".join(item["inputs"]))
        if item["code"]:
            reasons.append("code " + ", ".join(c["key"] for c in item["code"]))
        lines.append(
            f"  {item['stage']}: {'; '.join(reasons) or 'outputs only (nondeterminism?)'}"
            f"  [{len(item['outputs_changed'])} output file(s) changed]"
        )
        for change in item["config"]:
            lines.append(f"      {change['key']}: {change['a']!r} -> {change['b']!r}")
    lines += format_scores(result["scores"], result["training"])
    return "\n".join(lines)
