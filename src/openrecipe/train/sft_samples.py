"""The SFT sample stream: which reasoning record, in which reasoning mode, at each position.

A pure function of the stage seed (seeded shuffled epochs; a seeded ``reasoning_off_fraction``
of samples with reasoning off and ``truncate_fraction`` with a cut thinking prefix), so the
``sft`` stage replays it to resume and ``openrecipe certify`` replays it to count the tokens
each source contributed to SFT.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from openrecipe.data import chat
from openrecipe.hashing import derive_seed


def sample_stream(
    records: list[dict[str, str]], seed: int, off_fraction: float, truncate_fraction: float
) -> Iterator[tuple[dict[str, str], str]]:
    """Endless (record, mode) stream: seeded shuffled epochs; mode is "full", "off" or a
    truncated thinking text ("cut:<prefix>")."""
    mode_rng = random.Random(derive_seed(seed, "mode"))
    epoch = 0
    while True:
        order = random.Random(derive_seed(seed, "order", str(epoch))).sample(
            range(len(records)), len(records)
        )
        for index in order:
            record = records[index]
            u = mode_rng.random()
            if u < off_fraction:
                yield record, "off"
            elif u < off_fraction + truncate_fraction:
                thinking = record["thinking"]
                yield record, "cut:" + thinking[: mode_rng.randrange(len(thinking))].rstrip()
            else:
                yield record, "full"
        epoch += 1


def encode(tokenizer: Any, record: dict[str, str], mode: str) -> tuple[list[int], list[int]]:
    if mode == "off":
        return chat.encode_sft(
            tokenizer, record["question"], None, record["answer"], reasoning=False
        )
    thinking = mode[len("cut:") :] if mode.startswith("cut:") else record["thinking"]
    return chat.encode_sft(
        tokenizer, record["question"], thinking, record["answer"], reasoning=True
    )
