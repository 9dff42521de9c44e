"""The committed default run meets the alignment goals: SFT beats the base model on the held-out
problems by more than twice its paired standard error, GRPO beats SFT pooled over the alignment
seeds (pooled paired z >= 2, read from results/default/reasoning.md; currently not: see
RL_GAIN_NOT_SHOWN), and the thinking budget is honoured. Read from results/default (written by
the report stage), so a default recipe whose regenerated results lose a gain cannot be committed
unnoticed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
METRICS = PROJECT / "results" / "default" / "metrics.json"
REASONING_MD = PROJECT / "results" / "default" / "reasoning.md"
SEEDS = [0, 1, 2]  # recipes/default.yaml align.seeds


@pytest.fixture(scope="module")
def reasoning() -> dict:
    assert METRICS.is_file(), f"{METRICS}: missing; regenerate results/default with `make run`"
    return json.loads(METRICS.read_text(encoding="utf-8"))["reasoning"]


def seed_rows(text: str) -> dict[str, list[str]]:
    """{seed or "pooled (N seeds)": cells} of reasoning.md's per-seed RL - SFT table."""
    _, found, section = text.partition("## RL - SFT per alignment seed")
    assert found, f"{REASONING_MD}: no per-seed RL - SFT section (made before the seed fan-out?)"
    rows = {}
    for line in section.split("\n## ")[0].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if re.fullmatch(r"[0-9]+|pooled \([0-9]+ seeds\)", cells[0]):
            rows[cells[0]] = cells[1:]
    return rows


# Regenerated from a clean clone of a7dff62 on 2026-12-03 with three alignment seeds (0, 1, 2),
# each its own SFT -> GRPO chain from the same pretrained model, scored on the 500 held-out
# problems: RL - SFT = +0.000 (z 0.00), +0.008 (z 0.63), -0.006 (z -0.45); pooled +0.0007 +-
# 0.0078, z 0.09, while GRPO's training accuracy rose 0.50-0.51 -> 0.57-0.59 in every seed (see
# docs/rl_seeds.md). The mark is strict: when RL beats SFT pooled over the seeds it fails and
# must go. The gain is recorded as not shown rather than tuned away on the held-out set
# (issue 13).
RL_GAIN_NOT_SHOWN = pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="RL - SFT pooled over 3 alignment seeds = +0.0007 +- 0.0078 (z 0.09; docs/rl_seeds.md)",
)


def test_sft_beats_base(reasoning: dict) -> None:
    result = reasoning["paired"]["sft - base"]
    assert result["n"] >= 500
    assert result["difference"] > 2 * result["paired_stderr"] > 0
    assert reasoning["sft"]["on"]["accuracy"] - reasoning["base"]["on"]["accuracy"] == (
        pytest.approx(result["difference"])
    )


def test_reasoning_md_reports_every_seed(reasoning: dict) -> None:
    rows = seed_rows(REASONING_MD.read_text(encoding="utf-8"))
    assert list(rows) == [*map(str, SEEDS), f"pooled ({len(SEEDS)} seeds)"]
    pooled = reasoning["seeds"]["pooled"]
    cells = rows[f"pooled ({len(SEEDS)} seeds)"]
    assert float(cells[2]) == pytest.approx(pooled["difference"], abs=5e-5)
    assert float(cells[4]) == pytest.approx(pooled["z"], abs=5e-3)
    for seed, entry in zip(SEEDS, reasoning["seeds"]["per_seed"], strict=True):
        assert entry["seed"] == seed and entry["n"] >= 500
        # every seed scored the same items, so the pooled difference is the mean of the seeds'
    assert pooled["difference"] == pytest.approx(
        sum(e["difference"] for e in reasoning["seeds"]["per_seed"]) / len(SEEDS)
    )


@RL_GAIN_NOT_SHOWN
def test_rl_beats_sft_pooled_over_seeds() -> None:
    """The criterion of issue 13, as reasoning.md states it: the pooled row's z."""
    rows = seed_rows(REASONING_MD.read_text(encoding="utf-8"))
    cells = rows.get(f"pooled ({len(SEEDS)} seeds)")
    assert cells is not None, f"{REASONING_MD}: no pooled row over {len(SEEDS)} seeds"
    difference, z, n = float(cells[2]), float(cells[4]), int(cells[7])
    assert n >= 500 and difference > 0 and z >= 2, f"pooled RL - SFT {difference:+.4f}, z {z}"


def test_thinking_budget_is_honoured(reasoning: dict) -> None:
    for checkpoint in ("sft", "rl"):
        budgets = reasoning[checkpoint]["budgets"]
        assert sorted(int(b) for b in budgets) == [8, 16, 32]
        for budget, entry in budgets.items():
            assert entry["thinking_tokens_mean"] <= int(budget)
        # 8 tokens cut most traces (about 13 unbudgeted), and that costs accuracy
        assert budgets["8"]["accuracy"] < reasoning[checkpoint]["on"]["accuracy"]
