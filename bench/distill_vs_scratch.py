"""Distilled child vs the same child shape trained from scratch on the same tokens (issue 17).

For each derived proxy (``recipes/<child>.yaml`` with ``derive:``), in one session:

- **distilled**: the ``distill`` stage (prune the parent proxy's model to the child shape, then
  KD on the parent's pack for the child's ``pretrain.steps``);
- **scratch**: the ``pretrain`` stage on the same recipe, i.e. the same child shape, seed,
  optimizer, schedule and precision, trained from a random init on the same pack sequences
  (the parent's pack and tokenizer);
- **pruned**: the pruned child before any training, and **teacher**: the parent itself.

Held-out LM loss: mean next-token cross-entropy on windows of the parent's blend documents that
no pack sequence read (the pack's sidecar lists every document segment it consumed), cut into
``seq_length + 1`` windows, up to ``--heldout`` of them. Accuracy: the ``evaluate`` stage on
both children's base models (arc_easy and the reasoning bits-per-byte of the proxies' own
evaluation), which needs ``runs/<child>/reasoning`` and ``eval_data`` (run the child recipe
once first). One seed (the recipe's).

Writes ``results/bench/distill_vs_scratch.json``; stage outputs go to
``runs/.bench/distill_vs_scratch/<child>/`` (ignored). Parent runs must exist (docs/derive.md).

    PYTHONPATH=$PWD/src .venv/bin/python bench/distill_vs_scratch.py
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer

from openrecipe.hashing import derive_seed
from openrecipe.model.build import config_for_tokenizer
from openrecipe.paths import find_project_root
from openrecipe.recipe import load_recipe
from openrecipe.stage import run_stage
from openrecipe.stage_config import plain
from openrecipe.train import distill, pretrain, prune

PROJECT = find_project_root(Path(__file__).resolve().parent)
CHILDREN = ("nemotron_nano_9b_v2_proxy", "nemotron_h_47b_proxy")


def heldout_windows(parent: Path, tokenizer, seq_length: int, limit: int) -> list[np.ndarray]:
    """Windows of blend documents the pack never read (deterministic: streams in name order)."""
    consumed = set()
    with open(parent / "pack" / "sidecar.jsonl", encoding="utf-8") as handle:
        for line in handle:
            consumed.update(seg[0] for seg in json.loads(line)["segments"])
    windows = []
    for stream in sorted((parent / "blend" / "streams").glob("*.jsonl")):
        with open(stream, encoding="utf-8") as handle:
            for line in handle:
                doc = json.loads(line)
                if doc["id"] in consumed:
                    continue
                ids = tokenizer(doc["text"])["input_ids"]
                for start in range(0, len(ids) - seq_length, seq_length + 1):
                    windows.append(np.asarray(ids[start : start + seq_length + 1]))
    step = max(1, len(windows) // limit)  # spread over the streams, not the first one only
    return windows[::step][:limit]


@torch.no_grad()
def lm_loss(model, windows: list[np.ndarray], batch: int = 8) -> float:
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(windows), batch):
        rows = torch.from_numpy(np.stack(windows[i : i + batch]).astype(np.int64))
        logits = model(input_ids=rows[:, :-1]).logits.float()
        loss = F.cross_entropy(logits.flatten(0, 1), rows[:, 1:].flatten(), reduction="sum")
        total += loss.item()
        count += rows[:, 1:].numel()
    return total / count


def pruned_only(recipe, parent_dir: Path, pack_dir: Path):
    """The pruned child before training, exactly as the distill stage builds it."""
    config = recipe.data
    tokenizer = AutoTokenizer.from_pretrained(parent_dir / "model")
    teacher = AutoModelForCausalLM.from_pretrained(parent_dir / "model", dtype=torch.float32)
    child_config = config_for_tokenizer(plain(config["model"]), tokenizer)
    from openrecipe.data.indexed import IndexedDataset

    _, batches = distill.calibration_batches(
        IndexedDataset(pack_dir / "train"),
        config["derive"]["calibration_sequences"],
        config["pretrain"]["micro_batch_size"],
        derive_seed(config["seed"], "distill", "calibration"),
    )
    importance = prune.measure(teacher, batches)
    keep = prune.plan(teacher.config, child_config, importance)
    return teacher, prune.prune(teacher, child_config, keep)


def bench_child(child: str, out_root: Path, heldout: int, evaluate: bool) -> dict:
    recipe = load_recipe(PROJECT / "recipes" / f"{child}.yaml", project=PROJECT)
    parent_name = recipe.data["derive"]["parent"]["recipe"]
    parent = PROJECT / "runs" / parent_name
    out = out_root / child
    shutil.rmtree(out, ignore_errors=True)
    timings = {}
    started = time.time()
    distilled = run_stage(
        "distill",
        recipe,
        out / "distill",
        {"parent": parent / "pretrain", "data": parent / "pack"},
        distill.run,
        project=PROJECT,
    )
    timings["distill_s"] = round(time.time() - started, 1)
    started = time.time()
    scratch = run_stage(
        "pretrain",
        recipe,
        out / "pretrain",
        {"pack": parent / "pack", "tokenizer": parent / "tokenizer"},
        pretrain.run,
        project=PROJECT,
    )
    timings["scratch_s"] = round(time.time() - started, 1)
    assert distilled["summary"]["tokens"] == scratch["summary"]["tokens"]

    tokenizer = AutoTokenizer.from_pretrained(parent / "pretrain" / "model")
    windows = heldout_windows(parent, tokenizer, recipe.data["pretrain"]["seq_length"], heldout)
    teacher, pruned = pruned_only(recipe, parent / "pretrain", parent / "pack")
    losses = {"teacher": lm_loss(teacher, windows), "pruned": lm_loss(pruned, windows)}
    for name in ("distill", "pretrain"):
        model = AutoModelForCausalLM.from_pretrained(out / name / "model", dtype=torch.float32)
        losses["distilled" if name == "distill" else "scratch"] = lm_loss(model, windows)
    row = {
        "parent": parent_name,
        "tokens": distilled["summary"]["tokens"],
        "params": {
            "parent": distilled["summary"]["parent_params"]["total"],
            "child": distilled["summary"]["params"]["total"],
        },
        "heldout_windows": len(windows),
        "heldout_tokens": len(windows) * recipe.data["pretrain"]["seq_length"],
        "heldout_loss": {k: round(v, 4) for k, v in losses.items()},
        "heldout_ppl": {k: round(math.exp(v), 2) for k, v in losses.items()},
        "loss_ratio_distilled_over_scratch": round(losses["distilled"] / losses["scratch"], 4),
        "train_final_loss": {
            "distilled_kd": distilled["summary"]["final_loss"],
            "scratch_lm": scratch["summary"]["final_loss"],
        },
        **timings,
    }
    if evaluate:
        row["scores"] = evaluate_both(recipe, child, out)
    return row


def evaluate_both(recipe, child: str, out: Path) -> dict:
    from openrecipe.evaluate import evaluate

    run = PROJECT / "runs" / child
    scores = {}
    for name in ("distill", "pretrain"):
        inputs = {
            "model": out / name,
            "reasoning": run / "reasoning",
            "eval_data": run / "eval_data",
        }
        target = out / f"evaluate_{name}"
        run_stage("evaluate", recipe, target, inputs, evaluate.run, project=PROJECT, part="base")
        got = json.loads((target / "scores.json").read_text(encoding="utf-8"))
        scores["distilled" if name == "distill" else "scratch"] = {
            "arc_easy_acc": got["arc_easy"]["acc"],
            "arc_easy_acc_stderr": round(got["arc_easy"]["acc_stderr"], 4),
            "arc_easy_n": got["arc_easy"]["n"],
            "reasoning_bits_per_byte": round(got["openrecipe_reasoning_bpb"]["bits_per_byte"], 4),
        }
    return scores


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--children", nargs="+", default=list(CHILDREN))
    parser.add_argument("--heldout", type=int, default=64, help="held-out windows per child")
    parser.add_argument("--no-eval", action="store_true", help="skip the evaluate stage")
    args = parser.parse_args()
    out_root = PROJECT / "runs" / ".bench" / "distill_vs_scratch"
    rows = {c: bench_child(c, out_root, args.heldout, not args.no_eval) for c in args.children}
    result = {
        "bench": "distill_vs_scratch",
        "seed": "each recipe's own (one seed)",
        "heldout": "windows of the parent's blend documents no pack sequence read",
        "torch_threads": torch.get_num_threads(),
        "children": rows,
    }
    path = PROJECT / "results" / "bench" / "distill_vs_scratch.json"
    path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    for child, row in rows.items():
        loss = row["heldout_loss"]
        print(
            f"{child}: held-out loss teacher {loss['teacher']:.3f}, pruned {loss['pruned']:.3f}, "
            f"distilled {loss['distilled']:.3f}, scratch {loss['scratch']:.3f} "
            f"(distilled/scratch {row['loss_ratio_distilled_over_scratch']:.3f}) "
            f"at {row['tokens']} tokens"
        )
        if "scores" in row:
            d, s = row["scores"]["distilled"], row["scores"]["scratch"]
            print(
                f"  arc_easy acc distilled {d['arc_easy_acc']:.3f} vs scratch "
                f"{s['arc_easy_acc']:.3f} (n={d['arc_easy_n']}); reasoning bpb "
                f"{d['reasoning_bits_per_byte']:.3f} vs {s['reasoning_bits_per_byte']:.3f}"
            )
    print(f"wrote {path.relative_to(PROJECT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
