"""The ``sft`` stage: supervised fine-tuning on the reasoning problems, in the chat format.

Each sample is a conversation (system prompt with ``/think`` or ``/no_think``, the question, the
assistant's ``<think>thinking</think>answer``) built by ``openrecipe.data.chat``. As in Nemotron
3 Nano's SFT, a seeded ``reasoning_off_fraction`` of samples switch reasoning off (``/no_think``
and an empty think block) and ``truncate_fraction`` keep only a prefix of the thinking (so the
model learns to answer from a cut trace: the basis of reasoning-budget control). The loss covers
the assistant tokens only.

Why a plain loop and not TRL's ``SFTTrainer``: the trainer brings accelerate's dataloader,
dataset caching and its own RNG handling, none of which are needed for one process on a CPU, and
each is one more thing that can break byte-identical reruns; on a 200K-parameter model it also
costs more time than the training itself. Here every sample, its reasoning mode, its batch and
the schedule follow from the stage seed, and the optimizer is plain ``torch.optim.AdamW``.

Outputs: ``model/`` (``save_pretrained`` safetensors + the pretrain model's tokenizer files,
copied byte for byte) and ``metrics.jsonl`` (one ``{"loss","lr","step"}`` object per step).

Resume: every ``sft.checkpoint_every`` steps the weights, AdamW state, RNGs and loop state go to
``<out parent>/.<out name>.resume/<key>/`` (``resume.py``); a killed run continues from there
(the schedule is a function of the step, the sample stream is replayed to its position) and ends
with the same bytes as an unbroken run (tested with SIGKILL).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import torch

from openrecipe.data.reasoning import read_split
from openrecipe.stage import StageContext
from openrecipe.stage_config import decode_view, view_field
from openrecipe.train.hf_checkpoint import load_checkpoint, save_checkpoint
from openrecipe.train.resume import Resumable
from openrecipe.train.sft_samples import encode, sample_stream

GRAD_CLIP = 1.0  # global-norm clipping, as the pretraining recipe
WEIGHT_DECAY = 0.0  # fine-tuning a pretrained model: no decay toward zero


def warmup_cosine(step: int, steps: int, warmup: int) -> float:
    """LR multiplier: linear warmup to 1 (the first step already trains), then cosine to 0."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def collate(
    samples: list[tuple[list[int], list[int]]], seq_length: int, pad_id: int
) -> dict[str, torch.Tensor]:
    """Right-padded batch, cut at ``seq_length``. Right padding is exact for causal layers
    (Mamba-2 and attention alike): pads come after every real token and carry no loss."""
    width = min(seq_length, max(len(ids) for ids, _ in samples))
    input_ids = torch.full((len(samples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(samples), width), -100, dtype=torch.long)
    mask = torch.zeros((len(samples), width), dtype=torch.long)
    for row, (ids, labs) in enumerate(samples):
        n = min(width, len(ids))
        input_ids[row, :n] = torch.tensor(ids[:n])
        labels[row, :n] = torch.tensor(labs[:n])
        mask[row, :n] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": mask}


@dataclass(frozen=True)
class SftConfig:
    """The sft stage's view, typed (``sft`` in the schema says what each field means). ``seed``
    is the recipe's; the stage trains with ``ctx.seed``, derived from it and the part
    (``--part seed<k>``, ``openrecipe.seeds``)."""

    seed: int = view_field("seed")
    steps: int = view_field("sft.steps")
    lr: float = view_field("sft.lr")
    batch_size: int = view_field("sft.batch_size")
    seq_length: int = view_field("sft.seq_length")
    warmup_fraction: float = view_field("sft.warmup_fraction")
    reasoning_off_fraction: float = view_field("sft.reasoning_off_fraction")
    truncate_fraction: float = view_field("sft.truncate_fraction")
    checkpoint_every: int = view_field("sft.checkpoint_every")
    threads: int = view_field("resources.threads")


def run(ctx: StageContext) -> dict[str, Any]:
    config = decode_view(SftConfig, ctx.config, ctx.stage)
    steps, batch_size = config.steps, config.batch_size
    model, tokenizer = load_checkpoint(ctx.input("pretrain"))
    records = read_split(ctx.input("reasoning"), "train")
    stream = sample_stream(
        records, ctx.seed, config.reasoning_off_fraction, config.truncate_fraction
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=WEIGHT_DECAY)
    resume = Resumable(ctx, config.checkpoint_every)
    state: dict[str, Any] = resume.load(model, optimizer) or {
        "step": 0,
        "rows": [],
        "counts": {"off": 0, "cut": 0, "full": 0, "over_length": 0, "loss_tokens": 0},
    }
    # the data position: the stream is a pure function of the seed, so replaying the samples
    # already consumed puts it (epoch order and reasoning-mode RNG alike) exactly where it was
    for _ in range(state["step"] * batch_size):
        next(stream)
    model.train()
    for step in range(state["step"], steps):
        _train_step(model, optimizer, tokenizer, stream, config, step, state)
        resume.maybe_save(state["step"], steps, model, optimizer, state)
    rows, counts = state["rows"], state["counts"]
    (ctx.out / "metrics.jsonl").write_text(
        "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows), encoding="utf-8"
    )
    save_checkpoint(model, ctx.input("pretrain"), ctx.out)
    resume.clear()
    return {
        **resume.run_info(),
        "steps": steps,
        "first_loss": rows[0]["loss"],
        "last_loss": rows[-1]["loss"],
        "samples_reasoning_off": counts["off"],
        "samples_truncated": counts["cut"],
        "samples_full": counts["full"],
        "samples_over_seq_length": counts["over_length"],
        "loss_tokens": counts["loss_tokens"],
    }


def _train_step(
    model: Any,
    optimizer: torch.optim.Optimizer,
    tokenizer: Any,
    stream: Any,
    config: SftConfig,
    step: int,
    state: dict[str, Any],
) -> None:
    """One optimizer step on the stream's next batch; appends its row to ``state`` and counts
    the samples' reasoning modes and lengths there."""
    counts = state["counts"]
    # the schedule is a pure function of the step (LambdaLR's base_lr * lambda(step))
    warmup = round(config.warmup_fraction * config.steps)
    lr = config.lr * warmup_cosine(step, config.steps, warmup)
    for group in optimizer.param_groups:
        group["lr"] = lr
    samples = []
    for record, mode in (next(stream) for _ in range(config.batch_size)):
        counts[mode.split(":")[0]] += 1
        ids, labels = encode(tokenizer, record, mode)
        counts["over_length"] += len(ids) > config.seq_length
        samples.append((ids, labels))
    batch = collate(samples, config.seq_length, tokenizer.pad_token_id)
    counts["loss_tokens"] += int((batch["labels"][:, 1:] != -100).sum())
    loss = model(**batch).loss
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
    optimizer.step()
    state["rows"].append({"step": step, "loss": round(loss.item(), 6), "lr": lr})
    state["step"] = step + 1
