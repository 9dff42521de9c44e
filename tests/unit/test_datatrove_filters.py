"""Gopher quality, Gopher repetition and C4 quality make datatrove 0.10.1's decisions.

tests/fixtures/datatrove_filter_cases.json holds hostile documents (each rule's threshold just
kept and just dropped, empty, punctuation only, other scripts, bullets, ellipses, lorem ipsum,
``{``, javascript, policy lines, citations, words over 1,000 characters, n-grams that only match
once joined without spaces, special cases across a space) with datatrove's words, sentence counts
and decisions, recorded once with datatrove itself:

    /tmp/dtvenv/bin/python bench/record_datatrove_filter_cases.py tests/fixtures/datatrove_filter_cases.json

so these tests need no datatrove. ``bench/curation.py`` checks the same on the whole corpus.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openrecipe.data.c4_filter import c4_reason
from openrecipe.data.gopher_filters import GopherFilters
from openrecipe.data.spacy_en import SpacyEnglish

CASES = json.loads(
    (Path(__file__).parents[1] / "fixtures" / "datatrove_filter_cases.json").read_text("utf-8")
)
IDS = [c["name"] for c in CASES]


@pytest.fixture(scope="module")
def tok() -> SpacyEnglish:
    return SpacyEnglish()


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_words_are_spacys(case: dict, tok: SpacyEnglish) -> None:
    assert tok.words(case["text"]) == case["words"]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_sentences_are_the_sentencizers(case: dict, tok: SpacyEnglish) -> None:
    lines = [line.strip() for line in case["text"].splitlines() if line.strip()]
    assert [tok.sentences(line) for line in lines] == case["sentences"]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_decisions_are_datatroves(case: dict, tok: SpacyEnglish) -> None:
    gopher = GopherFilters(tok)
    quality, repetition = gopher.reasons(case["text"])
    assert (quality, repetition, c4_reason(case["text"], tok)) == (
        case["gopher_quality"],
        case["gopher_repetition"],
        case["c4_quality"],
    )


def test_cases_reach_every_rule() -> None:
    """The fixture exercises each reason datatrove can give, kept documents included."""
    seen = {c[k] for c in CASES for k in ("gopher_quality", "gopher_repetition", "c4_quality")}
    assert {
        None, "gopher_short_doc", "gopher_below_avg_threshold", "gopher_above_avg_threshold",
        "gopher_too_many_hashes", "gopher_too_many_ellipsis", "gopher_too_many_bullets",
        "gopher_too_many_end_ellipsis", "gopher_below_alpha_threshold",
        "gopher_enough_stop_words", "empty", "dup_para_frac", "dup_line_frac", "top_2_gram",
        "top_3_gram", "top_4_gram", "duplicated_5_n_grams", "duplicated_10_n_grams",
        "lorem_ipsum", "curly_bracket", "too_few_sentences",
    } <= seen  # fmt: skip


def test_one_instance_decides_documents_alike_in_any_order(tok: SpacyEnglish) -> None:
    """The chunk memo and vocabulary carried between documents change no decision."""
    texts = [c["text"] for c in CASES]
    forward = GopherFilters(tok)
    backward = GopherFilters(SpacyEnglish())
    first = [forward.reasons(t) for t in texts]
    second = [backward.reasons(t) for t in reversed(texts)][::-1]
    assert first == second == [(c["gopher_quality"], c["gopher_repetition"]) for c in CASES]


def test_joined_ngram_collision_merges_different_word_sequences(tok: SpacyEnglish) -> None:
    """``ab c`` and ``a bc`` are one no-space 2-gram string; datatrove counts the second as a
    repeat of the first. With only those repeats the 10-gram check decides."""
    case = next(c for c in CASES if c["name"] == "rep_joined_ngram_collision")
    assert GopherFilters(tok).repetition(case["text"]) == "duplicated_10_n_grams"


def test_recipe_selects_datatrove_heuristics(project: Path) -> None:
    """``data.curation.heuristics`` is optional with no default (a default would change every
    recipe's resolved view); ``datatrove`` is accepted and anything else named in the error."""
    from openrecipe.errors import RecipeError
    from openrecipe.recipe import load_recipe

    recipes = project / "recipes"
    assert "heuristics" not in load_recipe(recipes / "tiny.yaml", project=project).get(
        "data.curation"
    )
    good = recipes / "dt.yaml"
    good.write_text("name: dt\nextends: tiny\ndata:\n  curation:\n    heuristics: datatrove\n")
    assert load_recipe(good, project=project).get("data.curation.heuristics") == "datatrove"
    bad = recipes / "bad.yaml"
    bad.write_text("name: bad\nextends: tiny\ndata:\n  curation:\n    heuristics: fineweb\n")
    with pytest.raises(RecipeError, match=r"data\.curation\.heuristics"):
        load_recipe(bad, project=project)


def test_chain_names_the_first_filter_in_finewebs_order() -> None:
    """Repetition, then quality, then C4, as FineWeb ran them; kept only when all three keep."""
    from openrecipe.data.datatrove_filters import DatatroveFilters

    chain = DatatroveFilters()
    for case in CASES:
        expected = None
        for name in ("gopher_repetition", "gopher_quality", "c4_quality"):
            if case[name] is not None:
                expected = f"{name}:{case[name]}"
                break
        assert chain.reason(case["text"]) == expected, case["name"]


def test_the_workflow_refuses_datatrove_heuristics_until_curate_calls_them(tmp_path: Path) -> None:
    """Not wired into curate yet: a recipe naming the datatrove chain is refused by name before
    anything runs, never curated with the other filters."""
    import os
    import shutil
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    for name in ("Snakefile", "workflow", "recipes"):
        source = repo / name
        copy = shutil.copytree if source.is_dir() else shutil.copy2
        copy(source, tmp_path / name)
    recipe = tmp_path / "recipes" / "dt.yaml"
    recipe.write_text("name: dt\nextends: tiny\ndata:\n  curation:\n    heuristics: datatrove\n")
    done = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", str(recipe)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert done.returncode != 0
    assert "data.curation.heuristics: datatrove is not wired" in done.stderr
    assert not (tmp_path / "runs").exists()
