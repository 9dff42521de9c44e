"""Reference-LM perplexity quality signal and its quantile buckets."""

import math
import random

import pytest

from openrecipe.data.perplexity import (
    BigramKN,
    assign_bucket,
    bucket_edges,
    split_reference,
    tokenize,
)

# Austen-like reference prose (Pride and Prejudice, ch. 1, public domain), one paragraph a line.
REFERENCE = [
    (
        "pp1",
        "It is a truth universally acknowledged, that a single man in possession of a good "
        "fortune, must be in want of a wife.\nHowever little known the feelings or views of such "
        "a man may be on his first entering a neighbourhood, this truth is so well fixed in the "
        "minds of the surrounding families, that he is considered the rightful property of some "
        "one or other of their daughters.",
    ),
    (
        "pp2",
        "My dear Mr. Bennet, said his lady to him one day, have you heard that Netherfield Park "
        "is let at last?\nMr. Bennet replied that he had not.\nBut it is, returned she; for Mrs. "
        "Long has just been here, and she told me all about it.\nMr. Bennet made no answer.\n"
        "Do you not want to know who has taken it? cried his wife impatiently.\nYou want to tell "
        "me, and I have no objection to hearing it.\nThis was invitation enough.",
    ),
]
HELD_OUT = (
    "It is a truth well known that a man of good fortune must be in want of a wife, and his "
    "lady told him that the man had taken Netherfield Park at last."
)


def _shuffled(text: str, seed: int) -> str:
    words = text.split()
    random.Random(seed).shuffle(words)
    return " ".join(words)


def test_tokenize_lines_and_punctuation():
    assert tokenize("Don't stop.\n\nGo!") == [
        ["<s>", "don't", "stop", ".", "</s>"],
        ["<s>", "go", "!", "</s>"],
    ]


def test_probabilities_sum_to_one():
    model = BigramKN(REFERENCE)
    vocab = list(model.continuation) + ["<unknown-word>"]
    for context in ("a", "mr", "<s>", "never-seen"):
        assert math.isclose(sum(model.prob(context, w) for w in vocab), 1.0, rel_tol=1e-9)


def test_prose_ranks_below_shuffled_words():
    model = BigramKN(REFERENCE)
    prose = model.log_perplexity(HELD_OUT)
    for seed in range(5):  # same words, so only the bigram statistics can tell them apart
        assert prose < model.log_perplexity(_shuffled(HELD_OUT, seed)) - 0.3
    code = model.log_perplexity("for (int i = 0; i < n; ++i) { buf[i] ^= key[i % 16]; }")
    assert prose < code
    assert model.log_perplexity("") == math.inf


def test_hashes_identify_data_and_model():
    a, b = BigramKN(REFERENCE), BigramKN(REFERENCE)
    assert a.info() == b.info()
    changed = BigramKN([REFERENCE[0], (REFERENCE[1][0], REFERENCE[1][1] + " Indeed.")])
    assert changed.training_sha256 != a.training_sha256
    assert changed.model_sha256() != a.model_sha256()


def test_split_reference_is_per_document_and_deterministic():
    docs = [{"id": f"austen/{i}", "source": "austen"} for i in range(200)]
    docs += [{"id": f"code/{i}", "source": "python_stdlib"} for i in range(50)]
    ref, rest = split_reference(docs, ["austen"], 0.5, seed=7)
    assert 70 < len(ref) < 130 and all(d["source"] == "austen" for d in ref)
    assert len(ref) + len(rest) == len(docs)
    ref_small, _ = split_reference(docs[:100], ["austen"], 0.5, seed=7)
    assert ref_small == [d for d in ref if d in docs[:100]]  # independent of the other docs
    assert split_reference(docs, ["austen"], 0.5, seed=8)[0] != ref
    with pytest.raises(ValueError):
        split_reference(docs, ["austen"], 1.0, seed=7)


def test_quantile_buckets_equal_count_and_ordered():
    log_ppl = [float(x) for x in range(100, 0, -1)]  # 100 docs, worst first
    edges = bucket_edges(log_ppl, 20)
    assert len(edges) == 19 and edges == sorted(edges)
    buckets = [assign_bucket(lp, edges) for lp in log_ppl]
    assert [buckets.count(b) for b in range(20)] == [5] * 20
    assert buckets[0] == 0 and buckets[-1] == 19 and buckets == sorted(buckets)
    assert assign_bucket(1e9, edges) == 0 and assign_bucket(-1e9, edges) == 19
    assert bucket_edges([3.0], 1) == []
