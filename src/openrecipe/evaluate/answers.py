"""Answer extraction for the reasoning tasks: what counts as the model's final answer.

The answer is read exactly as the RL reward reads it (``openrecipe.evaluate.grader``): only the
text after the last ``</think>``, preferring a ``\\boxed{...}``, else the last number; numbers
compare as exact fractions ("14" == "14.0" == "1,4"? no: "1,024" == "1024"). One definition
serves both, so a reward and a score can never disagree about the same generation.
"""

from __future__ import annotations

from openrecipe.data.chat import THINK_CLOSE, THINK_OPEN
from openrecipe.evaluate.grader import extract_answer as _verifier_extract
from openrecipe.evaluate.grader import numeric_match


def thinking_span(generation: str) -> str | None:
    """Text after the first ``<think>`` up to ``</think>`` (or to the end, if the model never
    closed it); None when no reasoning was opened."""
    _, sep, rest = generation.partition(THINK_OPEN)
    if not sep:
        return None
    return rest.partition(THINK_CLOSE)[0]


def extract_answer(generation: str) -> str:
    """The final answer of a generation, whitespace-stripped ("" when there is none)."""
    return (_verifier_extract(generation) or "").strip()


def is_correct(generation: str, gold: str) -> bool:
    """The held-out answers are integers: exact numeric match, as the RL reward scores them."""
    return bool(numeric_match(_verifier_extract(generation), gold.strip()))
