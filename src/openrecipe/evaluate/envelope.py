"""The expected envelope of a CPU proxy's scores (``release.envelope``), derived, not fitted.

A proxy is a ~10^5-parameter model trained for a few minutes: it cannot know ARC or MMLU, and
its base checkpoint has never seen the chat template. What a *faithful* proxy run must show is
therefore predictable from the task and the item count alone, and a score outside it means a
broken run (leaked eval items, an inverted or mis-parsed answer, a chat template not applied,
SFT that did not train) rather than a good or bad model:

- multiple choice (``acc``, ``acc_norm``): chance ``p`` +- 3 binomial standard errors at the
  recipe's ``limit`` (``p`` is the nominal 1 / choices, in either answer format: ARC and MMLU 4, HellaSwag 4, PIQA and
  Winogrande 2);
- the held-out reasoning task, base checkpoint: at most 1/8 exact matches (the base never saw
  the answer format);
- bits per byte of the gold reasoning answers: at least 3 for the base checkpoint (the format is
  new to it), at most 2.5 after SFT and RL (they train on exactly that format; a uniform guess
  over printable ASCII costs 6.6).

The proxy recipes carry the generated entries as plain YAML, so an auditor reads the numbers
where the report uses them; ``tests/unit/test_releases.py`` checks they equal
:func:`proxy_envelope` of each recipe's eval tasks, so a changed ``limit`` cannot leave a stale
band behind.
"""

from __future__ import annotations

import math
from typing import Any

CHANCE = {  # both answer formats of a benchmark share its chance level
    "arc_easy": 0.25,
    "arc_easy_mc": 0.25,
    "arc_challenge": 0.25,
    "arc_challenge_mc": 0.25,
    "hellaswag": 0.25,
    "mmlu": 0.25,
    "mmlu_rc": 0.25,
    "piqa": 0.5,
    "winogrande": 0.5,
}
Z = 3.0
BASE_HELDOUT_MAX = 0.125
BASE_BPB_MIN = 3.0
TRAINED_BPB_MAX = 2.5


def chance_band(chance: float, n: int, z: float = Z) -> tuple[float, float]:
    """``chance`` +- ``z`` binomial standard errors at ``n`` items, clipped to [0, 1]."""
    half = z * math.sqrt(chance * (1 - chance) / n)
    return round(max(0.0, chance - half), 4), round(min(1.0, chance + half), 4)


def proxy_envelope(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The envelope entries for a proxy evaluating ``tasks`` (the recipe's ``eval.tasks``)."""
    entries: list[dict[str, Any]] = []
    for task in tasks:
        name, limit = task["name"], task.get("limit")
        if name in CHANCE and limit:
            low, high = chance_band(CHANCE[name], limit)
            for metric in ("acc", "acc_norm"):
                entries.append({"task": name, "metric": metric, "low": low, "high": high})
        elif name == "openrecipe_reasoning_heldout":
            entries.append({"task": name, "metric": "exact_match", "checkpoint": "base",
                            "low": 0.0, "high": BASE_HELDOUT_MAX})  # fmt: skip
        elif name == "openrecipe_reasoning_bpb":
            entries.append({"task": name, "metric": "bits_per_byte", "checkpoint": "base",
                            "low": BASE_BPB_MIN, "high": 100.0})  # fmt: skip
            for checkpoint in ("sft", "rl"):
                entries.append({"task": name, "metric": "bits_per_byte", "checkpoint": checkpoint,
                                "low": 0.0, "high": TRAINED_BPB_MAX})  # fmt: skip
    return entries
