"""Our scores beside the release's: ``scores.md`` and ``scores.png`` for the report stage.

For every (task, metric) a checkpoint scored, one row: each checkpoint's value (± lm-eval's
stderr), the recipe's expected envelope (``release.envelope``, for proxies) with every value
outside it flagged, the release's published score with its source (``release.published_scores``,
matched by task name), the decontamination finding for the task's eval set (when a ``decontam``
stage output is among the report's inputs), and the pins that make the numbers comparable (lm-eval
version, task config, chat template and dataset hashes from each evaluate manifest).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from openrecipe.evaluate import benchmarks
from openrecipe.evaluate.benchmarks import BENCHMARKS

CHECKPOINT_ORDER = {"base": 0, "sft": 1, "rl": 2}
_HIDDEN = ("n",)  # per-task counts: shown in the n column, not as a metric row
LOWER_IS_BETTER = ("bits_per_byte",)


def ordered_checkpoints(scores: dict[str, Any]) -> list[str]:
    return sorted(scores, key=lambda c: (CHECKPOINT_ORDER.get(c, 9), c))


def metric_rows(scores: dict[str, dict[str, dict[str, float]]]) -> list[tuple[str, str]]:
    """Sorted (task, metric) pairs any checkpoint scored, without stderr and counts."""
    return sorted(
        {
            (task, metric)
            for per_task in scores.values()
            for task, metrics in per_task.items()
            for metric in metrics
            if not metric.endswith("_stderr") and metric not in _HIDDEN
        }
    )


def outside(envelope: list[dict[str, Any]], task: str, metric: str, checkpoint: str, value: float):
    """The envelope entry ``value`` falls outside of, or None (within, or no envelope)."""
    for entry in envelope:
        if entry["task"] != task or entry["metric"] != metric:
            continue
        if entry.get("checkpoint", checkpoint) != checkpoint:
            continue
        if not entry["low"] <= value <= entry["high"]:
            return entry
    return None


def eval_set_of(task: str) -> str:
    """The decontam eval-set name holding a task's items (see data/stages/decontam.py)."""
    if task in BENCHMARKS:
        return BENCHMARKS[task].data
    return "reasoning" if task.startswith("openrecipe_reasoning") else task


def decontam_findings(decontam: Path | None, tasks: list[str]) -> dict[str, str]:
    """{task: "k of N items matched"} from the decontam stage's ``eval_items.json`` (its per
    eval set report); {} when there is no decontam output. Items of the eval_data sets may be
    indexed under their own set name or as ``eval_data:<set>:<n>``."""
    if decontam is None or not (decontam / "eval_items.json").is_file():
        return {}
    report = json.loads((decontam / "eval_items.json").read_text(encoding="utf-8"))
    findings = {}
    for task in tasks:
        name = eval_set_of(task)
        # The decontam stage names each benchmark set after its input, "eval_data.<set>".
        name = next((n for n in (name, f"eval_data.{name}") if n in report), name)
        if name in report:
            entry = report[name]
            matched, items = len(entry["matched"]), entry["items"]
        elif "eval_data" in report:
            prefix = f"eval_data:{name}:"
            matched = sum(1 for i in report["eval_data"]["matched"] if i.startswith(prefix))
            items = None
        else:
            findings[task] = "not checked"
            continue
        findings[task] = f"{matched} of {items} items matched" if items else f"{matched} matched"
    return findings


def _cell(metrics: dict[str, float], metric: str) -> str:
    value = metrics.get(metric)
    if not isinstance(value, int | float):
        return "–"
    stderr = metrics.get(f"{metric}_stderr")
    text = f"{value:.4f}"
    return text + (f" ± {stderr:.4f}" if isinstance(stderr, int | float) and stderr else "")


def scores_md(
    recipe: str,
    release: dict[str, Any],
    scores: dict[str, dict[str, dict[str, float]]],
    pins: dict[str, dict[str, Any]],
    decontam: dict[str, str],
) -> str:
    checkpoints = ordered_checkpoints(scores)
    envelope = release.get("envelope", [])
    published: dict[str, list[dict[str, Any]]] = {}
    for row in release.get("published_scores", []):
        published.setdefault(row["task"], []).append(row)
    lines = [f"# {recipe}: scores against {release['name']}", ""]
    lines += [
        "Values from each checkpoint's `scores.json` (lm-eval, ± its stderr). **OUTSIDE** marks a",
        "value outside the recipe's expected envelope (`release.envelope`). Published values are",
        "the release's own, as the recipe quotes them (task name matched; settings may differ).",
        "format: how the answer is scored (mc = option letter, rc = cloze over the answer texts,",
        "gen = generated and graded, bpb = bits per byte of the reference); split: the items' source.",
        "",
    ]
    header = [
        *("task", "metric", "format", "split"),
        *checkpoints,
        *("n", "envelope", "published", "decontamination"),
    ]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    flagged = 0
    for task, metric in metric_rows(scores):
        cells = []
        for checkpoint in checkpoints:
            metrics = scores[checkpoint].get(task, {})
            cell = _cell(metrics, metric)
            value = metrics.get(metric)
            if isinstance(value, int | float) and outside(
                envelope, task, metric, checkpoint, value
            ):
                cell += " **OUTSIDE**"
                flagged += 1
            cells.append(cell)
        counts = sorted({str(scores[c].get(task, {}).get("n", "–")) for c in checkpoints})
        ranges = [
            f"[{e['low']:g}, {e['high']:g}]"
            + (f" ({e['checkpoint']})" if "checkpoint" in e else "")
            for e in envelope
            if e["task"] == task and e["metric"] == metric
        ]
        quoted = [
            f"{p['value']:g} ({p['source']}{', ' + p['setting'] if p.get('setting') else ''})"
            for p in published.get(task, [])
        ]
        answer_format, split = benchmarks.variant(task)
        lines.append(
            f"| {task} | {metric} | {answer_format} | {split} | "
            + " | ".join(cells)
            + f" | {'/'.join(counts)} | {'; '.join(ranges) or '–'} | {'; '.join(quoted) or '–'}"
            + f" | {decontam.get(task, '–')} |"
        )
    lines += ["", f"{flagged} value(s) outside the envelope.", ""]
    unmatched = sorted(set(published) - {t for t, _ in metric_rows(scores)})
    if unmatched:
        lines += ["Published scores with no task of ours: " + ", ".join(unmatched), ""]
    lines += ["![scores](scores.png)", "", "## Pins", ""]
    lines += [
        "| checkpoint | lm-eval | chat template | task configs | datasets |",
        "|---|---|---|---|---|",
    ]
    for checkpoint in checkpoints:
        pin = pins.get(checkpoint, {})
        configs = pin.get("task_config_sha256", {})
        datasets = {f for files in pin.get("dataset_sha256", {}).values() for f in files.items()}
        lines.append(
            f"| {checkpoint} | {pin.get('lm_eval_version', '?')} | "
            f"`{str(pin.get('chat_template_sha256', '?'))[:12]}` | "
            + ", ".join(f"{t} `{h[:8]}`" for t, h in sorted(configs.items()))
            + " | "
            + (", ".join(f"{n} `{h[:8]}`" for n, h in sorted(datasets)) or "–")
            + " |"
        )
    return "\n".join(lines) + "\n"


