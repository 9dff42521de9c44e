"""The reasoning part of ``results/<recipe>/``: ``reasoning.md`` and ``rl_curve.png``.

From the evaluate stages' ``scores.json`` (keys of ``evaluate.evaluate._runs``: the held-out task in
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

from openrecipe.evaluate.evaluate import HELDOUT_TASK
from openrecipe.evaluate.paired import paired_mean
from openrecipe.manifest import read_manifest
from openrecipe.registry import checkpoint_stages

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


# (earlier, later) checkpoint pairs compared item by item on the held-out task: each training
# stage's checkpoint against the one it started from (base -> sft -> rl).
_CHECKPOINTS = list(checkpoint_stages())
PAIRS = tuple(zip(_CHECKPOINTS, _CHECKPOINTS[1:], strict=False))
_SAMPLES = f"samples_{HELDOUT_TASK}.jsonl"


def _correct_by_id(directory: Path) -> dict[str, bool]:
    path = directory / _SAMPLES
    with open(path, encoding="utf-8") as handle:
        return {row["id"]: bool(row["correct"]) for row in map(json.loads, handle)}


def paired_difference(earlier: Path, later: Path) -> dict[str, Any] | None:
    """Accuracy of ``later`` minus ``earlier`` on the held-out items both answered (greedy,
    reasoning on), with the paired standard error: the items are the same, so the noise of the
    difference is that of the per-item differences, far below two independent binomial errors.
    None when either evaluation has no per-item samples."""
    if not (earlier / _SAMPLES).is_file() or not (later / _SAMPLES).is_file():
        return None
    before, after = _correct_by_id(earlier), _correct_by_id(later)
    result = paired_mean(before, after)
    if result is None:
        return None
    diffs = [int(after[i]) - int(before[i]) for i in before.keys() & after.keys()]
    return {
        **result,
        "only_later_right": sum(d == 1 for d in diffs),
        "only_earlier_right": sum(d == -1 for d in diffs),
    }


def _fmt(value: Any, spec: str = ".4f") -> str:
    return "n/a" if value is None else format(value, spec)


def reasoning_md(
    recipe: str,
    table: dict[str, Any],
    rl_rows: list[dict[str, Any]],
    pairs: dict[str, dict[str, Any]] | None = None,
) -> str:
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
    if pairs:
        lines += [
            "",
            "## Paired differences (reasoning on, the same held-out items)",
            "",
            "| later - earlier | difference | paired standard error | z | only later right "
            "| only earlier right | n |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, pair in pairs.items():
            lines.append(
                f"| {name} | {pair['difference']:+.4f} | {pair['paired_stderr']:.4f} | "
                f"{_fmt(pair['z'], '.2f')} | {pair['only_later_right']} | "
                f"{pair['only_earlier_right']} | {pair['n']} |"
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
        window = _window(rl_rows)

        def mean(rows: list[dict[str, Any]], key: str) -> float:
            return sum(r[key] for r in rows) / len(rows)

        first, last = rl_rows[:window], rl_rows[-window:]
        span = "step" if window == 1 else f"{window} steps"
        lines += [
            "",
            "## GRPO",
            "",
            f"Over {len(rl_rows)} steps (training prompts, sampled; first {span} -> last "
            f"{span}): mean reward {mean(first, 'mean_reward'):.4f} -> "
            f"{mean(last, 'mean_reward'):.4f}, accuracy {mean(first, 'accuracy'):.4f} -> "
            f"{mean(last, 'accuracy'):.4f}, mean thinking tokens "
            f"{mean(first, 'mean_thinking_tokens'):.2f} -> "
            f"{mean(last, 'mean_thinking_tokens'):.2f}.",
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
    window = _window(rows)
    fig, (left, right) = plt.subplots(1, 2, figsize=(8.4, 3.4))
    # a step's figures are means over one batch of rollouts: thin lines are the steps, thick
    # ones the trailing mean over ``window`` steps
    for key, color, style, label in (
        ("mean_reward", "tab:blue", "-", "mean reward"),
        ("accuracy", "tab:green", "--", "accuracy"),
    ):
        values = [r[key] for r in rows]
        left.plot(steps, values, lw=0.5, alpha=0.3, color=color, ls=style)
        left.plot(
            steps,
            _trailing_mean(values, window),
            lw=1.6,
            color=color,
            ls=style,
            label=f"{label} ({window}-step mean)",
        )
    left.set_xlabel("step")
    left.legend()
    thinking = [r["mean_thinking_tokens"] for r in rows]
    right.plot(steps, thinking, lw=0.5, alpha=0.3, color="tab:orange")
    right.plot(steps, _trailing_mean(thinking, window), lw=1.6, color="tab:orange")
    right.set_xlabel("step")
    right.set_ylabel("mean thinking tokens")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    # No "Software"/date metadata: the PNG must be byte-identical across identical runs.
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def _window(rows: list[dict[str, Any]]) -> int:
    """Steps averaged for the GRPO trend: a twentieth of the run, at least one."""
    return max(1, len(rows) // 20)


def _trailing_mean(values: list[float], window: int) -> list[float]:
    return [
        sum(values[max(0, i - window + 1) : i + 1]) / (i + 1 - max(0, i - window + 1))
        for i in range(len(values))
    ]


def paired_table(inputs: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """``{"sft - base": ..., "rl - sft": ...}`` for the pairs whose evaluations are inputs."""
    pairs = {}
    for earlier, later in PAIRS:
        a, b = inputs.get(f"eval_{earlier}"), inputs.get(f"eval_{later}")
        result = paired_difference(a, b) if a and b else None
        if result is not None:
            pairs[f"{later} - {earlier}"] = result
    return pairs


def write_reasoning(out: Path, recipe: str, inputs: dict[str, Path]) -> dict[str, Any]:
    """Write ``reasoning.md`` and ``rl_curve.png`` into ``out``; return the table (with the
    paired differences under ``"paired"``)."""
    rl_rows: list[dict[str, Any]] = []
    if "rl" in inputs and (inputs["rl"] / "metrics.jsonl").is_file():
        text = (inputs["rl"] / "metrics.jsonl").read_text(encoding="utf-8")
        rl_rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    table = reasoning_table(inputs)
    pairs = paired_table(inputs)
    (out / "reasoning.md").write_text(reasoning_md(recipe, table, rl_rows, pairs), encoding="utf-8")
    plot_rl(rl_rows, out / "rl_curve.png", f"{recipe}: GRPO")
    return {**table, "paired": pairs} if pairs else table
