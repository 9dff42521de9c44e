"""Answer checking for rewards (GRPO) and scoring (evaluation).

The final answer is the text after the last ``</think>`` (the whole text if there is none); in it
the last ``\\boxed{...}`` if any, else the last number. Numbers are compared exactly as
fractions (``14``, ``14.0`` and ``1,4``-free ``14`` agree; ``0.1`` is exactly 1/10), in process.

Symbolic answers (LaTeX expressions) go to ``math_verify`` (parse + verify). math-verify is not
thread-safe and enforces its own timeouts with ``signal.alarm``, which works only in a process's
main thread, so it runs in a ``ProcessPoolExecutor`` (spawned workers: forking a process that
holds torch's thread pools can deadlock), never in threads; an outer timeout guards each call.
Checked with the pinned antlr4-python3-runtime 4.9.3 (omegaconf's pin) and math-verify 0.9.0:
LaTeX parsing works (``\\frac{1}{2}`` = ``0.5``; ``x^2+2x+1`` = ``(x+1)^2``).
"""

from __future__ import annotations

import atexit
import multiprocessing
import re
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from fractions import Fraction

from openrecipe.data.chat import THINK_CLOSE

# A minus sign counts only where it cannot be a subtraction ("17-3" ends in 3, not -3).
_NUMBER = re.compile(r"(?:(?<![\w).])-)?(?:\d[\d,]*(?:\.\d+)?|\.\d+)")
_BOXED = "\\boxed{"
SYMBOLIC_TIMEOUT_S = 5.0  # per answer, wall clock, parse + verify


def final_segment(text: str) -> str:
    """The text after the last ``</think>``, or all of it when reasoning left no close tag."""
    head, sep, tail = text.rpartition(THINK_CLOSE)
    return tail if sep else text


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}``, braces balanced; None if absent or unclosed."""
    start = text.rfind(_BOXED)
    if start < 0:
        return None
    depth, begin = 1, start + len(_BOXED)
    for index in range(begin, len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth == 0:
            return text[begin:index]
    return None


def extract_answer(text: str) -> str | None:
    """The answer string a completion commits to, or None when it gives none."""
    segment = final_segment(text)
    boxed = last_boxed(segment)
    if boxed is not None:
        return boxed.strip()
    numbers = _NUMBER.findall(segment)
    return numbers[-1] if numbers else None


def to_number(text: str) -> Fraction | None:
    """Exact value of a plain number ("1,234", "-3", "0.25"); None for anything else."""
    cleaned = text.strip().replace(",", "").rstrip(".")
    if not _NUMBER.fullmatch(cleaned):
        return None
    return Fraction(cleaned)


def numeric_match(predicted: str | None, gold: str) -> bool | None:
    """True/False when both sides are plain numbers; None when a symbolic check is needed."""
    if predicted is None:
        return False
    a, b = to_number(predicted), to_number(gold)
    if a is None or b is None:
        return None
    return a == b


def _math_verify(predicted: str, gold: str) -> bool:
    """Runs in a worker process (main thread there, so math-verify's signal timeouts work)."""
    from math_verify import parse, verify

    def parsed(text: str) -> list:
        # Wrapping in $...$ makes math-verify read a bare LaTeX expression as LaTeX.
        return parse(text if "$" in text or "\\boxed" in text else f"${text}$")

    return bool(verify(parsed(gold), parsed(predicted)))


class Verifier:
    """Scores (completion, gold) pairs; owns the worker pool for symbolic checks.

    Use as a context manager. The pool starts only when a symbolic answer first needs it."""

    def __init__(self, workers: int = 1, timeout_s: float = SYMBOLIC_TIMEOUT_S) -> None:
        self.workers, self.timeout_s = workers, timeout_s
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> Verifier:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _symbolic(self, pairs: list[tuple[str, str]]) -> list[bool]:
        if self._pool is None:
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(self.workers, mp_context=context)
        futures = [self._pool.submit(_math_verify, p, g) for p, g in pairs]
        results = []
        for future in futures:
            try:
                results.append(future.result(timeout=self.timeout_s))
            except FutureTimeout:
                results.append(False)  # an answer that cannot be checked in time earns nothing
            except Exception:  # noqa: BLE001 - a parser crash on model output is a wrong answer
                results.append(False)
        return results

    def score(self, completions: list[str], golds: list[str]) -> list[bool]:
        """Correctness of each completion's final answer against its gold answer."""
        predicted = [extract_answer(text) for text in completions]
        verdicts: list[bool | None] = [
            numeric_match(p, g) for p, g in zip(predicted, golds, strict=True)
        ]
        pending = [i for i, v in enumerate(verdicts) if v is None]
        if pending:
            checked = self._symbolic([(predicted[i] or "", golds[i]) for i in pending])
            for index, ok in zip(pending, checked, strict=True):
                verdicts[index] = ok
        return [bool(v) for v in verdicts]


# One grader per process, for lm-eval's per-document process_results (tasks/bench_utils.py).
# Here rather than in benchmarks.py: bench_utils importing benchmarks put the whole task-template
# directory into the code identity of every stage that imports bench_utils (eval_data does), so a
# template edit reran eval_data, decontamination and the training after it.
_VERIFIER: Verifier | None = None


def _verifier() -> Verifier:
    """One Verifier per process: its math-verify worker is spawned once, on the first symbolic
    answer, and shut down at exit (lm-eval calls process_results once per document)."""
    global _VERIFIER
    if _VERIFIER is None:
        _VERIFIER = Verifier(workers=1)
        atexit.register(_VERIFIER.__exit__, None, None, None)
    return _VERIFIER


def math_correct(generation: str, gold: str) -> bool:
    """The grader's verdict on ``generation``'s final answer against ``gold``."""
    return _verifier().score([generation], [gold])[0]
