"""13-gram decontamination against evaluation items."""

import pytest

from openrecipe.data.ngram_overlap import EvalIndex, decontaminate, words

ITEM = (
    "Which planet in our solar system has the longest day measured in Earth hours, and why does "
    "its slow rotation produce such extreme surface temperatures?"
)
FILLER = "the weather this spring was mild and the garden grew well " * 5


def _planted(k: int, start: int = 3) -> str:
    """Filler text around the item's words start .. start+k, with changed case and punctuation."""
    gram = words(ITEM)[start : start + k]
    return FILLER + ", ".join(w.upper() for w in gram) + "! " + FILLER


def test_normalisation():
    assert words("Hello, WORLD!  it's_fine 3.5") == ["hello", "world", "it", "s", "fine", "3", "5"]


def test_planted_13_gram_caught_12_gram_not():
    index = EvalIndex([("q1", ITEM), ("q2", "an unrelated question " * 5)])
    assert index.match(_planted(13)) == ["q1"]
    assert index.match(_planted(12)) == []
    assert index.match(FILLER) == []


def test_short_items_use_whole_sequence_or_are_skipped():
    index = EvalIndex([("short", "What is the capital city of France today?"), ("tiny", "yes no")])
    assert index.too_short == ["tiny"]
    assert index.match(FILLER + "what is the capital city of france today") == ["short"]
    assert index.match(FILLER + "what is the capital city of france") == []


def test_decontaminate_reports_matches_and_drops_in_order():
    index = EvalIndex([("q1", ITEM), ("q2", ITEM.replace("planet", "moon"))])
    docs = [("clean", FILLER), ("both", FILLER + ITEM), ("one", _planted(13, start=1))]
    result = decontaminate(docs, index)
    assert result.drop == ["both", "one"]
    assert result.matches == {"both": ["q1", "q2"], "one": ["q1"]}


def test_rejects_bad_parameters():
    with pytest.raises(ValueError):
        EvalIndex([], n=13, min_words=14)
