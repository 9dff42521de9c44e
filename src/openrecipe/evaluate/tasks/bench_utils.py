"""Functions the benchmark task YAMLs name with ``!function bench_utils.<name>``.

Copied beside the rendered YAMLs (lm-eval resolves ``!function`` relative to the YAML file). The
HellaSwag and Winogrande functions reproduce lm-eval 0.4.13's (``tasks/hellaswag/utils.py``,
``tasks/winogrande/preprocess_winogrande.py``) so prompts match its published-style scores.

Everything but ``process_math`` needs only lm-eval: a run's exported task directory scores its
log-likelihood benchmarks with stock ``lm_eval`` and no openrecipe installed. ``process_math``
grades with openrecipe's Verifier and imports it when first called.
"""

from __future__ import annotations

import re
from typing import Any

from lm_eval.api.samplers import ContextSampler

_LETTERS = "ABCDEFGH"


# ------------------------------------------------------------------------------------------
# MMLU: one flat task, few-shot from the question's own subject (see tasks/mmlu.yaml)


def _set_of(doc: dict[str, Any]) -> str:
    return doc["openrecipe_id"].rpartition(":")[0]


def mmlu_test_docs(dataset: Any) -> Any:
    """The test items of the combined test + dev split."""
    return dataset.filter(lambda doc: _set_of(doc) == "mmlu")


def mmlu_dev_docs(dataset: Any) -> Any:
    """The dev items of the combined split: the few-shot pool."""
    return dataset.filter(lambda doc: _set_of(doc) == "mmlu_dev")


class SubjectFirstN(ContextSampler):
    """lm-eval's ``first_n`` per subject: the first ``n`` dev items of the eval doc's subject,
    in the source order (the index in ``openrecipe_id``; eval_data shuffles its files), which
    is what each stock ``mmlu_<subject>`` subtask's ``first_n`` over its dev split yields."""

    def sample(self, n: int, eval_doc: dict | None = None, df: Any = None, **kwargs: Any) -> list:
        if eval_doc is None:
            raise ValueError("SubjectFirstN needs the eval doc (fewshot_split = test_split)")
        pool = sorted(
            (doc for doc in self.fewshot_docs() if doc["subject"] == eval_doc["subject"]),
            key=lambda doc: int(doc["openrecipe_id"].rpartition(":")[2]),
        )
        if n > len(pool):
            raise ValueError(f"{n}-shot asked, subject {eval_doc['subject']} has {len(pool)}")
        return pool[:n]


# ------------------------------------------------------------------------------------------
# ARC in OLMES' "mc" format


def arc_mc_text(doc: dict[str, Any]) -> str:
    """ "Question: ...\n A. ...\n B. ...\nAnswer:" (oe-eval's arc ``:mc`` prompt)."""
    options = "".join(f" {_LETTERS[i]}. {t}\n" for i, t in enumerate(doc["choices"]["text"]))
    return f"Question: {doc['question']}\n{options}Answer:"


def arc_mc_choices(doc: dict[str, Any]) -> list[str]:
    return list(_LETTERS[: len(doc["choices"]["text"])])


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
    from openrecipe.evaluate.grader import math_correct

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
