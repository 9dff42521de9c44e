"""The ``rl`` stage: GRPO with verifiable rewards on the reasoning problems.

Per step: the next ``prompts_per_step`` train questions (file order, wrapping around), each
sampled ``generations_per_prompt`` times with reasoning on (``sampling.sample_group``, one seeded
``torch.Generator`` per prompt and step); reward = 1 when the answer after ``</think>`` is right
(``verifier``; a completion that never closes its think block gets 0) minus ``length_penalty``
per thinking token; advantages are group-relative, (r - mean) / (std + 1e-4) (GRPO, Shao et al.
2024, arXiv:2402.03300; unbiased std as TRL's GRPOTrainer). One policy-gradient update per step
on the token-level clipped surrogate with asymmetric clipping, ratio in [1 - clip_low,
1 + clip_high] ("clip-higher" and token-level averaging from DAPO, arXiv:2503.14476; 0.2/0.28
are its values). The old log-probs are the sampling policy's, recorded while sampling. A KL term
to the reference (the SFT model; k3 estimator, as TRL) is added only when ``kl_coef`` > 0.

Why a plain loop and not TRL's ``GRPOTrainer``: the trainer samples through ``generate`` with
torch's global RNG and accelerate's dataloader/sampler (seeded, but ordering and RNG
consumption depend on its internals and version), and on a CPU its setup costs more than three
tiny steps. A ~100-line loop makes each rollout depend only on (seed, step, prompt), and two
runs give identical ``model.safetensors`` hashes (tested).

Outputs: ``model/`` (safetensors + the SFT model's tokenizer files) and ``metrics.jsonl``, one
object per step: ``step, mean_reward, accuracy, mean_thinking_tokens, mean_completion_tokens,
stopped_fraction, clipped_fraction, loss, trained_fraction`` (+ ``kl`` when kl_coef > 0);
``trained_fraction`` is the share of rollouts in groups with reward variance, the only ones the
update runs on.

Resume: every ``rl.checkpoint_every`` steps policy weights, AdamW state, RNGs and the metric rows
go to ``<out parent>/.<out name>.resume/<key>/`` (``resume.py``). Prompts and each rollout's
generator are functions of (seed, step, prompt), so a killed run resumed from there ends with the
same ``model.safetensors`` as an unbroken one (tested with SIGKILL).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any, Literal

import torch
from transformers import PreTrainedModel

from openrecipe.data import chat
from openrecipe.data.reasoning import read_split
from openrecipe.evaluate.grader import Verifier
from openrecipe.hashing import derive_seed
from openrecipe.stage import StageContext
from openrecipe.stage_config import decode_view, view_field
from openrecipe.train.grpo_loss import clipped_surrogate, completion_logprobs, group_advantages
from openrecipe.train.hf_checkpoint import load_checkpoint, save_checkpoint
from openrecipe.train.resume import Resumable
from openrecipe.train.sampling import Rollout, sample_group
from openrecipe.train.sft import GRAD_CLIP


def thinking_tokens(tokens: list[int], open_id: int, close_id: int) -> int:
    """Tokens between ``<think>`` and ``</think>`` (to the end, less a stop token, if unclosed)."""
    start = tokens.index(open_id) + 1 if open_id in tokens else 0
    end = tokens.index(close_id, start) if close_id in tokens[start:] else len(tokens)
    return max(0, end - start)


@dataclass(frozen=True)
class RlParams:
    """``rl``: GRPO's batch shape, learning rate, clipping, KL, sampling, reward and checkpoints
    (the schema's descriptions say the same)."""

    algorithm: Literal["grpo"]
    steps: int
    prompts_per_step: int
    generations_per_prompt: int
    lr: float
    clip_low: float
    clip_high: float
    kl_coef: float
    temperature: float
    max_new_tokens: int
    length_penalty: float
    """Reward subtracted per generated thinking token."""
    checkpoint_every: int


@dataclass(frozen=True)
class RlConfig:
    """The rl stage's view, typed. ``seed`` is the recipe's; rollouts are seeded from
    ``ctx.seed``, derived from it and the part (``--part seed<k>``, ``openrecipe.seeds``)."""

    seed: int = view_field("seed")
    rl: RlParams = view_field("rl")
    threads: int = view_field("resources.threads")


def run(ctx: StageContext) -> dict[str, Any]:
    rl = decode_view(RlConfig, ctx.config, ctx.stage).rl
    policy, tokenizer = load_checkpoint(ctx.input("sft"))
    reference = copy.deepcopy(policy).eval().requires_grad_(False) if rl.kl_coef > 0 else None
    records = read_split(ctx.input("reasoning"), "train")
    ids = tokenizer.convert_tokens_to_ids
    stop_id, open_id, close_id = ids(chat.IM_END), ids(chat.THINK_OPEN), ids(chat.THINK_CLOSE)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=rl.lr, weight_decay=0.0)
    n_prompts, n_gen = rl.prompts_per_step, rl.generations_per_prompt
    # After the reference copy: a resumed run restores the policy, never the reference. The
    # data position and each rollout generator are functions of the step, so the step is enough.
    resume = Resumable(ctx, rl.checkpoint_every)
    state: dict[str, Any] = resume.load(policy, optimizer) or {"step": 0, "rows": []}
    history: list[dict[str, Any]] = state["rows"]
    with Verifier() as verifier:
        for step in range(state["step"], rl.steps):
            batch = [records[(step * n_prompts + i) % len(records)] for i in range(n_prompts)]
            prompts, rollouts = _rollouts(policy, tokenizer, rl, batch, ctx.seed, step, stop_id)
            row = _step(
                policy,
                reference,
                optimizer,
                verifier,
                tokenizer,
                rl,
                batch,
                prompts,
                rollouts,
                (open_id, close_id),
            )
            row["step"] = step
            history.append(row)
            state["step"] = step + 1
            resume.maybe_save(state["step"], rl.steps, policy, optimizer, state)
    (ctx.out / "metrics.jsonl").write_text(
        "".join(json.dumps(r, sort_keys=True) + "\n" for r in history), encoding="utf-8"
    )
    save_checkpoint(policy, ctx.input("sft"), ctx.out)
    resume.clear()
    return {
        **resume.run_info(),
        "steps": rl.steps,
        "rollouts": rl.steps * n_prompts * n_gen,
        "first_accuracy": history[0]["accuracy"],
        "last_accuracy": history[-1]["accuracy"],
        "mean_accuracy": round(sum(h["accuracy"] for h in history) / len(history), 6),
        "last_mean_reward": history[-1]["mean_reward"],
        "last_mean_thinking_tokens": history[-1]["mean_thinking_tokens"],
    }


