"""What the SFT sample stream promises beyond test_sft's mix check (written against the mutants it
left alive): the stream is exactly the one the committed SFT runs were trained on (``sft``
replays it to resume and ``certify`` replays it to count each source's tokens, so a changed
stream silently breaks both for every existing run); each epoch is a fresh permutation; the
fractions split the modes (all off, all cut, all full at the extremes); a cut is a proper,
right-stripped prefix of the thinking; and ``encode`` trains the reply the mode names."""

from __future__ import annotations

import math
import random
from itertools import islice

import pytest
from align_fixtures import train_tokenizer

from openrecipe.data import chat
from openrecipe.hashing import derive_seed
from openrecipe.train.sft_samples import encode, sample_stream

RECORDS = [
    {"question": f"q{i}", "thinking": f"t{i} step one. step two.", "answer": str(i)}
    for i in range(4)
]


def _draw(seed: int, off: float, cut: float, n: int, records=RECORDS) -> list[tuple[str, str]]:
    return [(r["question"], mode) for r, mode in islice(sample_stream(records, seed, off, cut), n)]


def test_the_stream_is_the_one_committed_runs_were_trained_on() -> None:
    assert _draw(7, 0.25, 0.5, 12) == [
        ("q1", "cut:t1 step one. ste"),
        ("q2", "full"),
        ("q0", "full"),
        ("q3", "full"),
        ("q0", "full"),
        ("q1", "cut:t1 step on"),
        ("q3", "off"),
        ("q2", "cut:t2 step one. step"),
        ("q3", "cut:"),
        ("q1", "off"),
        ("q2", "cut:t2 step one"),
        ("q0", "full"),
    ]


def test_each_epoch_is_a_fresh_permutation() -> None:
    records = [{"question": f"q{i}", "thinking": "t", "answer": "a"} for i in range(8)]
    drawn = [q for q, _ in _draw(3, 0.0, 0.0, 8 * 6, records)]
    epochs = [tuple(drawn[i : i + 8]) for i in range(0, len(drawn), 8)]
    assert all(sorted(e) == sorted(r["question"] for r in records) for e in epochs)
    assert len(set(epochs)) == len(epochs)  # 8! orders: six distinct epochs, unless not reseeded
    assert _draw(4, 0.0, 0.0, 8, records) != _draw(3, 0.0, 0.0, 8, records)


def test_the_fractions_split_the_modes() -> None:
    assert {m for _, m in _draw(5, 1.0, 0.0, 40)} == {"off"}
    assert {m for _, m in _draw(5, 0.0, 0.0, 40)} == {"full"}
    assert {m.split(":")[0] for _, m in _draw(5, 0.0, 1.0, 40)} == {"cut"}
    assert {m.split(":")[0] for _, m in _draw(5, 0.5, 0.5, 40)} == {"off", "cut"}
    # the modes are drawn from their own stream: the order of records does not depend on them
    assert [q for q, _ in _draw(5, 1.0, 0.0, 40)] == [q for q, _ in _draw(5, 0.0, 1.0, 40)]


def test_a_draw_equal_to_a_fraction_falls_above_it() -> None:
    """The fractions cut [0, 1) into half-open intervals, [0, off), [off, off + cut) and the
    rest, so a fraction is exactly the probability of its mode: the first draw of the mode
    stream (seeded as the pinned stream above shows), used as the fraction itself, is not in
    it; the next float up is."""
    u = random.Random(derive_seed(7, "mode")).random()
    assert 0.0 < u < 1.0
    first = lambda off, cut: next(sample_stream(RECORDS, 7, off, cut))[1]  # noqa: E731
    assert first(u, 0.0) == "full" and first(math.nextafter(u, 1.0), 0.0) == "off"
    assert first(0.0, u) == "full" and first(0.0, math.nextafter(u, 1.0)).startswith("cut:")


def test_a_cut_is_a_proper_right_stripped_prefix_of_the_thinking() -> None:
    records = [{"question": "q", "thinking": "a b  c d", "answer": "x"}]
    cuts = [m[len("cut:") :] for _, m in _draw(11, 0.0, 1.0, 400, records)]
    # every cut point 0..7 is drawn, the whole text (8 characters) never; each right-stripped
    assert set(cuts) == {"", "a", "a b", "a b  c"}


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(["Jo has 7 stickers. Jo uses 2 stickers. 7-2=5. 5"] * 20, vocab_size=300)


def _trained(tokenizer, ids: list[int], labels: list[int]) -> str:
    return tokenizer.decode([i for i, label in zip(ids, labels, strict=True) if label != -100])


def test_encode_trains_the_reply_the_mode_names(tokenizer) -> None:
    record = {"question": "Jo has 7 stickers.", "thinking": "7-2=5.", "answer": "5"}
    full = encode(tokenizer, record, "full")
    assert _trained(tokenizer, *full) == "<think>7-2=5.</think>5<|im_end|>"
    assert chat.REASONING_OFF not in tokenizer.decode(full[0])
    cut = encode(tokenizer, record, "cut:7-2")
    assert _trained(tokenizer, *cut) == "<think>7-2</think>5<|im_end|>"
    assert chat.REASONING_OFF not in tokenizer.decode(cut[0])
    off = encode(tokenizer, record, "off")
    assert _trained(tokenizer, *off) == "<think></think>5<|im_end|>"
    assert chat.REASONING_OFF in tokenizer.decode(off[0])
    empty_cut = encode(tokenizer, record, "cut:")  # reasoning on, nothing of it kept
    assert _trained(tokenizer, *empty_cut) == "<think></think>5<|im_end|>"
    assert chat.REASONING_OFF not in tokenizer.decode(empty_cut[0])
