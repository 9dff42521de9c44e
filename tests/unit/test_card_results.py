"""The committed default run's data card reconciles: the real run's ledgers (written by the
report stage as results/default/data_card.json) rechecked from results/ alone, so a card whose
arithmetic does not hold cannot be committed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openrecipe.data.card import CURATION_STAGES, check_accounting
from openrecipe.recipe import load_recipe

PROJECT = Path(__file__).resolve().parents[2]
CARD = PROJECT / "results" / "default" / "data_card.json"


@pytest.fixture(scope="module")
def card() -> dict:
    assert CARD.is_file(), f"{CARD}: missing; regenerate results/default with `make run`"
    return json.loads(CARD.read_text(encoding="utf-8"))


def test_every_step_reconciles(card: dict) -> None:
    chain = [(a["stage"], {k: v for k, v in a.items() if k != "stage"}) for a in card["accounting"]]
    assert [stage for stage, _ in chain] == list(CURATION_STAGES)
    assert check_accounting(chain) == []
    for stage, acc in chain:
        figures = card["figures"]["stages"][stage]
        assert figures["in"] == acc["steps"][acc["order"][0]]["total"]["in"]
        assert figures["kept"] == acc["steps"][acc["order"][-1]]["total"]["kept"]


def test_the_whole_default_corpus_was_curated(card: dict) -> None:
    recipe = load_recipe(PROJECT / "recipes" / "default.yaml", project=PROJECT).data
    curate = card["accounting"][0]
    assert curate["stage"] == "curate"
    assert set(curate["steps"]["validate"]["sources"]) == {
        s["name"] for s in recipe["data"]["sources"]
    }
    assert curate["steps"]["source_cap"]["total"]["dropped_total"] == 0  # no per-source cap
    langs = {row["lang"] for row in card["accounting"][-1]["profile_out"]}
    assert len(langs - {"code", "und"}) >= 20  # English, Spanish and the multilingual collections


def test_tokens_only_fall_through_the_filters(card: dict) -> None:
    """Curation stages after curate only remove documents: no source gains tokens."""
    tokens = card["figures"]["tokens_after_stage"]
    stages = list(CURATION_STAGES)  # the JSON's keys are sorted; the chain order is this
    assert set(tokens) == set(stages)
    for before, after in zip(stages, stages[1:], strict=False):
        for source, n in tokens[after]["source"].items():
            assert n <= tokens[before]["source"][source], (before, after, source)
