"""The ``reasoning`` stage: seeded multi-step arithmetic word problems with worked solutions.

No GSM8K *train* split ships in any offline registry package, and reasoning-gym's GSM templates
come from the GSM8K *test* set (see shared/reference/environment.md), so SFT/RL data is generated
here: a story starts with a quantity and each step changes it (buy, give away, receive boxes,
split into bags...). The thinking is one short equation per step ("12+5=17. 17-3=14.") so a
~200K-parameter model can learn it; the answer is the final non-negative integer.

Held-out membership is decided by the question text alone (``is_heldout``: first hex digit of its
sha256 is "0"), not by a split of this generator's stream. The same rule is applied by every
generator of arithmetic text (the pretraining synthetic-math source skips that bucket too), so an
evaluation question can never appear in any training set, whatever the seeds or counts.

Outputs: ``train.jsonl`` and ``heldout.jsonl``, one JSON object per line with keys
``id, source, license, question, thinking, answer`` (sorted keys), ordered as generated.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openrecipe.errors import RecipeError, StageInputError
from openrecipe.hashing import sha256_bytes
from openrecipe.stage import StageContext
from openrecipe.stage_config import decode_view, view_field

SOURCE = "synthetic_reasoning"
LICENSE = "CC0-1.0"
LANG = "en"  # every problem is English prose; labelled so lang= selectors can match it
# First hex digit of sha256(question) that marks held-out: 1/16 of all questions, kept for eval.
HELDOUT_BUCKET = "0"
# Give up when this many candidates in a row add nothing new (the knobs allow too few problems).
_MAX_STALE = 20_000

# fmt: off
NAMES = ("Ava", "Ben", "Chen", "Dara", "Eli", "Farah", "Gus", "Hana", "Ivan", "Jo", "Kofi", "Lena",
         "Mia", "Noor", "Omar", "Pia", "Ravi", "Sara", "Tom", "Uma")
ITEMS = ("apples", "marbles", "stamps", "cookies", "pencils", "stickers", "books", "shells",
         "coins", "cards")
# fmt: on


@dataclass(frozen=True)
class Problem:
    question: str
    thinking: str
    answer: int
    steps: int


def is_heldout(question: str) -> bool:
    """True when ``question`` lies in the evaluation bucket (shared by all arithmetic sources)."""
    return sha256_bytes(question.encode("utf-8"))[0] == HELDOUT_BUCKET


# A step: (rng, name, item, value, max_value) -> (sentence, equations, new value), or None when
# it does not apply to the current value (e.g. giving away more than one has).
Step = Callable[[random.Random, str, str, int, int], tuple[str, list[str], int] | None]


def _buy(
    rng: random.Random, name: str, item: str, value: int, top: int
) -> tuple[str, list[str], int]:
    n = rng.randint(1, top)
    verb = rng.choice(("buys", "finds", "is given"))
    return f"{name} {verb} {n} more {item}.", [f"{value}+{n}={value + n}"], value + n


def _give(
    rng: random.Random, name: str, item: str, value: int, top: int
) -> tuple[str, list[str], int] | None:
    if value < 1:
        return None
    n = rng.randint(1, min(value, top))
    verb = rng.choice(("gives away", "loses", "uses"))
    return f"{name} {verb} {n} {item}.", [f"{value}-{n}={value - n}"], value - n


def _boxes(
    rng: random.Random, name: str, item: str, value: int, top: int
) -> tuple[str, list[str], int]:
    boxes, per_box = rng.randint(2, 4), rng.randint(2, max(2, min(10, top)))
    gained = boxes * per_box
    sentence = f"{name} gets {boxes} boxes with {per_box} {item} in each box."
    return (
        sentence,
        [f"{boxes}*{per_box}={gained}", f"{value}+{gained}={value + gained}"],
        value + gained,
    )


def _split(
    rng: random.Random, name: str, item: str, value: int, top: int
) -> tuple[str, list[str], int] | None:
    parts = [k for k in range(2, 6) if value % k == 0 and value // k >= 1]
    if not parts:
        return None
    k = rng.choice(parts)
    sentence = f"{name} splits the {item} into {k} equal bags and keeps one bag."
    return sentence, [f"{value}/{k}={value // k}"], value // k


STEPS: tuple[Step, ...] = (_buy, _give, _boxes, _split)


def make_problem(rng: random.Random, n_steps: int, max_value: int) -> Problem:
    """One problem with exactly ``n_steps`` operations; operands are at most ``max_value``."""
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    value = rng.randint(min(2, max_value), max_value)  # plural nouns read right from 2 up
    sentences, equations = [f"{name} has {value} {item}."], []
    for _ in range(n_steps):
        for step in rng.sample(STEPS, len(STEPS)):  # first applicable op in a random order
            made = step(rng, name, item, value, max_value)
            if made is not None:
                break
        sentence, eqs, value = made  # _buy always applies, so ``made`` is set
        sentences.append(sentence)
        equations.extend(eqs)
    sentences.append(f"How many {item} does {name} have now?")
    thinking = " ".join(f"{eq}." for eq in equations)
    return Problem(" ".join(sentences), thinking, value, n_steps)


def generate(
    seed: int, n_train: int, n_heldout: int, min_steps: int, max_steps: int, max_value: int
) -> tuple[list[Problem], list[Problem]]:
    """Draw problems until both splits are full; duplicates (same question) are dropped."""
    if min_steps > max_steps:
        raise RecipeError(
            f"sft.data.min_steps ({min_steps}) exceeds sft.data.max_steps ({max_steps})"
        )
    rng = random.Random(seed)
    seen: set[str] = set()
    train: list[Problem] = []
    heldout: list[Problem] = []
    stale = 0
    while len(train) < n_train or len(heldout) < n_heldout:
        problem = make_problem(rng, rng.randint(min_steps, max_steps), max_value)
        target, want = (heldout, n_heldout) if is_heldout(problem.question) else (train, n_train)
        if problem.question in seen or len(target) >= want:
            stale += 1
            if stale > _MAX_STALE:
                raise RecipeError(
                    f"sft.data: only {len(train)} train / {len(heldout)} held-out distinct problems "
                    f"found for n_train={n_train}, n_heldout={n_heldout}; raise max_value or max_steps"
                )
            continue
        stale = 0
        seen.add(problem.question)
        target.append(problem)
    return train, heldout


def _write_jsonl(path: Path, split: str, problems: list[Problem]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for problem in problems:
            record = {
                "id": f"{split}-{sha256_bytes(problem.question.encode('utf-8'))[:16]}",
                "source": SOURCE,
                "license": LICENSE,
                "lang": LANG,
                "question": problem.question,
                "thinking": problem.thinking,
                "answer": str(problem.answer),
            }
            handle.write(json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n")


def read_split(stage_dir: Path, split: str) -> list[dict[str, str]]:
    """Records of ``train`` or ``heldout`` from a reasoning stage directory."""
    path = stage_dir / f"{split}.jsonl"
    if not path.is_file():
        raise StageInputError(f"{path}: missing; not a reasoning stage output")
    records = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise StageInputError(f"{path}:{number}: not valid JSON ({exc})") from exc
            missing = {"question", "thinking", "answer"} - set(record)
            if missing:
                raise StageInputError(f"{path}:{number}: missing field(s) {sorted(missing)}")
            records.append(record)
    return records


@dataclass(frozen=True)
class ReasoningData:
    """``sft.data``: how many problems of each split, their step range and value bound."""

    n_train: int
    n_heldout: int
    min_steps: int
    max_steps: int
    max_value: int


@dataclass(frozen=True)
class ReasoningConfig:
    """The reasoning stage's view, typed: the seed of the generator and its parameters."""

    seed: int = view_field("seed")
    data: ReasoningData = view_field("sft.data")


def run(ctx: StageContext) -> dict[str, Any]:
    data = decode_view(ReasoningConfig, ctx.config, ctx.stage).data
    train, heldout = generate(
        ctx.seed,
        data.n_train,
        data.n_heldout,
        data.min_steps,
        data.max_steps,
        data.max_value,
    )
    _write_jsonl(ctx.out / "train.jsonl", "train", train)
    _write_jsonl(ctx.out / "heldout.jsonl", "heldout", heldout)

    def mean_steps(problems: list[Problem]) -> float:
        return round(sum(p.steps for p in problems) / len(problems), 4)

    return {
        "n_train": len(train),
        "n_heldout": len(heldout),
        "mean_steps_train": mean_steps(train),
        "mean_steps_heldout": mean_steps(heldout),
        "max_answer": max(p.answer for p in train + heldout),
    }