def _rollouts(
    policy: PreTrainedModel,
    tokenizer: Any,
    rl: RlParams,
    batch: list[dict[str, str]],
    seed: int,
    step: int,
    stop_id: int,
) -> tuple[list[list[int]], list[Rollout]]:
    """The step's group of ``generations_per_prompt`` rollouts per prompt (reasoning on), each
    group from its own generator seeded by (seed, step, prompt index); with each its prompt."""
    prompts: list[list[int]] = []
    rollouts: list[Rollout] = []
    for i, record in enumerate(batch):
        prompt = chat.encode_prompt(tokenizer, record["question"], reasoning=True)
        generator = torch.Generator().manual_seed(derive_seed(seed, "rollout", str(step), str(i)))
        rollouts += sample_group(
            policy,
            prompt,
            rl.generations_per_prompt,
            max_new_tokens=rl.max_new_tokens,
            temperature=rl.temperature,
            stop_id=stop_id,
            generator=generator,
        )
        prompts += [prompt] * rl.generations_per_prompt
    return prompts, rollouts


def _step(
    policy: PreTrainedModel,
    reference: PreTrainedModel | None,
    optimizer: torch.optim.Optimizer,
    verifier: Verifier,
    tokenizer: Any,
    rl: RlParams,
    batch: list[dict[str, str]],
    prompts: list[list[int]],
    rollouts: list[Rollout],
    think_ids: tuple[int, int],
) -> dict[str, Any]:
    """Score the rollouts and apply one clipped policy-gradient update; returns the step's metrics."""
    n_gen = rl.generations_per_prompt
    texts = [tokenizer.decode(r.tokens, skip_special_tokens=False) for r in rollouts]
    golds = [record["answer"] for record in batch for _ in range(n_gen)]
    correct = [
        ok and chat.THINK_CLOSE in text
        for ok, text in zip(verifier.score(texts, golds), texts, strict=True)
    ]
    thinking = [thinking_tokens(r.tokens, *think_ids) for r in rollouts]
    rewards = torch.tensor(
        [float(c) - rl.length_penalty * t for c, t in zip(correct, thinking, strict=True)]
    )
    advantages = group_advantages(rewards.view(-1, n_gen)).view(-1, 1)
    # A group whose rewards are all equal has zero advantage everywhere and adds nothing to the
    # policy gradient; only the groups with reward variance are run forward and backward (DAPO's
    # dynamic sampling, arXiv:2503.14476, without the refill). That spends the update's compute
    # on the rollouts that carry signal; with no such group the step makes no update. The KL
    # term (kl_coef > 0) is likewise taken over the trained rollouts only.
    live = [i for i in range(len(rollouts)) if advantages[i, 0] != 0]
    row: dict[str, Any] = {"trained_fraction": round(len(live) / len(rollouts), 6)}
    loss = clipped = torch.zeros(())
    if live:
        loss, clipped = _update(
            policy,
            reference,
            optimizer,
            tokenizer,
            rl,
            row,
            [prompts[i] for i in live],
            [rollouts[i] for i in live],
            advantages[live],
        )
    completions = [r.tokens for r in rollouts]
    n = len(rollouts)
    row.update(
        {
            "mean_reward": round(rewards.mean().item(), 6),
            "accuracy": round(sum(correct) / n, 6),
            "mean_thinking_tokens": round(sum(thinking) / n, 4),
            "mean_completion_tokens": round(sum(len(c) for c in completions) / n, 4),
            "stopped_fraction": round(sum(r.stopped for r in rollouts) / n, 6),
            "clipped_fraction": round(clipped.item(), 6),
            "loss": round(loss.item(), 6),
        }
    )
    return row


