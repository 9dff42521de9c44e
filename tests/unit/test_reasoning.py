"""The reasoning generator: correct worked solutions, the held-out hash rule, determinism."""

from __future__ import annotations

import json
import re

import pytest
from align_fixtures import PROJECT, tiny_recipe

from openrecipe.data import reasoning
from openrecipe.errors import RecipeError
from openrecipe.hashing import sha256_bytes
from openrecipe.stage import run_stage

_EQUATION = re.compile(r"^(\d+)([-+*/])(\d+)=(\d+)$")


def _check_solution(problem: reasoning.Problem) -> None:
    """Every equation is true arithmetic and the last result is the answer."""
    results = []
    for equation in problem.thinking.split(". "):
        a, op, b, c = _EQUATION.match(equation.rstrip(".")).groups()
        a, b, c = int(a), int(b), int(c)
        assert {"+": a + b, "-": a - b, "*": a * b, "/": a // b if a % b == 0 else None}[op] == c
        results.append(c)
    assert results[-1] == problem.answer >= 0


def test_solutions_are_correct_and_steps_in_range() -> None:
    train, heldout = reasoning.generate(7, 300, 20, 1, 3, 30)
    for problem in train + heldout:
        _check_solution(problem)
        assert 1 <= problem.steps <= 3
        assert problem.question.endswith("have now?")
    assert {p.steps for p in train} == {1, 2, 3}


def test_heldout_bucket_and_disjointness() -> None:
    train, heldout = reasoning.generate(3, 200, 15, 1, 2, 20)
    assert len(train) == 200 and len(heldout) == 15
    assert all(sha256_bytes(p.question.encode())[0] == "0" for p in heldout)
    assert not any(reasoning.is_heldout(p.question) for p in train)
    questions = [p.question for p in train + heldout]
    assert len(set(questions)) == len(questions)


def test_seed_decides_everything() -> None:
    assert reasoning.generate(5, 50, 5, 1, 2, 20) == reasoning.generate(5, 50, 5, 1, 2, 20)
    assert reasoning.generate(5, 50, 5, 1, 2, 20) != reasoning.generate(6, 50, 5, 1, 2, 20)


def test_impossible_counts_name_the_field() -> None:
    with pytest.raises(RecipeError, match="sft.data"):
        reasoning.generate(1, 100_000, 5, 1, 1, 2)
    with pytest.raises(RecipeError, match="min_steps"):
        reasoning.generate(1, 10, 5, 3, 2, 20)


def test_stage_outputs_are_byte_identical(tmp_path) -> None:
    recipe = tiny_recipe(
        {
            "sft": {
                "data": {
                    "n_train": 60,
                    "n_heldout": 6,
                    "min_steps": 1,
                    "max_steps": 2,
                    "max_value": 20,
                }
            }
        }
    )
    first = run_stage("reasoning", recipe, tmp_path / "a", {}, reasoning.run, project=PROJECT)
    second = run_stage("reasoning", recipe, tmp_path / "b", {}, reasoning.run, project=PROJECT)
    assert first["outputs"] == second["outputs"]
    assert first["summary"]["n_train"] == 60 and first["summary"]["n_heldout"] == 6
    lines = (tmp_path / "a" / "heldout.jsonl").read_text().splitlines()
    record = json.loads(lines[0])
    assert sorted(record) == ["answer", "id", "lang", "license", "question", "source", "thinking"]
    assert record["source"] == "synthetic_reasoning" and record["license"] == "CC0-1.0"
    assert record["answer"].isdigit()
    assert len(reasoning.read_split(tmp_path / "a", "train")) == 60
