"""Paired differences of per-item scores, with their standard errors.

Two evaluations of the same items (two checkpoints of one run, or one checkpoint of two runs)
differ item by item; the noise of the difference of their means is that of the per-item
differences, far below two independent binomial errors when the scores are correlated. Used by
the report's reasoning table (``reasoning_report``) and by ``openrecipe diff``.

- ``paired_mean``: metrics that are a mean over items (exact_match, acc, acc_norm, thinking
  tokens): difference = mean(b_i - a_i), standard error = sd(b_i - a_i) / sqrt(n).
- ``paired_ratio``: lm-eval's ``bits_per_byte``, a ratio of sums (-sum loglik / sum bytes / ln 2):
  the standard error comes from the ratio's delta-method linearisation, per item
  u_i = (x_i - R w_i) / mean(w) for each side, then paired as above.
Items are joined by id; only ids both sides scored count (``n``).
"""

from __future__ import annotations

import math
from typing import Any


def _summary(diffs: list[float]) -> tuple[float, float]:
    """(mean, standard error of the mean) of per-item differences (n >= 2)."""
    n = len(diffs)
    mean = sum(diffs) / n
    variance = sum((d - mean) ** 2 for d in diffs) / (n - 1)
    return mean, math.sqrt(variance / n)


def _result(difference: float, stderr: float, n: int) -> dict[str, Any]:
    return {
        "difference": difference,
        "paired_stderr": stderr,
        "z": difference / stderr if stderr > 0 else None,
        "n": n,
    }


def paired_mean(a: dict[str, float], b: dict[str, float]) -> dict[str, Any] | None:
    """``b`` minus ``a`` over the ids both scored; None with fewer than 2 such items."""
    ids = sorted(a.keys() & b.keys())
    if len(ids) < 2:
        return None
    difference, stderr = _summary([float(b[i]) - float(a[i]) for i in ids])
    return _result(difference, stderr, len(ids))


def paired_ratio(
    a: dict[str, tuple[float, float]], b: dict[str, tuple[float, float]]
) -> dict[str, Any] | None:
    """Difference of ratio estimates sum(x) / sum(w) (``b`` minus ``a``), items given as
    ``{id: (x, w)}``; None with fewer than 2 common items or no weight."""
    ids = sorted(a.keys() & b.keys())
    if len(ids) < 2:
        return None
    linear = {}
    ratios = {}
    for side, items in (("a", a), ("b", b)):
        xs = [float(items[i][0]) for i in ids]
        ws = [float(items[i][1]) for i in ids]
        mean_w = sum(ws) / len(ws)
        if mean_w <= 0:
            return None
        ratio = sum(xs) / sum(ws)
        ratios[side] = ratio
        linear[side] = [(x - ratio * w) / mean_w for x, w in zip(xs, ws, strict=True)]
    _, stderr = _summary([ub - ua for ua, ub in zip(linear["a"], linear["b"], strict=True)])
    return _result(ratios["b"] - ratios["a"], stderr, len(ids))


def pooled_paired(pairs: list[tuple[dict[str, float], dict[str, float]]]) -> dict[str, Any] | None:
    """``b`` minus ``a`` pooled over several paired comparisons of the same items (one per
    alignment seed), over the ids every comparison scored; None with fewer than 2 such ids.

    The seeds share their items (one held-out set), so an item that RL fixes in one seed tends
    to be fixed in the others: the per-seed differences are correlated through the items, and
    adding the per-seed variances as if the seeds were independent samples understates the
    error when they are. The criterion therefore clusters by item: per item, the mean over
    seeds of its paired difference, D_i = mean_s (b_si - a_si); difference = mean(D), standard
    error = sd(D) / sqrt(n), z = difference / standard error (a paired test on the items, valid
    whatever the correlation between seeds). The stratified form that treats the seeds as
    independent, sqrt(sum_s se_s^2) / S (the sum of all differences over the square root of the
    summed variances), is returned beside it as ``stderr_independent``/``z_independent``; with
    equally many items per seed both forms have the same difference."""
    if not pairs:
        return None
    ids = sorted(set.intersection(*(set(a) & set(b) for a, b in pairs)))
    if len(ids) < 2:
        return None
    seeds = len(pairs)
    per_seed = [[float(b[i]) - float(a[i]) for i in ids] for a, b in pairs]
    per_item = [sum(d[j] for d in per_seed) / seeds for j in range(len(ids))]
    difference, stderr = _summary(per_item)
    independent = math.sqrt(sum(_summary(d)[1] ** 2 for d in per_seed)) / seeds
    return {
        **_result(difference, stderr, len(ids)),
        "seeds": seeds,
        "stderr_independent": independent,
        "z_independent": difference / independent if independent > 0 else None,
    }
