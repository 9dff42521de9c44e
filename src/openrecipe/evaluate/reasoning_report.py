"""The reasoning part of ``results/<recipe>/``: ``reasoning.md`` and ``rl_curve.png``.

From the evaluate stages' ``scores.json`` (keys of ``evaluate.run._runs``: the held-out task in
its primary mode, ``__reasoning_off`` and ``__budget_<N>``) and the rl stage's
``metrics.jsonl``: held-out accuracy and mean thinking tokens per checkpoint with reasoning on and
off, accuracy per thinking token (the token-efficiency figure: accuracy / mean thinking tokens,
undefined when nothing was thought), the thinking-budget table, and reward, accuracy and thinking
length over the GRPO steps.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from openrecipe.evaluate.run import HELDOUT_TASK
from openrecipe.manifest import read_manifest

CHECKPOINT_ORDER = ("base", "sft", "rl")
_OFF = f"{HELDOUT_TASK}__reasoning_off"
_BUDGET = f"{HELDOUT_TASK}__budget_"


def _entry(scores: dict[str, Any] | None) -> dict[str, Any] | None:
    if not scores or "exact_match" not in scores:
        return None
    accuracy, thinking = scores["exact_match"], scores.get("thinking_tokens_mean", 0.0)
    return {
        "accuracy": accuracy,
        "thinking_tokens_mean": thinking,
        "accuracy_per_thinking_token": accuracy / thinking if thinking > 0 else None,
        "n": scores.get("n"),
    }


def reasoning_table(inputs: dict[str, Path]) -> dict[str, Any]:
    """{checkpoint: {"on": entry, "off": entry, "budgets": {N: entry}}} from the eval inputs."""
    table: dict[str, Any] = {}
    for name, directory in sorted(inputs.items()):
        if not name.startswith("eval_") or not (directory / "scores.json").is_file():
            continue
        scores = json.loads((directory / "scores.json").read_text(encoding="utf-8"))
        sampling = read_manifest(directory).get("summary", {}).get("sampling", {})
        primary = "off" if sampling.get("reasoning") == "off" else "on"
        modes = {primary: _entry(scores.get(HELDOUT_TASK))}
        if _OFF in scores:
            modes["off"] = _entry(scores[_OFF])
        budgets = {
            int(key.removeprefix(_BUDGET)): _entry(value)
            for key, value in scores.items()
            if key.startswith(_BUDGET)
        }
        table[name.removeprefix("eval_")] = {
            "on": modes.get("on"),
            "off": modes.get("off"),
            "budgets": {str(b): budgets[b] for b in sorted(budgets)},
        }
    return table


def _fmt(value: Any, spec: str = ".4f") -> str:
    return "n/a" if value is None else format(value, spec)


def reasoning_md(recipe: str, table: dict[str, Any], rl_rows: list[dict[str, Any]]) -> str:
    checkpoints = sorted(table, key=lambda c: (CHECKPOINT_ORDER + (c,)).index(c))
    lines = [
        f"# {recipe}: reasoning",
        "",
        f"Held-out synthetic problems (`{HELDOUT_TASK}`), greedy; thinking tokens are counted "
        "between `<think>` and `</think>`; accuracy per thinking token = accuracy / mean "
        "thinking tokens.",
        "",
        "| checkpoint | reasoning | accuracy | mean thinking tokens | accuracy per thinking token"
        " | n |",
        "|---|---|---|---|---|---|",
    ]
    for checkpoint in checkpoints:
        for mode in ("on", "off"):
            entry = table[checkpoint][mode]
            if entry is not None:
                lines.append(
                    f"| {checkpoint} | {mode} | {entry['accuracy']:.4f} | "
                    f"{entry['thinking_tokens_mean']:.2f} | "
                    f"{_fmt(entry['accuracy_per_thinking_token'])} | {entry['n']} |"
                )
    budgeted = [c for c in checkpoints if table[c]["budgets"]]
    if budgeted:
        lines += [
            "",
            "## Thinking budget (reasoning on; `</think>` forced after N thinking tokens)",
            "",
            "| checkpoint | budget | accuracy | mean thinking tokens | n |",
            "|---|---|---|---|---|",
        ]
        for checkpoint in budgeted:
            unlimited = table[checkpoint]["on"]
            rows = [*table[checkpoint]["budgets"].items()]
            rows += [("unlimited", unlimited)] if unlimited else []
            for budget, entry in rows:
                lines.append(
                    f"| {checkpoint} | {budget} | {entry['accuracy']:.4f} | "
                    f"{entry['thinking_tokens_mean']:.2f} | {entry['n']} |"
                )
    if rl_rows:
        first, last = rl_rows[0], rl_rows[-1]
        lines += [
            "",
            "## GRPO",
            "",
            f"Over {len(rl_rows)} steps (training prompts, sampled): mean reward "
            f"{first['mean_reward']:.4f} -> {last['mean_reward']:.4f}, accuracy "
            f"{first['accuracy']:.4f} -> {last['accuracy']:.4f}, mean thinking tokens "
            f"{first['mean_thinking_tokens']:.2f} -> {last['mean_thinking_tokens']:.2f}.",
            "",
            "![reward and thinking length over RL steps](rl_curve.png)",
        ]
    return "\n".join(lines) + "\n"


def plot_rl(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """Reward and accuracy (left), mean thinking tokens (right) per GRPO step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(8.4, 3.4))
    left.plot(steps, [r["mean_reward"] for r in rows], lw=1.4, label="mean reward")
    left.plot(steps, [r["accuracy"] for r in rows], lw=1.0, ls="--", label="accuracy")
    left.set_xlabel("step")
    left.legend()
    right.plot(steps, [r["mean_thinking_tokens"] for r in rows], lw=1.4, color="tab:orange")
    right.set_xlabel("step")
    right.set_ylabel("mean thinking tokens")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    # No "Software"/date metadata: the PNG must be byte-identical across identical runs.
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def write_reasoning(out: Path, recipe: str, inputs: dict[str, Path]) -> dict[str, Any]:
    """Write ``reasoning.md`` and ``rl_curve.png`` into ``out``; return the table."""
    rl_rows: list[dict[str, Any]] = []
    if "rl" in inputs and (inputs["rl"] / "metrics.jsonl").is_file():
        text = (inputs["rl"] / "metrics.jsonl").read_text(encoding="utf-8")
        rl_rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    table = reasoning_table(inputs)
    (out / "reasoning.md").write_text(reasoning_md(recipe, table, rl_rows), encoding="utf-8")
    plot_rl(rl_rows, out / "rl_curve.png", f"{recipe}: GRPO")
    return table
