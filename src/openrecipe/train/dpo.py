"""The ``dpo`` stage: Direct Preference Optimization (Rafailov et al. 2023, arXiv:2305.18290;
the loss in ``dpo_loss.py``) after the step before it in ``post_training`` (docs/post-training.md).

Pairs (``dpo.pairs``), built once at the start and written to ``pairs.jsonl`` (evidence: what
was preferred to what, and the reference log-probs each pair was trained against):

- ``rollouts``: the first ``prompts`` train questions of the reasoning set, each sampled
  ``samples`` times from the starting policy with reasoning on (``sampling.sample_group``, one
  ``torch.Generator`` per (seed, prompt, sample), so changing ``samples`` or ``prompts`` never
  shifts another sample), graded by the verifier as ``rl`` grades (right answer after a closed
  ``</think>``). The pair is the first correct completion that stopped (chosen) and the first
  incorrect one (rejected); a prompt with no such two is skipped and counted.
- ``dataset``: a JSONL file inside the project, pinned by sha256 (a different file is refused,
  naming both hashes); each line ``{"prompt": [messages], "chosen": [assistant message],
  "rejected": [assistant message]}`` (TRL's conversational preference format), other keys kept
  as the pair's metadata. Encoded with the policy's chat template; the completion runs to its
  ``<|im_end|>``.

The reference is the starting policy, frozen: its log-prob of every pair is computed once,
before the first update, and kept (in ``pairs.jsonl``), never recomputed per step. Each step
takes the next ``batch_size`` pairs in file order (wrapping around), one AdamW update at a
constant ``lr`` with the alignment stages' gradient clip.

Why a plain loop and not TRL's ``DPOTrainer`` (the reasons of ``rl.py``): the trainer orders
and shuffles pairs through accelerate's dataloader and seeds through torch's global RNG, whose
consumption depends on its internals and version, and its resume restores the dataloader
position only approximately; here the data position is a function of the step, sampling of
(seed, prompt, sample), so two runs give identical ``model.safetensors`` and a run killed and
resumed ends with the same bytes (both tested).

The pairs are built in ``dpo_pairs.py``. Outputs: ``model/`` (safetensors + the starting policy's tokenizer files), ``pairs.jsonl`` and
``metrics.jsonl``, one object per step: ``step, loss, chosen_reward, rejected_reward,
reward_margin, reward_accuracy`` (means over the step's pairs; the implicit reward is
``beta * (log pi - log ref)``, the accuracy the share of pairs whose chosen reward is higher).

Resume: every ``dpo.checkpoint_every`` steps policy, AdamW state, RNGs and the metric rows go to
``<out parent>/.<out name>.resume/<key>/`` (``resume.py``); the pairs and reference log-probs
are rebuilt from the starting policy (deterministic) before the checkpoint is loaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import PreTrainedModel

from openrecipe.errors import StageInputError
from openrecipe.manifest import read_manifest
from openrecipe.post_training import policy_stage
from openrecipe.stage import StageContext
from openrecipe.stage_config import decode_view, view_field
from openrecipe.train.dpo_loss import dpo_loss, sequence_logprobs
from openrecipe.train.dpo_pairs import Pair, PairsParams, dataset_pairs, describe, rollout_pairs
from openrecipe.train.grpo_loss import completion_logprobs
from openrecipe.train.hf_checkpoint import load_checkpoint, save_checkpoint
from openrecipe.train.resume import Resumable
from openrecipe.train.sft import GRAD_CLIP


@dataclass(frozen=True)
class DpoParams:
    """``dpo``: loss, beta, batch shape, learning rate, length limit, checkpoints, pairs."""

    loss: Literal["sigmoid", "ipo"]
    beta: float
    label_smoothing: float
    steps: int
    lr: float
    batch_size: int
    max_length: int
    checkpoint_every: int
    pairs: PairsParams


@dataclass(frozen=True)
class DpoConfig:
    """The dpo stage's view, typed (``post_training`` says which step's model is the policy)."""

    seed: int = view_field("seed")
    dpo: DpoParams = view_field("dpo")
    post_training: tuple[str, ...] = view_field("post_training")
    threads: int = view_field("resources.threads")


def run(ctx: StageContext) -> dict[str, Any]:
    expected = policy_stage(ctx.recipe.data, "dpo")  # refuses a sequence dpo cannot run in
    cfg = decode_view(DpoConfig, ctx.config, ctx.stage)
    params = cfg.dpo
    policy_dir = ctx.input("policy")
    found = read_manifest(policy_dir)["stage"]
    if found != expected:
        raise StageInputError(
            f"stage dpo: --input policy={policy_dir} is a {found} stage, but post_training "
            f"{list(cfg.post_training)} puts dpo after {expected}"
        )
    policy, tokenizer = load_checkpoint(policy_dir)
    if params.pairs.source == "rollouts":
        (pairs, counts), external = rollout_pairs(ctx, policy, tokenizer, params.pairs), []
    else:
        pairs, external = dataset_pairs(ctx, tokenizer, params.pairs)
        counts = {"pairs_read": len(pairs)}
    if not pairs:
        raise StageInputError(
            f"stage dpo: no preference pairs ({counts}); with pairs.source rollouts every "
            "prompt's samples were all right or all wrong: raise pairs.samples or prompts"
        )
    for index, pair in enumerate(pairs):
        length = len(pair.prompt) + max(len(pair.chosen), len(pair.rejected))
        if length > params.max_length:
            raise StageInputError(
                f"stage dpo: pair {index} ({describe(pair)}) is {length} tokens, over "
                f"dpo.max_length {params.max_length}"
            )
    _reference_logprobs(policy, tokenizer, pairs, params)
    _write_pairs(ctx.out / "pairs.jsonl", pairs)

    optimizer = torch.optim.AdamW(policy.parameters(), lr=params.lr, weight_decay=0.0)
    resume = Resumable(ctx, params.checkpoint_every)
    state: dict[str, Any] = resume.load(policy, optimizer) or {"step": 0, "rows": []}
    history: list[dict[str, Any]] = state["rows"]
    for step in range(state["step"], params.steps):
        batch = [
            pairs[(step * params.batch_size + i) % len(pairs)] for i in range(params.batch_size)
        ]
        row = _step(policy, optimizer, tokenizer, params, batch)
        row["step"] = step
        history.append(row)
        state["step"] = step + 1
        resume.maybe_save(state["step"], params.steps, policy, optimizer, state)
    (ctx.out / "metrics.jsonl").write_text(
        "".join(json.dumps(r, sort_keys=True) + "\n" for r in history), encoding="utf-8"
    )
    save_checkpoint(policy, policy_dir, ctx.out)
    resume.clear()
    return {
        **resume.run_info(),
        "policy_stage": expected,
        "pairs_source": params.pairs.source,
        "pairs": len(pairs),
        **counts,
        "steps": params.steps,
        "pairs_trained": params.steps * params.batch_size,
        "first_loss": history[0]["loss"],
        "last_loss": history[-1]["loss"],
        "last_reward_accuracy": history[-1]["reward_accuracy"],
        "last_reward_margin": history[-1]["reward_margin"],
        "external_inputs": external,
    }


def _logprobs(
    model: PreTrainedModel, tokenizer: Any, pairs: list[Pair]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probs [B] of the chosen and of the rejected completions (one forward)."""
    prompts = [p.prompt for p in pairs] * 2
    completions = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    token_logp, mask = completion_logprobs(model, prompts, completions, tokenizer.pad_token_id, 1.0)
    logps, _ = sequence_logprobs(token_logp, mask)
    return logps[: len(pairs)], logps[len(pairs) :]


