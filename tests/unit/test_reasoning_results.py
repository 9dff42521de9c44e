"""The committed default run meets the alignment goals: SFT beats the base model and GRPO beats
SFT on the held-out problems, each by more than twice its paired standard error, and the thinking
budget is honoured. Read from results/default/metrics.json (written by the report stage), so a
default recipe whose regenerated results lose either gain cannot be committed unnoticed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
METRICS = PROJECT / "results" / "default" / "metrics.json"


@pytest.fixture(scope="module")
def reasoning() -> dict:
    assert METRICS.is_file(), f"{METRICS}: missing; regenerate results/default with `make run`"
    return json.loads(METRICS.read_text(encoding="utf-8"))["reasoning"]


@pytest.mark.parametrize("pair", ["sft - base", "rl - sft"])
def test_each_stage_beats_the_one_before(reasoning: dict, pair: str) -> None:
    result = reasoning["paired"][pair]
    assert result["n"] >= 500
    assert result["difference"] > 2 * result["paired_stderr"] > 0
    later, earlier = pair.split(" - ")
    assert reasoning[later]["on"]["accuracy"] - reasoning[earlier]["on"]["accuracy"] == (
        pytest.approx(result["difference"])
    )


def test_thinking_budget_is_honoured(reasoning: dict) -> None:
    for checkpoint in ("sft", "rl"):
        budgets = reasoning[checkpoint]["budgets"]
        assert sorted(int(b) for b in budgets) == [8, 16, 32]
        for budget, entry in budgets.items():
            assert entry["thinking_tokens_mean"] <= int(budget)
        # 8 tokens cut most traces (about 13 unbudgeted), and that costs accuracy
        assert budgets["8"]["accuracy"] < reasoning[checkpoint]["on"]["accuracy"]
