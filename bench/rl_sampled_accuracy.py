"""Sampled (temperature 1) vs greedy accuracy of checkpoints on held-out and training problems.

Why: GRPO's training reward is measured on samples at temperature 1, the held-out figure in
reasoning.md greedily. A rise in sampled accuracy that greedy decoding does not show means RL
sharpened the distribution towards answers greedy decoding already gave (no new problems solved);
a rise on training prompts that held-out prompts do not show means it fit the training prompts.
Usage: python bench/rl_sampled_accuracy.py REASONING_DIR CKPT_DIR... [--items 500 --samples 4]
Prints one JSON line per (checkpoint, split): sampled accuracy per item, mean over items."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from openrecipe.data import chat
from openrecipe.data.reasoning import read_split
from openrecipe.evaluate.grader import Verifier
from openrecipe.hashing import derive_seed
from openrecipe.train.hf_checkpoint import load_checkpoint
from openrecipe.train.sampling import sample_group


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("reasoning", type=Path)
    parser.add_argument("checkpoints", type=Path, nargs="+")
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    args = parser.parse_args()
    torch.set_num_threads(1)
    splits = {s: read_split(args.reasoning, s)[: args.items] for s in ("heldout", "train")}
    with Verifier() as verifier:
        for checkpoint in args.checkpoints:
            model, tokenizer = load_checkpoint(checkpoint)
            model.eval()
            stop = tokenizer.convert_tokens_to_ids(chat.IM_END)
            for split, records in splits.items():
                per_item = {}
                for record in records:
                    prompt = chat.encode_prompt(tokenizer, record["question"], reasoning=True)
                    generator = torch.Generator().manual_seed(derive_seed(0, "diag", record["id"]))
                    with torch.no_grad():
                        rollouts = sample_group(
                            model,
                            prompt,
                            args.samples,
                            max_new_tokens=args.max_new_tokens,
                            temperature=1.0,
                            stop_id=stop,
                            generator=generator,
                        )
                    texts = [
                        tokenizer.decode(r.tokens, skip_special_tokens=False) for r in rollouts
                    ]
                    ok = verifier.score(texts, [record["answer"]] * len(texts))
                    per_item[record["id"]] = sum(
                        o and chat.THINK_CLOSE in t for o, t in zip(ok, texts, strict=True)
                    ) / len(texts)
                mean = sum(per_item.values()) / len(per_item)
                print(
                    json.dumps(
                        {
                            "checkpoint": str(checkpoint),
                            "split": split,
                            "sampled_accuracy": round(mean, 4),
                            "items": len(per_item),
                            "per_item": per_item,
                        }
                    ),
                    flush=True,
                )


if __name__ == "__main__":
    main()