@torch.no_grad()
def _reference_logprobs(
    policy: PreTrainedModel, tokenizer: Any, pairs: list[Pair], params: DpoParams
) -> None:
    """The frozen reference's log-probs of every pair: the starting policy, before any update,
    in batches of ``batch_size`` pairs (once per pair; kept on the pair)."""
    policy.train()  # the mode the updates run in, so step 0's policy equals the reference
    for start in range(0, len(pairs), params.batch_size):
        chunk = pairs[start : start + params.batch_size]
        chosen, rejected = _logprobs(policy, tokenizer, chunk)
        for pair, c, r in zip(chunk, chosen.tolist(), rejected.tolist(), strict=True):
            pair.ref_chosen, pair.ref_rejected = c, r


def _write_pairs(path: Path, pairs: list[Pair]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for index, pair in enumerate(pairs):
            row = {
                "index": index,
                **pair.record,
                "prompt_tokens": pair.prompt,
                "chosen_tokens": pair.chosen,
                "rejected_tokens": pair.rejected,
                "ref_chosen_logp": pair.ref_chosen,
                "ref_rejected_logp": pair.ref_rejected,
            }
            handle.write(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n")


def _step(
    policy: PreTrainedModel,
    optimizer: torch.optim.Optimizer,
    tokenizer: Any,
    params: DpoParams,
    batch: list[Pair],
) -> dict[str, Any]:
    """One DPO update on ``batch``; the step's metrics."""
    policy.train()
    chosen, rejected = _logprobs(policy, tokenizer, batch)
    out = dpo_loss(
        chosen,
        rejected,
        torch.tensor([p.ref_chosen for p in batch]),
        torch.tensor([p.ref_rejected for p in batch]),
        beta=params.beta,
        loss_type=params.loss,
        label_smoothing=params.label_smoothing,
        chosen_tokens=torch.tensor([float(len(p.chosen)) for p in batch]),
        rejected_tokens=torch.tensor([float(len(p.rejected)) for p in batch]),
    )
    loss = out.losses.mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(policy.parameters(), GRAD_CLIP)
    optimizer.step()
    margin = out.chosen_rewards - out.rejected_rewards
    return {
        "loss": round(loss.item(), 6),
        "chosen_reward": round(out.chosen_rewards.mean().item(), 6),
        "rejected_reward": round(out.rejected_rewards.mean().item(), 6),
        "reward_margin": round(margin.mean().item(), 6),
        "reward_accuracy": round((margin > 0).float().mean().item(), 6),
    }
