"""Answer extraction and checking: numeric in process, symbolic through math-verify workers."""

from __future__ import annotations

from fractions import Fraction

import pytest

from openrecipe.evaluate.grader import (
    Verifier,
    extract_answer,
    last_boxed,
    numeric_match,
    to_number,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>12+5=17. 17-3=14.</think>14", "14"),
        ("<think>12+5=17.</think>The answer is 3 apples.", "3"),
        ("<think>7-2=5.", "5"),  # unclosed think block: the last number of the whole text
        ("<think>1+1=2.</think>no idea", None),
        ("so \\boxed{\\frac{1}{2}} and 7", "\\frac{1}{2}"),
        ("\\boxed{1} then \\boxed{{x}+1}", "{x}+1"),
        ("17-3", "3"),
        ("x = -3", "-3"),
        ("total: 1,234.", "1,234"),
    ],
)
def test_extract_answer(text: str, expected: str | None) -> None:
    assert extract_answer(text) == expected


def test_last_boxed_unclosed() -> None:
    assert last_boxed("\\boxed{12") is None


def test_numbers_compare_exactly() -> None:
    assert to_number("1,234") == 1234
    assert to_number("0.1") == Fraction(1, 10)
    assert to_number("x+1") is None
    assert numeric_match("14.0", "14") is True
    assert numeric_match("13", "14") is False
    assert numeric_match(None, "14") is False
    assert numeric_match("\\frac{1}{2}", "0.5") is None  # needs the symbolic path


def test_numeric_scoring_needs_no_worker() -> None:
    with Verifier() as verifier:
        assert verifier.score(["</think>14", "</think>15", "nothing"], ["14", "14", "14"]) == [
            True,
            False,
            False,
        ]
        assert verifier._pool is None


def test_symbolic_scoring_with_math_verify() -> None:
    with Verifier() as verifier:
        got = verifier.score(
            ["</think>\\boxed{\\frac{1}{2}}", "</think>\\boxed{(x+1)^2}", "</think>\\boxed{x^2+1}"],
            ["0.5", "x^2+2x+1", "x^2+2x+1"],
        )
        assert verifier._pool is not None
    assert got == [True, True, False]


def test_symbolic_timeout_scores_false() -> None:
    with Verifier(timeout_s=0.0) as verifier:
        assert verifier.score(["</think>\\boxed{\\frac{1}{2}}"], ["0.5"]) == [False]
