"""The score side of ``openrecipe diff``: every score two runs share, the difference, and its
paired standard error.

Reads each run's ``runs/<recipe>/evaluate/<checkpoint>/``: ``scores.json`` for the values and
``samples_<task>.jsonl`` for the per-item scores (``openrecipe.evaluate.evaluate``), every file
checked against the evaluate manifest first, so a figure is never read from an altered file.
Items are joined by id (``openrecipe.evaluate.paired``). Per metric, the item field:

- ``exact_match``: ``correct``; ``acc`` / ``acc_norm``: the same field (multiple choice);
- ``thinking_tokens_mean``: ``thinking_tokens``;
- ``bits_per_byte``: ``loglikelihood`` and ``bytes`` (a ratio of sums, not a mean).

A difference whose items cannot be paired (no samples, too few common items) says why instead
of showing an error bar. The final training losses (one number per run, from
``results/<recipe>/metrics.json``) are listed apart: they have no items, so no standard error.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from openrecipe.errors import LineageError
from openrecipe.evaluate.paired import paired_mean, paired_ratio
from openrecipe.hashing import sha256_file
from openrecipe.manifest import read_manifest
from openrecipe.paths import find_project_root

_ITEM_FIELD = {
    "exact_match": "correct",
    "acc": "acc",
    "acc_norm": "acc_norm",
    "thinking_tokens_mean": "thinking_tokens",
}
_NOT_SCORES = ("n",)


def _checked(stage_dir: Path, rel: str) -> Path | None:
    """``stage_dir/rel`` if it exists, after checking it against the stage's manifest."""
    path = stage_dir / rel
    if not path.is_file():
        return None
    listed = read_manifest(stage_dir).get("outputs", {}).get(rel)
    if listed is None or sha256_file(path) != listed["sha256"]:
        raise LineageError(f"diff: {path}: does not match {stage_dir / 'manifest.json'}; altered")
    return path


def evaluations(run: Path) -> dict[str, Path]:
    """{checkpoint: evaluate stage dir} of a run directory."""
    root = run / "evaluate"
    if not root.is_dir():
        return {}
    return {d.name: d for d in sorted(root.iterdir()) if (d / "manifest.json").is_file()}


def _scores(stage_dir: Path) -> dict[str, dict[str, float]]:
    path = _checked(stage_dir, "scores.json")
    return json.loads(path.read_text(encoding="utf-8")) if path else {}


def _items(stage_dir: Path, task: str) -> list[dict[str, Any]] | None:
    path = _checked(stage_dir, f"samples_{task}.jsonl")
    if path is None:
        return None
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _paired(
    metric: str, rows_a: list[dict[str, Any]] | None, rows_b: list[dict[str, Any]] | None
) -> tuple[dict[str, Any] | None, str | None]:
    """(paired result, None) or (None, why not)."""
    if rows_a is None or rows_b is None:
        return None, "no per-item samples"
    if metric == "bits_per_byte":

        def ratio_items(rows: list[dict[str, Any]]) -> dict[str, tuple[float, float]]:
            return {
                str(r["id"]): (-float(r["loglikelihood"]) / math.log(2), float(r["bytes"]))
                for r in rows
                if "loglikelihood" in r and "bytes" in r
            }

        result = paired_ratio(ratio_items(rows_a), ratio_items(rows_b))
    elif metric in _ITEM_FIELD:
        field = _ITEM_FIELD[metric]

        def values(rows: list[dict[str, Any]]) -> dict[str, float]:
            return {str(r["id"]): float(r[field]) for r in rows if field in r}

        result = paired_mean(values(rows_a), values(rows_b))
    else:
        return None, f"no per-item field for metric {metric!r}"
    return (result, None) if result is not None else (None, "fewer than 2 common items")


def _metric_keys(scores: dict[str, dict[str, Any]]) -> set[tuple[str, str]]:
    return {
        (task, metric)
        for task, metrics in scores.items()
        for metric, value in metrics.items()
        if not metric.endswith("_stderr")
        and metric not in _NOT_SCORES
        and isinstance(value, int | float)
        and not isinstance(value, bool)
    }


def score_differences(run_a: Path, run_b: Path) -> list[dict[str, Any]]:
    """One row per (checkpoint, task, metric) either run scored: a, b, delta and ``paired``
    (difference over the common items, its paired standard error, z, n) or ``unpaired`` (why)."""
    evals_a, evals_b = evaluations(run_a), evaluations(run_b)
    rows = []
    for checkpoint in sorted(set(evals_a) | set(evals_b)):
        scores_a = _scores(evals_a[checkpoint]) if checkpoint in evals_a else {}
        scores_b = _scores(evals_b[checkpoint]) if checkpoint in evals_b else {}
        for task, metric in sorted(_metric_keys(scores_a) | _metric_keys(scores_b)):
            a = scores_a.get(task, {}).get(metric)
            b = scores_b.get(task, {}).get(metric)
            row: dict[str, Any] = {
                "metric": f"{checkpoint}/{task}/{metric}",
                "a": a,
                "b": b,
                "delta": b - a if a is not None and b is not None else None,
            }
            if row["delta"] is None:
                row["paired"], row["unpaired"] = None, "only in " + ("A" if b is None else "B")
            else:
                row["paired"], row["unpaired"] = _paired(
                    metric, _items(evals_a[checkpoint], task), _items(evals_b[checkpoint], task)
                )
            rows.append(row)
    return rows


def training_differences(run_a: Path, run_b: Path) -> list[dict[str, Any]]:
    """Final training loss per stage from each run's ``results/<recipe>/metrics.json``."""

    def losses(run: Path) -> dict[str, float]:
        path = find_project_root(run) / "results" / run.resolve().name / "metrics.json"
        if not path.is_file():
            return {}
        value = json.loads(path.read_text(encoding="utf-8")).get("final_loss", {})
        return {k: v for k, v in value.items() if isinstance(v, int | float)}

    a, b = losses(run_a), losses(run_b)
    return [{"stage": key, "a": a.get(key), "b": b.get(key)} for key in sorted(set(a) | set(b))]


def _fmt(value: Any) -> str:
    return "–" if value is None else f"{value:.6g}"


def format_scores(rows: list[dict[str, Any]], training: list[dict[str, Any]]) -> list[str]:
    lines = ["scores (B - A, paired standard error over the items both runs scored):"]
    if not rows:
        lines.append("  no evaluate stage in either run")
    for row in rows:
        text = f"  {row['metric']}: {_fmt(row['a'])} -> {_fmt(row['b'])}"
        pair = row["paired"]
        if pair is not None:
            z = f", z {pair['z']:+.2f}" if pair["z"] is not None else ""
            text += (
                f"  {row['delta']:+.6g} ± {pair['paired_stderr']:.4g} (paired SE, n {pair['n']}{z})"
            )
        elif row["delta"] is not None:
            text += f"  {row['delta']:+.6g} (no paired SE: {row['unpaired']})"
        else:
            text += f"  ({row['unpaired']})"
        lines.append(text)
    if training:
        lines.append("final training loss (one value per run, so no standard error):")
        lines += [f"  {r['stage']}: {_fmt(r['a'])} -> {_fmt(r['b'])}" for r in training]
    return lines
