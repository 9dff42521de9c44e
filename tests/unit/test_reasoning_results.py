"""The committed default run meets the alignment goals: SFT beats the base model and GRPO beats
SFT (currently not: see RL_GAIN_GONE) on the held-out problems, each by more than twice its paired standard error, and the thinking
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


# Regenerated at main on 2026-12-03 (one seed, recipe seed 1234): SFT 0.620, RL 0.620 on the
# 500 held-out problems (23 only RL right, 23 only SFT right; paired z 0.00). GRPO's gain does
# not hold on main: recorded as a strict xfail rather than tuned away (issue 13). When a change
# makes it hold again, this xfail fails and must go.
RL_GAIN_GONE = pytest.mark.xfail(
    strict=True, reason="RL - SFT = +0.000 +- 0.014 on main's results/default (one seed)"
)


@pytest.mark.parametrize("pair", ["sft - base", pytest.param("rl - sft", marks=RL_GAIN_GONE)])
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
