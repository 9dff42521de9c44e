"""Functions the benchmark task YAMLs name with ``!function bench_utils.<name>``.

Copied beside the rendered YAMLs (lm-eval resolves ``!function`` relative to the YAML file). The
HellaSwag and Winogrande functions reproduce lm-eval 0.4.13's (``tasks/hellaswag/utils.py``,
``tasks/winogrande/preprocess_winogrande.py``) so prompts match its published-style scores.
"""

from __future__ import annotations

import re
from typing import Any

from openrecipe.evaluate.benchmarks import math_correct


def _hellaswag_clean(text: str) -> str:
    # Brackets are artifacts of the WikiHow part of HellaSwag (lm-eval's preprocess()).
    text = text.strip().replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


def hellaswag_docs(dataset: Any) -> Any:
    def one(doc: dict[str, Any]) -> dict[str, Any]:
        context = doc["ctx_a"] + " " + doc["ctx_b"].capitalize()
        return {
            "query": _hellaswag_clean(doc["activity_label"] + ": " + context),
            "choices": [_hellaswag_clean(ending) for ending in doc["endings"]],
            "gold": int(doc["label"]),
        }

    return dataset.map(one)


def winogrande_text(doc: dict[str, Any]) -> int:
    """Index of the correct context (lm-eval's partial scoring: contexts differ, target fixed)."""
    return {"1": 0, "2": 1}[doc["answer"]]


def winogrande_target(doc: dict[str, Any]) -> str:
    return doc["sentence"][doc["sentence"].index("_") + 1 :].strip()


def winogrande_choices(doc: dict[str, Any]) -> list[str]:
    blank = doc["sentence"].index("_")
    return [doc["sentence"][:blank] + option for option in (doc["option1"], doc["option2"])]


def process_math(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """exact_match: the Verifier's verdict on the generation's final answer against ``gold``."""
    return {"exact_match": float(math_correct(results[0], str(doc["gold"])))}


def _bpb(target: str, results: list[tuple[float, bool]]) -> dict[str, tuple[float, int]]:
    """(loglikelihood, bytes) summed by lm-eval's ``bits_per_byte`` aggregation; the bytes are
    those of the scored continuation: the target with its leading space (see gsm8k_bpb.yaml)."""
    loglikelihood, _is_greedy = results[0]
    return {"bits_per_byte": (loglikelihood, len((" " + target).encode("utf-8")))}


def process_bpb_gsm8k(doc: dict[str, Any], results: list[tuple[float, bool]]) -> dict:
    return _bpb(doc["choices"][0], results)


def process_bpb_math500(doc: dict[str, Any], results: list[tuple[float, bool]]) -> dict:
    return _bpb(doc["solution"], results)