def score_figure(
    scores: dict[str, dict[str, dict[str, float]]], envelope: list[dict[str, Any]]
) -> Any:
    """Bars per task and checkpoint: accuracies (0-1) left, bits per byte right; each bar with
    its standard error (lm-eval's ``<metric>_stderr``) as an error bar, envelopes as grey spans.
    A metric without a recorded standard error (bits per byte: a ratio, scored without one) is
    drawn without a bar and named under its panel, so no bar looks more certain than it is."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    checkpoints = ordered_checkpoints(scores)
    rows = metric_rows(scores)
    panels = [
        ("accuracy", [r for r in rows if r[1] in ("acc", "acc_norm", "exact_match")]),
        ("bits per byte (lower is better)", [r for r in rows if r[1] in LOWER_IS_BETTER]),
    ]
    panels = [p for p in panels if p[1]] or [("no scores", [])]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 3.8), squeeze=False)
    width = 0.8 / max(1, len(checkpoints))
    for ax, (title, pairs) in zip(axes[0], panels, strict=True):
        no_stderr: set[str] = set()
        for index, (task, metric) in enumerate(pairs):
            for k, checkpoint in enumerate(checkpoints):
                metrics = scores[checkpoint].get(task, {})
                value = metrics.get(metric)
                if not isinstance(value, int | float):
                    continue
                stderr = metrics.get(f"{metric}_stderr")
                if not isinstance(stderr, int | float):
                    stderr = None
                    no_stderr.add(metric)
                ax.bar(
                    index - 0.4 + width * (k + 0.5),
                    value,
                    width,
                    yerr=stderr,
                    capsize=2,
                    error_kw={"lw": 0.8},
                    color=f"C{k}",
                    label=checkpoint if index == 0 else None,
                )
            for entry in envelope:
                if entry["task"] == task and entry["metric"] == metric:
                    ax.fill_between(
                        [index - 0.45, index + 0.45],
                        entry["low"],
                        entry["high"],
                        color="grey",
                        alpha=0.25,
                        lw=0,
                    )
        ax.set_xticks(range(len(pairs)), [f"{t}\n{m}" for t, m in pairs], rotation=60, fontsize=7)
        drawn = {m for _, m in pairs} - no_stderr
        missing = f"no standard error recorded for {', '.join(sorted(no_stderr))}"
        caption = "error bars: ± 1 standard error" if drawn else missing
        if drawn and no_stderr:
            caption += f"; {missing}"
        ax.set_title(f"{title}\n({caption})" if pairs else title, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        if pairs:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_scores(
    scores: dict[str, dict[str, dict[str, float]]], envelope: list[dict[str, Any]], path: Path
) -> None:
    """``score_figure`` as a PNG, written without metadata so identical runs give identical
    bytes."""
    import matplotlib.pyplot as plt

    fig = score_figure(scores, envelope)
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def write_scores(
    out: Path,
    recipe: str,
    release: dict[str, Any],
    scores: dict[str, dict[str, dict[str, float]]],
    pins: dict[str, dict[str, Any]],
    decontam_dir: Path | None,
) -> dict[str, Any]:
    """Write ``scores.md`` and ``scores.png`` into ``out``; returns the envelope verdict."""
    tasks = sorted({t for per_task in scores.values() for t in per_task})
    findings = decontam_findings(decontam_dir, tasks)
    text = scores_md(recipe, release, scores, pins, findings)
    (out / "scores.md").write_text(text, encoding="utf-8")
    plot_scores(scores, release.get("envelope", []), out / "scores.png")
    outside_envelope = sorted(
        f"{c}:{t}:{m}"
        for c in scores
        for t, m in metric_rows(scores)
        if isinstance(scores[c].get(t, {}).get(m), int | float)
        and outside(release.get("envelope", []), t, m, c, scores[c][t][m])
    )
    return {"outside_envelope": outside_envelope}
