"""The GRPO objective: group-relative advantages, the token-level clipped surrogate and the
completion log-probs it is computed on (GRPO, Shao et al. 2024, arXiv:2402.03300; clip-higher
and token-level averaging from DAPO, arXiv:2503.14476). Pure tensor functions; the ``rl`` stage
(``openrecipe.train.rl``) samples, rewards and steps the optimizer around them.
"""

from __future__ import annotations

import torch
from transformers import PreTrainedModel

ADV_EPS = 1e-4  # (r - mean) / (std + eps), TRL's GRPOTrainer uses the same epsilon


def group_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """(r - mean) / (std + eps) within each row (a row is one prompt's group)."""
    return (rewards - rewards.mean(dim=1, keepdim=True)) / (
        rewards.std(dim=1, keepdim=True) + ADV_EPS
    )


def clipped_surrogate(
    new_logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_low: float,
    clip_high: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-level PPO objective as a loss (mean over all completion tokens of the batch), and
    the share of tokens whose ratio was clipped. ``advantages`` is per sequence, [B, 1]."""
    ratio = torch.exp(new_logp - old_logp)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1 - clip_low, 1 + clip_high) * advantages
    per_token = -torch.minimum(unclipped, clipped)
    tokens = mask.sum().clamp(min=1)
    was_clipped = ((clipped < unclipped) & mask.bool()).sum() / tokens
    return (per_token * mask).sum() / tokens, was_clipped


def completion_logprobs(
    model: PreTrainedModel,
    prompts: list[list[int]],
    completions: list[list[int]],
    pad_id: int,
    temperature: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs [B, T] of each completion token under ``model`` (at the sampling temperature),
    and the mask of real tokens. Sequences are right-padded, which is exact for causal layers."""
    width = max(len(p) + len(c) for p, c in zip(prompts, completions, strict=True))
    t_max = max(len(c) for c in completions)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention = torch.zeros_like(ids)
    index = torch.zeros((len(prompts), t_max), dtype=torch.long)
    mask = torch.zeros((len(prompts), t_max))
    for row, (prompt, completion) in enumerate(zip(prompts, completions, strict=True)):
        seq = prompt + completion
        ids[row, : len(seq)] = torch.tensor(seq)
        attention[row, : len(seq)] = 1
        # the logit at position i predicts token i + 1
        index[row, : len(completion)] = torch.arange(len(prompt) - 1, len(seq) - 1)
        mask[row, : len(completion)] = 1
    logits = model(input_ids=ids, attention_mask=attention).logits.float() / temperature
    picked = logits.gather(1, index[:, :, None].expand(-1, -1, logits.shape[-1]))
    targets = ids.gather(1, (index + 1).clamp(max=width - 1))
    logp = torch.log_softmax(picked, dim=-1).gather(2, targets[:, :, None]).squeeze(2)
    return logp * mask, mask
