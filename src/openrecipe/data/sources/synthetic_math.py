"""Seeded arithmetic word problems with worked solutions, as pretraining documents.

Held-out evaluation contract (shared with ``openrecipe.data.reasoning``): a problem belongs to the
*evaluation bucket* when the first hex digit of ``sha256(question.encode("utf-8"))`` is ``0``
(1/16 of problem space). This generator never emits a problem from that bucket, and the
evaluation generator draws held-out items only from it, so pretraining text cannot contain an
evaluation question verbatim whatever either generator's seed or template set is.

The acquire view holds no recipe seed, so the stream is seeded from the source's identity
(name + version + ``options.seed``): changing any of them is a new source version."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

from openrecipe.hashing import derive_seed, sha256_bytes

RESERVED_PREFIX = "0"  # first hex digit of sha256(question) reserved for held-out evaluation

_NAMES = [
    "Ada",
    "Ben",
    "Chen",
    "Dara",
    "Elif",
    "Femi",
    "Gita",
    "Hugo",
    "Iris",
    "Jon",
    "Kemal",
    "Lena",
    "Maya",
    "Nico",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sami",
    "Tara",
]
_ITEMS = [
    "apples",
    "marbles",
    "stickers",
    "books",
    "pencils",
    "shells",
    "stamps",
    "coins",
    "cards",
    "beads",
    "cookies",
    "plants",
]
_WORDS = {2: "doubles", 3: "triples"}


@dataclass(frozen=True)
class Problem:
    question: str
    solution: str
    answer: int

    def text(self) -> str:
        return f"Problem: {self.question}\nSolution: {self.solution}\nAnswer: {self.answer}"


def is_reserved(question: str) -> bool:
    """True for questions in the held-out evaluation bucket (never used for pretraining)."""
    return sha256_bytes(question.encode("utf-8")).startswith(RESERVED_PREFIX)


def _step(rng: random.Random, name: str, items: str, value: int) -> tuple[str, str, int]:
    """One operation: (question sentence, worked step, new value). Only exact, positive results."""
    choices = ["add", "sub", "mul"] + (["div"] if any(value % k == 0 for k in (2, 3, 4)) else [])
    kind = rng.choice(choices)
    if kind == "add":
        k = rng.randint(2, 30)
        return (
            f"Then {name} gets {k} more {items}.",
            f"{name} gets {k} more, so {value} + {k} = {value + k}.",
            value + k,
        )
    if kind == "sub" and value > 2:
        k = rng.randint(1, value - 1)
        return (
            f"{name} gives {k} {items} to a friend.",
            f"{name} gives away {k}, so {value} - {k} = {value - k}.",
            value - k,
        )
    if kind == "div":
        k = rng.choice([k for k in (2, 3, 4) if value % k == 0])
        return (
            f"{name} splits the {items} into {k} equal groups and keeps one group.",
            f"One of {k} equal groups is {value} / {k} = {value // k}.",
            value // k,
        )
    k = rng.choice([2, 3])
    return (
        f"Then {name} {_WORDS[k]} the number of {items}.",
        f"{_WORDS[k].capitalize()} means times {k}, so {value} * {k} = {value * k}.",
        value * k,
    )


def make_problem(rng: random.Random) -> Problem:
    name, items = rng.choice(_NAMES), rng.choice(_ITEMS)
    value = rng.randint(3, 40)
    sentences = [f"{name} has {value} {items}."]
    steps = [f"{name} starts with {value} {items}."]
    for _ in range(rng.randint(2, 4)):
        sentence, step, value = _step(rng, name, items, value)
        sentences.append(sentence)
        steps.append(step)
    sentences.append(f"How many {items} does {name} have now?")
    steps.append(f"So {name} has {value} {items} in the end.")
    return Problem(" ".join(sentences), " ".join(steps), value)


def generate(source: dict) -> Iterator[Problem]:
    """``options.n_docs`` distinct problems outside the reserved bucket, in generation order."""
    options = source.get("options") or {}
    n_docs = int(options.get("n_docs", 1000))
    rng = random.Random(
        derive_seed(
            int(options.get("seed", 0)), "synthetic_math", source["name"], source["version"]
        )
    )
    seen: set[str] = set()
    while len(seen) < n_docs:
        problem = make_problem(rng)
        if problem.question in seen or is_reserved(problem.question):
            continue
        seen.add(problem.question)
        yield problem


def documents(source: dict) -> Iterator[dict]:
    for index, problem in enumerate(generate(source)):
        yield {
            "id": f"{source['name']}/{index:06d}",
            "url_or_path": f"openrecipe.data.sources.synthetic_math@{source['version']}#{index}",
            "text": problem.text(),
        }
