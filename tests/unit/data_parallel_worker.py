"""A few training steps of a small NemotronH under ``openrecipe.train.data_parallel``, run by
``torchrun`` from tests/unit/test_data_parallel.py (one process or several, gloo on CPU).

    torchrun --standalone --nproc-per-node N tests/unit/data_parallel_worker.py OUT [BATCH]

Rank 0 writes OUT/losses.json (the global batch's loss per step) and OUT/model/ (the gathered
weights through ``save_pretrained``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from openrecipe.model.build import build_model, nemotronh_config
from openrecipe.train import data_parallel as dp

STEPS, VOCAB, PAD = 4, 64, 0
MODEL = {
    "hybrid_override_pattern": "M*-",
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "mamba_num_heads": 4,
    "mamba_head_dim": 16,
    "ssm_state_size": 8,
    "n_groups": 1,
    "chunk_size": 8,
}


def global_batch(step: int, batch: int) -> list[tuple[list[int], list[int]]]:
    """Rows of varied length (right padding then matters), the first 3 tokens unlabelled as a
    prompt is in SFT: a pure function of the step."""
    g = torch.Generator().manual_seed(1000 + step)
    rows = []
    for _ in range(batch):
        n = int(torch.randint(6, 17, (1,), generator=g))
        ids = torch.randint(1, VOCAB, (n,), generator=g).tolist()
        rows.append((ids, [-100] * 3 + ids[3:]))
    return rows


def collate(rows: list[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), PAD)
    labels = torch.full((len(rows), width), -100)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, (ids, labs) in enumerate(rows):
        input_ids[r, : len(ids)], labels[r, : len(ids)] = torch.tensor(ids), torch.tensor(labs)
        mask[r, : len(ids)] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": mask}


def main(out: Path, batch: int) -> None:
    world = dp.world_from_env()
    torch.set_num_threads(1)
    with dp.process_group(world):
        config = nemotronh_config(MODEL, VOCAB, pad_id=PAD)
        model = dp.shard(build_model(config, seed=7), world)
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
        losses = []
        for step in range(STEPS):
            local = collate(dp.local_rows(global_batch(step, batch), world))
            logits = model(input_ids=local["input_ids"], attention_mask=local["attention_mask"])
            targets = local["labels"][:, 1:]
            token_losses = F.cross_entropy(
                logits.logits[:, :-1].reshape(-1, VOCAB).float(),
                targets.reshape(-1),
                ignore_index=-100,
                reduction="sum",
            )
            loss = dp.global_token_mean(token_losses, int((targets != -100).sum()), world)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            losses.append(dp.logged_mean(loss, world))
        dp.save_pretrained(model, out / "model", world)
        if world.is_writer:
            (out / "losses.json").write_text(json.dumps(losses), encoding="utf-8")


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 8)
