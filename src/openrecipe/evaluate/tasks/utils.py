"""Functions the task YAMLs name with ``!function utils.<name>``.

lm-eval resolves ``!function`` relative to the YAML file, so this file is copied beside the
rendered YAMLs; the logic itself lives in openrecipe (answers, chat format) and is imported.
"""

from __future__ import annotations

from typing import Any

from openrecipe.data.chat import assistant_content
from openrecipe.evaluate.answers import is_correct


def process_heldout(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """exact_match of the extracted final answer against the gold integer string."""
    return {"exact_match": float(is_correct(results[0], str(doc["answer"])))}


def gold_turn_reasoning_on(doc: dict[str, Any]) -> str:
    return assistant_content(doc["thinking"], str(doc["answer"]))


def gold_turn_reasoning_off(doc: dict[str, Any]) -> str:
    return assistant_content(None, str(doc["answer"]))


def _bpb(target: str, results: list[tuple[float, bool]]) -> dict[str, tuple[float, int]]:
    """(loglikelihood, bytes) pairs, summed by lm-eval's ``bits_per_byte`` aggregation."""
    loglikelihood, _is_greedy = results[0]
    return {"bits_per_byte": (loglikelihood, len(target.encode("utf-8")))}


def process_bpb_reasoning_on(doc: dict[str, Any], results: list[tuple[float, bool]]) -> dict:
    return _bpb(gold_turn_reasoning_on(doc), results)


def process_bpb_reasoning_off(doc: dict[str, Any], results: list[tuple[float, bool]]) -> dict:
    return _bpb(gold_turn_reasoning_off(doc), results)
