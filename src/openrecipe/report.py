"""The ``report`` stage: ``results/<recipe>/`` from every stage's manifest and metrics.

Writes ``metrics.json`` (the numbers a reader or a release lock compares), ``loss_curve.png``
(pretraining, SFT and RL curves), ``summary.md``, and the data card ``data_card.md`` with the
blend plot ``blend.png`` (``openrecipe.data.card``). Reads only verified stage directories, so
every figure here traces back through the manifests to the raw bytes.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from openrecipe.codeid import uncommitted_code
from openrecipe.data.card import data_card, load_accounting, plot_blend
from openrecipe.evaluate.benchmarks import variant
from openrecipe.evaluate.compare import write_scores
from openrecipe.evaluate.reasoning_report import write_reasoning
from openrecipe.manifest import read_manifest, write_json_atomic
from openrecipe.registry import checkpoint_stages
from openrecipe.seeds import seed_of_checkpoint
from openrecipe.stage import StageContext
from openrecipe.stage_config import decode_view, optional_key, plain, view_field

TRAINING_STAGES = tuple(checkpoint_stages().values())


@dataclass(frozen=True)
class Citation:
    title: str
    url: str


@dataclass(frozen=True)
class PublishedScore:
    """A score the release's authors published (``setting``: their few-shot/format note)."""

    task: str
    value: float
    source: str
    setting: str | None = optional_key()


@dataclass(frozen=True)
class Envelope:
    """The expected range of a proxy's own score (one checkpoint, or every evaluated one)."""

    task: str
    metric: str
    low: float
    high: float
    checkpoint: Literal["base", "sft", "rl"] | None = optional_key()


@dataclass(frozen=True)
class Release:
    """``release``: the model the recipe reproduces, its published scores and envelopes."""

    name: str
    scale: Literal["toy", "proxy", "full"]
    citations: tuple[Citation, ...]
    published_scores: tuple[PublishedScore, ...]
    envelope: tuple[Envelope, ...]
    unverified: tuple[str, ...]
    description: str | None = optional_key()


@dataclass(frozen=True)
class ReportConfig:
    """The report stage's view, typed: the recipe's name and its release."""

    name: str = view_field("name")
    release: Release = view_field("release")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [
        json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
    ]


def _extra_seed(checkpoint: str) -> bool:
    """An evaluation of alignment seed k > 0 (``rl_seed2``): the score tables show seed 0's."""
    found = seed_of_checkpoint(checkpoint)
    return found is not None and found[1] != 0


def _collect(ctx: StageContext) -> dict[str, Any]:
    stages: dict[str, Any] = {}
    curves: dict[str, list[dict[str, Any]]] = {}
    scores: dict[str, Any] = {}
    for name, directory in sorted(ctx.inputs.items()):
        manifest = read_manifest(directory)
        if name.startswith("eval_"):
            checkpoint = name.removeprefix("eval_")
            if _extra_seed(checkpoint):  # reasoning.md's per-seed section reads these
                continue
            scores_file = directory / "scores.json"
            scores[checkpoint] = (
                json.loads(scores_file.read_text(encoding="utf-8")) if scores_file.is_file() else {}
            )
            continue
        stages[name] = {
            "manifest_sha256": manifest["manifest_sha256"],
            "summary": manifest.get("summary", {}),
        }
        if name in TRAINING_STAGES:
            curves[name] = [
                row for row in _read_jsonl(directory / "metrics.jsonl") if "loss" in row
            ]
    return {"stages": stages, "curves": curves, "scores": scores}


