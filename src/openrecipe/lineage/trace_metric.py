"""``openrecipe trace RUN --metric [CHECKPOINT/]TASK/METRIC``: one score back to its data.

A score is traced through what the evaluate stage recorded, never by rereading the model:

1. the value, its standard error and item count, from the evaluate manifest's summary (the
   hashed record), checked against ``scores.json`` and with the per-item ``samples_<task>.jsonl``
   rehashed against the manifest, so a figure is never read from an altered file;
2. the checkpoint scored (the ``model`` input: its stage directory and weight hashes);
3. the task's data: the files and hashes the stage pinned for that task (``dataset_sha256``, or
   ``heldout_sha256`` for openrecipe's own tasks), each matched to the upstream stage that wrote
   it;
4. the full stage chain of that evaluate directory down to the raw packages (``trace``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from openrecipe.errors import LineageError, StageInputError
from openrecipe.hashing import sha256_file
from openrecipe.lineage.scores import evaluations
from openrecipe.lineage.trace import format_tree, trace
from openrecipe.manifest import read_manifest

_SPEC = re.compile(r"^(?:([A-Za-z0-9_][A-Za-z0-9_.-]*)/)?([A-Za-z0-9_]+)/([A-Za-z0-9_]+)$")


def parse_metric(spec: str) -> tuple[str | None, str, str]:
    """``[CHECKPOINT/]TASK/METRIC`` as (checkpoint or None, task, metric)."""
    match = _SPEC.match(spec)
    if not match:
        raise LineageError(
            f"--metric {spec!r}: expected [CHECKPOINT/]TASK/METRIC, e.g. sft/arc_easy/acc"
        )
    return match.group(1), match.group(2), match.group(3)


def _checked_output(stage_dir: Path, manifest: dict[str, Any], rel: str) -> dict[str, str] | None:
    """{path, sha256} of an output, rehashed against the manifest; None if not listed."""
    listed = manifest["outputs"].get(rel)
    if listed is None:
        return None
    path = stage_dir / rel
    if not path.is_file() or sha256_file(path) != listed["sha256"]:
        raise LineageError(f"{path}: missing or does not match {stage_dir}/manifest.json; altered")
    return {"path": rel, "sha256": listed["sha256"]}


def _producers(manifest: dict[str, Any], sha: str) -> list[str]:
    """The upstream files (``stage path/file``) the evaluate stage read with hash ``sha``."""
    return [
        f"{item['path']}/{name}"
        for item in manifest.get("inputs", [])
        if "stage" in item
        for name, digest in item.get("files", {}).items()
        if digest == sha
    ]


def _task_data(manifest: dict[str, Any], task: str) -> list[dict[str, Any]]:
    summary = manifest.get("summary", {})
    pinned = dict(summary.get("dataset_sha256", {}).get(task, {}))
    if not pinned and summary.get("heldout_sha256"):  # openrecipe's own reasoning tasks
        pinned = {"heldout": summary["heldout_sha256"]}
    return [
        {"file": name, "sha256": sha, "read_from": _producers(manifest, sha)}
        for name, sha in sorted(pinned.items())
    ]


def _checkpoint(manifest: dict[str, Any]) -> dict[str, Any] | None:
    for item in manifest.get("inputs", []):
        if item.get("name") == "model" and "stage" in item:
            weights = {k: v for k, v in item["files"].items() if k.endswith(".safetensors")}
            return {
                "stage": item["stage"],
                "dir": item["path"],
                "manifest_sha256": item["manifest_sha256"],
                "weights": weights,
            }
    return None


def _one(stage_dir: Path, checkpoint: str, task: str, metric: str) -> dict[str, Any] | None:
    try:
        manifest = read_manifest(stage_dir)
    except StageInputError as exc:
        raise LineageError(str(exc)) from exc
    recorded = manifest.get("summary", {}).get("scores", {}).get(task, {})
    if metric not in recorded:
        return None
    scores_file = _checked_output(stage_dir, manifest, "scores.json")
    if scores_file is not None:
        on_disk = json.loads((stage_dir / "scores.json").read_text(encoding="utf-8"))
        if on_disk.get(task, {}).get(metric) != recorded[metric]:
            raise LineageError(f"{stage_dir}/scores.json: {task}/{metric} differs from manifest")
    chain = trace(stage_dir)
    return {
        "metric": f"{checkpoint}/{task}/{metric}",
        "value": recorded[metric],
        "stderr": recorded.get(f"{metric}_stderr"),
        "n": recorded.get("n"),
        "evaluate": {
            "dir": chain["dir"],
            "manifest_sha256": manifest["manifest_sha256"],
            "scores": scores_file,
            "samples": _checked_output(stage_dir, manifest, f"samples_{task}.jsonl"),
        },
        "checkpoint": _checkpoint(manifest),
        "data": _task_data(manifest, task),
        "chain": chain,
    }


def trace_metric(run: Path, spec: str) -> list[dict[str, Any]]:
    """One traced record per checkpoint that scored ``spec`` (one, if it names the checkpoint)."""
    checkpoint, task, metric = parse_metric(spec)
    evals = evaluations(run)
    if not evals:
        raise LineageError(f"trace: {run}: no evaluate/<checkpoint>/ stage (give a run directory)")
    if checkpoint is not None and checkpoint not in evals:
        raise LineageError(
            f"--metric {spec}: no checkpoint {checkpoint!r} in {run}/evaluate "
            f"(checkpoints: {', '.join(sorted(evals))})"
        )
    chosen = [checkpoint] if checkpoint else sorted(evals)
    found = [r for c in chosen if (r := _one(evals[c], c, task, metric)) is not None]
    if not found:
        known = sorted(
            f"{t}/{m}"
            for c in chosen
            for t, ms in read_manifest(evals[c]).get("summary", {}).get("scores", {}).items()
            for m in ms
            if not m.endswith("_stderr") and m != "n"
        )
        raise LineageError(
            f"--metric {spec}: not scored in {run}; scored: {', '.join(sorted(set(known)))}"
        )
    return found


def format_metric(records: list[dict[str, Any]]) -> str:
    lines: list[str] = []
    for record in records:
        stderr = f" ± {record['stderr']:.4g} (SE)" if record["stderr"] is not None else ""
        n = f", n {record['n']}" if record["n"] is not None else ""
        lines.append(f"{record['metric']} = {record['value']:.6g}{stderr}{n}")
        ev = record["evaluate"]
        lines.append(f"  evaluate  {ev['dir']}  manifest {ev['manifest_sha256'][:12]}…")
        for key in ("scores", "samples"):
            if ev[key]:
                lines.append(f"    {ev[key]['path']}  sha256 {ev[key]['sha256'][:16]}…")
        ckpt = record["checkpoint"]
        if ckpt:
            lines.append(
                f"  checkpoint  {ckpt['stage']}  {ckpt['dir']}  manifest "
                f"{ckpt['manifest_sha256'][:12]}…"
            )
            lines += [f"    {k}  sha256 {v[:16]}…" for k, v in sorted(ckpt["weights"].items())]
        for item in record["data"]:
            where = ", ".join(item["read_from"]) or "not among the stage's inputs"
            lines.append(f"  data  {item['file']}  sha256 {item['sha256'][:16]}…  <- {where}")
        lines.append("  chain:")
        lines += [
            f"    {line}" if line else "" for line in format_tree(record["chain"]).split("\n")
        ]
        lines.append("")
    return "\n".join(lines).rstrip("\n")
