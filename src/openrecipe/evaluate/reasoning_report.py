"""The reasoning part of ``results/<recipe>/``: ``reasoning.md`` and ``rl_curve.png``.

From the evaluate stages' ``scores.json`` (keys of ``evaluate.evaluate._runs``: the held-out task in
its primary mode, ``__reasoning_off`` and ``__budget_<N>``) and the rl stage's
``metrics.jsonl``: held-out accuracy and mean thinking tokens per checkpoint with reasoning on and
off, accuracy per thinking token (the token-efficiency figure: accuracy / mean thinking tokens,
undefined when nothing was thought), the thinking-budget table, and reward, accuracy and thinking
length over the GRPO steps.

With alignment seeds (``align.seeds``, ``openrecipe.seeds``) the tables above are seed 0's, and a
section per seed compares RL with SFT item by item, then pools the seeds
(``paired.pooled_paired``): the claim that RL beats SFT is made on the pooled z, not on one seed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from openrecipe.evaluate.evaluate import HELDOUT_TASK
from openrecipe.evaluate.paired import paired_mean, pooled_paired
from openrecipe.manifest import read_manifest
from openrecipe.registry import checkpoint_stages
from openrecipe.seeds import seed_of_checkpoint, stage_dir

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
    return {**result, **_discordant(before, after)}


def _discordant(before: dict[str, bool], after: dict[str, bool]) -> dict[str, int]:
    diffs = [int(after[i]) - int(before[i]) for i in before.keys() & after.keys()]
    return {
        "only_later_right": sum(d == 1 for d in diffs),
        "only_earlier_right": sum(d == -1 for d in diffs),
    }


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def seed_table(inputs: dict[str, Path]) -> dict[str, Any] | None:
    """RL - SFT on the held-out items per alignment seed and pooled over the seeds, or None
    when fewer than two seeds have both evaluations (a single-seed recipe's report is as
    before). ``{"per_seed": [{seed, sft_accuracy, rl_accuracy, difference, paired_stderr, z,
    only_later_right, only_earlier_right, n, grpo_accuracy_first, grpo_accuracy_last}],
    "pooled": pooled_paired(...) + sft/rl accuracy means}``."""
    seeds = sorted(
        {found[1] for name in inputs if (found := seed_of_checkpoint(name.removeprefix("eval_")))}
    )
    rows, pairs = [], []
    for seed in seeds:
        sft, rl = (
            inputs.get(f"eval_{stage_dir('sft', seed)}"),
            inputs.get(f"eval_{stage_dir('rl', seed)}"),
        )
        if not sft or not rl or not (sft / _SAMPLES).is_file() or not (rl / _SAMPLES).is_file():
            continue
        before, after = _correct_by_id(sft), _correct_by_id(rl)
        result = paired_mean(before, after)
        if result is None:
            continue
        common = sorted(before.keys() & after.keys())
        row = {
            "seed": seed,
            "sft_accuracy": _mean([float(before[i]) for i in common]),
            "rl_accuracy": _mean([float(after[i]) for i in common]),
            **result,
            **_discordant(before, after),
        }
        curve = _read_rows(inputs.get(stage_dir("rl", seed)))
        if curve:
            window = _window(curve)
            row["grpo_accuracy_first"] = _mean([r["accuracy"] for r in curve[:window]])
            row["grpo_accuracy_last"] = _mean([r["accuracy"] for r in curve[-window:]])
        rows.append(row)
        pairs.append(({i: float(before[i]) for i in common}, {i: float(after[i]) for i in common}))
    pooled = pooled_paired(pairs) if len(pairs) >= 2 else None
    if pooled is None:
        return None
    pooled["sft_accuracy"] = _mean([r["sft_accuracy"] for r in rows])
    pooled["rl_accuracy"] = _mean([r["rl_accuracy"] for r in rows])
    return {"per_seed": rows, "pooled": pooled}


def _read_rows(directory: Path | None) -> list[dict[str, Any]]:
    """The rl stage's ``metrics.jsonl`` rows (none when absent)."""
    if directory is None or not (directory / "metrics.jsonl").is_file():
        return []
    text = (directory / "metrics.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _seed_md(seeds: dict[str, Any]) -> list[str]:
    """The per-seed RL - SFT table and its pooled row."""
    pooled = seeds["pooled"]
    lines = [
        "",
        "## RL - SFT per alignment seed (reasoning on, the same held-out items)",
        "",
        "Each seed is its own SFT -> RL chain from the same pretrained model (`align.seeds`). "
        "Pooled: per item, the RL - SFT difference averaged over the seeds, then a paired test "
        "over the items (the seeds share the items, so their differences are correlated "
        "through them; this z holds whatever that correlation). `z if independent` adds the "
        "per-seed variances as if the seeds were independent samples.",
        "",
        "| seed | sft accuracy | rl accuracy | rl - sft | paired standard error | z "
        "| only rl right | only sft right | n | GRPO train accuracy (first -> last) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in seeds["per_seed"]:
        curve = (
            f"{row['grpo_accuracy_first']:.4f} -> {row['grpo_accuracy_last']:.4f}"
            if "grpo_accuracy_first" in row
            else "n/a"
        )
        lines.append(
            f"| {row['seed']} | {row['sft_accuracy']:.4f} | {row['rl_accuracy']:.4f} | "
            f"{row['difference']:+.4f} | {row['paired_stderr']:.4f} | {_fmt(row['z'], '.2f')} | "
            f"{row['only_later_right']} | {row['only_earlier_right']} | {row['n']} | {curve} |"
        )
    lines += [
        f"| pooled ({pooled['seeds']} seeds) | {pooled['sft_accuracy']:.4f} | "
        f"{pooled['rl_accuracy']:.4f} | {pooled['difference']:+.4f} | "
        f"{pooled['paired_stderr']:.4f} | {_fmt(pooled['z'], '.2f')} | | | {pooled['n']} | |",
        "",
        f"Pooled over {pooled['seeds']} seeds: RL - SFT = {pooled['difference']:+.4f}, paired "
        f"standard error {pooled['paired_stderr']:.4f}, z = {_fmt(pooled['z'], '.2f')} "
        f"(z if independent {_fmt(pooled['z_independent'], '.2f')}).",
    ]
    return lines


def _fmt(value: Any, spec: str = ".4f") -> str:
    return "n/a" if value is None else format(value, spec)


def reasoning_md(
    recipe: str,
    table: dict[str, Any],
    rl_rows: list[dict[str, Any]],
    pairs: dict[str, dict[str, Any]] | None = None,
    seeds: dict[str, Any] | None = None,
) -> str:
    # seed 0's checkpoints (and any other); the further seeds' are in the per-seed section
    main = [c for c in table if (seed_of_checkpoint(c) or ("", 0))[1] == 0]
    checkpoints = sorted(main, key=lambda c: [*_CHECKPOINTS, c].index(c))
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
    if seeds:
        lines += _seed_md(seeds)
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
    rl_rows = _read_rows(inputs.get("rl"))
    table = reasoning_table(inputs)
    pairs = paired_table(inputs)
    seeds = seed_table(inputs)
    (out / "reasoning.md").write_text(
        reasoning_md(recipe, table, rl_rows, pairs, seeds), encoding="utf-8"
    )
    plot_rl(rl_rows, out / "rl_curve.png", f"{recipe}: GRPO")
    result = {**table, "paired": pairs} if pairs else table
    return {**result, "seeds": seeds} if seeds else result