def _plot(curves: dict[str, list[dict[str, Any]]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = [s for s in TRAINING_STAGES if curves.get(s)]
    fig, axes = plt.subplots(
        1, max(1, len(stages)), figsize=(4.2 * max(1, len(stages)), 3.4), squeeze=False
    )
    for ax, stage in zip(axes[0], stages, strict=False):
        rows = curves[stage]
        ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], lw=1.4)
        ax.set_title(stage)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    # No "Software"/date metadata: the PNG must be byte-identical across identical runs.
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def _summary_md(config: ReportConfig, collected: dict[str, Any]) -> str:
    release = config.release
    lines = [f"# {config.name}: {release.name}", ""]
    if release.description:
        lines += [release.description, ""]
    lines += ["## Stages", "", "| stage | manifest | summary |", "|---|---|---|"]
    for name, info in collected["stages"].items():
        summary = info["summary"]
        brief = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in summary.items()
            if isinstance(v, int | float | str) and not isinstance(v, bool)
        )
        lines.append(f"| {name} | `{info['manifest_sha256'][:12]}` | {brief[:300]} |")
    lines += ["", "## Training loss", ""]
    for stage, rows in collected["curves"].items():
        if rows:
            lines.append(
                f"- {stage}: {rows[0]['loss']:.4f} (step {rows[0]['step']}) -> {rows[-1]['loss']:.4f} (step {rows[-1]['step']})"
            )
    lines += ["", "![loss curves](loss_curve.png)", "", "## Evaluation", ""]
    lines += ["Against the release, with pins and decontamination: [scores.md](scores.md).", ""]
    lines += ["Reasoning on/off, thinking budgets, GRPO curve: [reasoning.md](reasoning.md).", ""]
    task_metrics = sorted(
        {(t, m) for s in collected["scores"].values() for t, ms in s.items() for m in ms}
    )
    if task_metrics:
        order = {"base": 0, "sft": 1, "rl": 2}
        checkpoints = sorted(collected["scores"], key=lambda c: (order.get(c, 9), c))
        lines.append("| task | metric | format | split | " + " | ".join(checkpoints) + " |")
        lines.append("|---|---|---|---|" + "---|" * len(checkpoints))
        for task, metric in task_metrics:
            values = []
            for checkpoint in checkpoints:
                value = collected["scores"][checkpoint].get(task, {}).get(metric)
                values.append(f"{value:.4f}" if isinstance(value, float) else str(value))
            answer_format, split = variant(task)  # which formulation and split it measured
            lines.append(
                f"| {task} | {metric} | {answer_format} | {split} | " + " | ".join(values) + " |"
            )
    if release.published_scores:
        lines += [
            "",
            "## Published scores of the release",
            "",
            "| task | value | source |",
            "|---|---|---|",
        ]
        for row in release.published_scores:
            lines.append(f"| {row.task} | {row.value} | {row.source} |")
    lines += [
        "",
        "Trace any figure: `openrecipe trace results/" + config.name + "/metrics.json`.",
        "",
    ]
    return "\n".join(lines)


def _reproducibility() -> dict[str, Any]:
    """Whether a clean checkout of a commit can remake these results. A report made from a
    working tree with uncommitted code is marked, loudly, in metrics.json and summary.md, and
    ``openrecipe lock`` refuses to lock it; committed results must come from a commit."""
    reason = uncommitted_code()
    if reason:
        print(f"report: WARNING: results NOT reproducible from a commit: {reason}", file=sys.stderr)
    return {"reproducible": reason is None, "reason": reason}


def run(ctx: StageContext) -> dict[str, Any]:
    config = decode_view(ReportConfig, ctx.config, ctx.stage)
    collected = _collect(ctx)
    reproducibility = _reproducibility()
    metrics = {
        "reproducibility": reproducibility,
        "recipe": config.name,
        "release": config.release.name,
        "scores": collected["scores"],
        "final_loss": {s: rows[-1]["loss"] for s, rows in collected["curves"].items() if rows},
        "stages": {name: info["summary"] for name, info in collected["stages"].items()},
    }
    # reasoning.md + rl_curve.png: reasoning on/off, accuracy per thinking token, budgets, GRPO
    metrics["reasoning"] = write_reasoning(ctx.out, config.name, ctx.inputs)
    write_json_atomic(ctx.out / "metrics.json", metrics)
    _plot(collected["curves"], ctx.out / "loss_curve.png", f"{config.name}: training loss")
    summary = _summary_md(config, collected)
    if not reproducibility["reproducible"]:
        summary = (
            f"> **NOT REPRODUCIBLE FROM A COMMIT**: {reproducibility['reason']}. "
            "Commit the code and rerun before publishing these results.\n\n" + summary
        )
    (ctx.out / "summary.md").write_text(summary, encoding="utf-8")
    if "curate" in ctx.inputs:
        card, figures = data_card(config.name, ctx.inputs)
        (ctx.out / "data_card.md").write_text(card, encoding="utf-8")
        # The numbers behind the card, with every curation stage's ledger, so the arithmetic
        # can be rechecked from results/ alone (tests/unit/test_card_results.py does).
        chain = load_accounting(ctx.inputs)
        write_json_atomic(
            ctx.out / "data_card.json",
            {"accounting": [{"stage": s, **acc} for s, acc in chain], "figures": figures},
        )
    if "pack" in ctx.inputs:
        plot_blend(
            ctx.inputs["pack"] / "shares.json", ctx.out / "blend.png", f"{config.name}: blend"
        )
    # scores.md + scores.png: ours beside the release's, envelope flags, pins, decontamination.
    pins = {
        name.removeprefix("eval_"): read_manifest(directory).get("summary", {})
        for name, directory in ctx.inputs.items()
        if name.startswith("eval_") and not _extra_seed(name.removeprefix("eval_"))
    }
    verdict = write_scores(
        ctx.out,
        config.name,
        plain(config.release),
        collected["scores"],
        pins,
        ctx.inputs.get("decontam"),
    )
    return {
        "scores": collected["scores"],
        "final_loss": metrics["final_loss"],
        "reproducible": reproducibility["reproducible"],
        **verdict,
    }
