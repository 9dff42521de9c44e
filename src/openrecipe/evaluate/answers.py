"""Answer extraction for the reasoning tasks: what counts as the model's final answer.

The SFT data ends an assistant turn with ``<think>...</think>ANSWER``; the answer is read only
from the text after the last ``</think>`` (so numbers in the reasoning never count), preferring a
``\\boxed{...}`` if the model wrote one (the convention of GSM8K/MATH-style graders, e.g.
lm-eval's ``minerva_math`` and math-verify), else the last integer or decimal.
"""

from __future__ import annotations

import re

from openrecipe.data.chat import THINK_CLOSE, THINK_OPEN

_BOXED = "\\boxed{"
# An optionally signed integer or decimal, with optional thousands separators ("1,024").
_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?")


def answer_part(generation: str) -> str:
    """Text after the last ``</think>``; the whole generation when there is none (a model
    without reasoning, or one that ran out of tokens while thinking)."""
    return generation.rpartition(THINK_CLOSE)[2]


def thinking_span(generation: str) -> str | None:
    """Text after the first ``<think>`` up to ``</think>`` (or to the end, if the model never
    closed it); None when no reasoning was opened."""
    _, sep, rest = generation.partition(THINK_OPEN)
    if not sep:
        return None
    return rest.partition(THINK_CLOSE)[0]


def _last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}``, braces balanced; None if absent or unclosed."""
    start = text.rfind(_BOXED)
    if start < 0:
        return None
    depth, i = 1, start + len(_BOXED)
    while i < len(text):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start + len(_BOXED) : i]
        i += 1
    return None


def extract_answer(generation: str) -> str:
    """The final answer of a generation, whitespace-stripped ("" when there is none)."""
    text = answer_part(generation)
    boxed = _last_boxed(text)
    if boxed is not None:
        return boxed.strip()
    numbers = _NUMBER.findall(text)
    return numbers[-1].replace(",", "") if numbers else ""


def is_correct(generation: str, gold: str) -> bool:
    """Exact match of the extracted answer and the gold answer (both stripped)."""
    return extract_answer(generation) == gold.strip()
