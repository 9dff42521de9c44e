"""The DPO objective on sequence log-probabilities (pure tensor functions; the ``dpo`` stage,
``openrecipe.train.dpo``, builds the pairs, computes the log-probs and steps the optimizer).

With ``h = (log pi(y_w|x) - log pi(y_l|x)) - (log ref(y_w|x) - log ref(y_l|x))``:

- ``sigmoid`` (Direct Preference Optimization, Rafailov et al. 2023, arXiv:2305.18290):
  ``-(1 - eps) * log sigmoid(beta * h) - eps * log sigmoid(-beta * h)``; ``eps`` is label
  smoothing (conservative DPO, cDPO; ``eps = 0`` is plain DPO).
- ``ipo`` (Azar et al. 2023, arXiv:2310.12036): ``(h' - 1 / (2 * beta))**2`` where ``h'`` is
  ``h`` with each completion's log-ratio divided by its token count (the per-token average, as
  TRL's ``DPOTrainer`` does, confirmed there with the IPO authors); the caller passes the counts.

The implicit rewards are ``beta * (log pi - log ref)`` of each completion (summed log-probs,
for both losses); their margin and the share of pairs where the chosen one's is higher (reward
accuracy) are the usual DPO metrics. Losses and rewards equal TRL 1.16's
``DPOTrainer._compute_loss`` for ``sigmoid`` and ``ipo`` (``bench/dpo_loss_vs_trl.py`` runs
both on the same log-probs; the unit tests pin TRL's numbers and a hand computation). One
difference: TRL 1.16's ``sigmoid`` ignores ``label_smoothing`` (its cDPO form survives only in
the ``robust``/``aot`` losses); here ``label_smoothing`` is the cDPO of the DPO authors' note
and of earlier TRL releases, so a nonzero value is checked against the hand computation only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

LossType = Literal["sigmoid", "ipo"]


@dataclass(frozen=True)
class DpoLoss:
    """Per-pair loss and implicit rewards (all [B])."""

    losses: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    *,
    beta: float,
    loss_type: LossType = "sigmoid",
    label_smoothing: float = 0.0,
    chosen_tokens: torch.Tensor | None = None,
    rejected_tokens: torch.Tensor | None = None,
) -> DpoLoss:
    """The per-pair loss of summed sequence log-probs [B] (see the module docstring);
    ``ipo`` also needs each completion's token count [B]."""
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    chosen_ratio = policy_chosen - ref_chosen
    rejected_ratio = policy_rejected - ref_rejected
    if loss_type == "sigmoid":
        h = chosen_ratio - rejected_ratio
        losses = (
            -F.logsigmoid(beta * h) * (1 - label_smoothing)
            - F.logsigmoid(-beta * h) * label_smoothing
        )
    elif loss_type == "ipo":
        if label_smoothing:
            raise ValueError("label_smoothing applies to the sigmoid loss only")
        if chosen_tokens is None or rejected_tokens is None:
            raise ValueError("the ipo loss needs the completions' token counts")
        h = chosen_ratio / chosen_tokens.clamp(min=1) - rejected_ratio / rejected_tokens.clamp(
            min=1
        )
        losses = (h - 1 / (2 * beta)) ** 2
    else:
        raise ValueError(f"unknown DPO loss type {loss_type!r} (sigmoid, ipo)")
    return DpoLoss(losses, beta * chosen_ratio.detach(), beta * rejected_ratio.detach())


def sequence_logprobs(
    token_logp: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sequence summed log-prob [B] and token count [B] from per-token log-probs and their
    mask [B, T]."""
    return (token_logp * mask).sum(dim=1), mask.sum(dim=1)