def _update(
    policy: PreTrainedModel,
    reference: PreTrainedModel | None,
    optimizer: torch.optim.Optimizer,
    tokenizer: Any,
    rl: RlParams,
    row: dict[str, Any],
    prompts: list[list[int]],
    rollouts: list[Rollout],
    advantages: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One clipped policy-gradient step on ``rollouts`` (+ the KL term when enabled, logged in
    ``row``); returns the loss and the share of clipped tokens."""
    completions = [r.tokens for r in rollouts]
    policy.train()
    new_logp, mask = completion_logprobs(
        policy, prompts, completions, tokenizer.pad_token_id, rl.temperature
    )
    old_logp = torch.zeros_like(new_logp)
    for index, rollout in enumerate(rollouts):
        old_logp[index, : len(rollout.logprobs)] = torch.tensor(rollout.logprobs)
    loss, clipped = clipped_surrogate(
        new_logp, old_logp, advantages, mask, rl.clip_low, rl.clip_high
    )
    if reference is not None:
        with torch.no_grad():
            ref_logp, _ = completion_logprobs(
                reference, prompts, completions, tokenizer.pad_token_id, rl.temperature
            )
        delta = ref_logp - new_logp
        kl = (
            (torch.exp(delta) - delta - 1) * mask
        ).sum() / mask.sum()  # k3 estimator (Schulman 2020)
        loss = loss + rl.kl_coef * kl
        row["kl"] = round(kl.item(), 6)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(policy.parameters(), GRAD_CLIP)
    optimizer.step()
    return loss.detach(), clipped
