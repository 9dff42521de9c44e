"""Pretraining throughput, precision cost and hybrid decode speed, measured in one process.

Usage: python bench/pretrain.py [--quick] [--threads N] [--out results/bench/pretrain.json]

1. Peak: the best GFLOP/s of a large fp32 (and bf16) matmul on this machine, at the thread count
   the runs use; model FLOP utilisation (MFU) is given against both (the emulated GEMMs run in
   fp32, the bf16 run's under bf16 autocast).
2. Precision: the default recipe's model trained with the pretrain stage's own loop
   (``pretrain._train``) on a packed dataset (runs/default/pack if present, else runs/tiny/pack,
   cycled when it holds fewer sequences than the recipe's steps need) in bf16, fp8 and nvfp4 from
   the same seed for the same steps. Reports tokens/s, MFU, step-time ratios against bf16 and the
   relative gap of the mean loss over the last 10% of steps; plots the three loss curves.
3. Decode: tokens/s generating after prompts of 1k-16k tokens (batch 1, greedy) for the hybrid
   and for an all-attention NemotronH (``*-`` pairs) of about the same parameter count; the
   decode rate is timed between the first and last generated token, so prefill is excluded.

Model FLOPs per token are PaLM's (Chowdhery et al. 2022, appendix B): 6 N + 12 L H Q T, with N the
parameters that take part in a matmul (all but the input embedding, so the LM head counts) and
the second term the attention score/value matmuls of the L attention layers (H heads of size Q,
context T). The Mamba-2 scan's own FLOPs are not counted, so MFU is a slight under-estimate.
Timings are wall clock on a shared machine: they go to results/bench/, never into a manifest.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")  # one line per run is printed instead

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import AutoTokenizer, LogitsProcessor, LogitsProcessorList  # noqa: E402

from openrecipe.data.indexed import IndexedDataset  # noqa: E402
from openrecipe.hashing import derive_seed  # noqa: E402
from openrecipe.model.build import (  # noqa: E402
    build_model,
    config_for_tokenizer,
    count_parameters,
    nemotronh_config,
)
from openrecipe.model.precision import NVFP4Config, apply_precision  # noqa: E402
from openrecipe.model.recipe_config import PretrainParams  # noqa: E402
from openrecipe.paths import find_project_root  # noqa: E402
from openrecipe.recipe import load_recipe  # noqa: E402
from openrecipe.stage import seed_everything  # noqa: E402
from openrecipe.stage_config import decode_value, plain  # noqa: E402
from openrecipe.train import pretrain  # noqa: E402

PRECISIONS = ("bf16", "fp8", "nvfp4")
CONTEXTS = (1024, 2048, 4096, 8192, 16384)


def matmul_peak(n: int, dtype: torch.dtype, repeats: int) -> float:
    """Best GFLOP/s of an n x n x n matmul (2 n^3 FLOPs) over ``repeats`` timed runs."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b  # warm-up: allocator, kernel selection
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


class Cycled(Sequence):
    """The pack repeated to ``length`` sequences, for recipes that want more steps than it holds."""

    def __init__(self, data: Sequence[np.ndarray], length: int) -> None:
        self.data, self.length = data, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> np.ndarray:
        return self.data[index % len(self.data)]


def flops_per_token(config, params: dict[str, int], seq_length: int) -> int:
    matmul_params = params["total"] - params["embedding"]
    n_attention = config.hybrid_override_pattern.count("*")
    attention = 12 * n_attention * config.num_attention_heads * config.head_dim * seq_length
    return 6 * matmul_params + attention


def train_precisions(recipe, run_dir: Path, steps: int, seed: int) -> dict:
    """Train the recipe's model in each precision; per-step losses and loop wall time."""
    pack_dir, tokenizer_dir = run_dir / "pack", run_dir / "tokenizer"
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    section = {**recipe.get("pretrain"), "steps": steps, "log_every": 1, "checkpoint_every": 0}
    cfg = decode_value(PretrainParams, section, "pretrain")
    per_step = cfg.micro_batch_size * cfg.grad_accum
    data = IndexedDataset(pack_dir / "train")
    fingerprint = pretrain._input_fingerprint(pack_dir, tokenizer_dir)
    config = config_for_tokenizer(recipe.get("model"), tokenizer)
    runs = {}
    for precision in PRECISIONS:
        seed_everything(seed, torch.get_num_threads())
        model = build_model(config, seed=derive_seed(seed, "pretrain", "init"))
        swapped = apply_precision(
            model,
            precision,
            cfg.bf16_first_layers,
            cfg.bf16_last_layers,
            config=NVFP4Config(**plain(cfg.nvfp4)) if precision == "nvfp4" else None,
            seed=derive_seed(seed, "precision"),
        )
        loader = pretrain.SequentialBatches(
            Cycled(data, steps * per_step),
            seq_length=cfg.seq_length,
            micro_batch=cfg.micro_batch_size,
            grad_accum=cfg.grad_accum,
            fingerprint=fingerprint,
        )
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            loop = pretrain._train(
                model, loader, cfg, pad_id=tokenizer.pad_token_id, resume_dir=Path(tmp) / "r"
            )
            wall = time.perf_counter() - start
        losses = [row["loss"] for row in loop["state"]["metrics"]]
        runs[precision] = {"losses": losses, "seconds": wall, "linears_swapped": len(swapped)}
        print(f"{precision}: {wall:.1f} s for {steps} steps, final loss {losses[-1]:.4f}")
    return {"config": config, "cfg": section, "runs": runs, "sequences_in_pack": len(data)}


class _Stamps(LogitsProcessor):
    """Records the time each new token's logits arrive (called once per generated token)."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def __call__(self, input_ids, scores):  # noqa: ANN001 - transformers API
        self.times.append(time.perf_counter())
        return scores


def decode_rate(model, context: int, new_tokens: int, vocab: int) -> float:
    """Greedy decode tokens/s after a random prompt of ``context`` tokens (prefill excluded)."""
    prompt = torch.randint(3, vocab, (1, context), generator=torch.Generator().manual_seed(0))
    stamps = _Stamps()
    with torch.no_grad():
        model.generate(
            prompt,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=0,
            logits_processor=LogitsProcessorList([stamps]),
        )
    return (len(stamps.times) - 1) / (stamps.times[-1] - stamps.times[0])


def decode_comparison(model_section: dict, vocab: int, contexts, new_tokens: int) -> dict:
    """Hybrid vs all-attention at the recipe's width; the all-attention model keeps the layer
    count, replacing each (Mamba, MLP) pair's Mamba by attention."""
    hybrid = model_section["hybrid_override_pattern"]
    attention_only = "*-" * (len(hybrid) // 2)
    result: dict = {"patterns": {}, "tokens_per_s": {}}
    for name, pattern in (("hybrid", hybrid), ("attention", attention_only)):
        config = nemotronh_config(
            {**model_section, "hybrid_override_pattern": pattern},
            vocab,
            bos_id=1,
            eos_id=2,
            pad_id=0,
            max_position_embeddings=max(contexts) + new_tokens,
        )
        config._attn_implementation = "sdpa"  # flash-style CPU kernel: no 16k x 16k score matrix
        model = build_model(config, seed=0).eval()
        result["patterns"][name] = {"pattern": pattern, "params": count_parameters(config)}
        rates = {}
        for context in contexts:
            rates[str(context)] = decode_rate(model, context, new_tokens, vocab)
            print(f"decode {name:9s} ctx {context:6d}: {rates[str(context)]:7.1f} tok/s")
        result["tokens_per_s"][name] = rates
    hyb, att = result["tokens_per_s"]["hybrid"], result["tokens_per_s"]["attention"]
    result["hybrid_over_attention"] = {c: hyb[c] / att[c] for c in hyb}
    # the shortest context from which the hybrid is faster at every longer one measured
    crossover = None
    for context in sorted(contexts, reverse=True):
        if hyb[str(context)] <= att[str(context)]:
            break
        crossover = context
    result["hybrid_faster_from_context"] = crossover
    return result


def plot(runs: dict, gaps: dict, path: Path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for precision, run in runs.items():
        label = precision if precision == "bf16" else f"{precision} ({gaps[precision]:+.2%})"
        ax.plot(range(1, len(run["losses"]) + 1), run["losses"], label=label, linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title(title, fontsize=9)
    ax.legend(title="final gap vs bf16")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(fig)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few steps, short contexts")
    parser.add_argument("--threads", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    project = find_project_root()
    recipe = load_recipe(project / "recipes" / "default.yaml", project=project)
    threads = args.threads or recipe.get("resources.threads")
    torch.set_num_threads(threads)
    out = args.out or project / "results" / "bench" / (
        "pretrain_quick.json" if args.quick else "pretrain.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)

    n, repeats = (512, 3) if args.quick else (2048, 5)
    peak = {"fp32": matmul_peak(n, torch.float32, repeats)}
    peak["bf16"] = matmul_peak(n, torch.bfloat16, repeats)
    print(
        f"matmul peak ({n}^3, {threads} threads): {peak['fp32']:.1f} GFLOP/s fp32, "
        f"{peak['bf16']:.1f} GFLOP/s bf16"
    )

    run_dir = next(
        d
        for d in (project / "runs" / "default", project / "runs" / "tiny")
        if (d / "pack" / "manifest.json").is_file()
    )
    steps = 20 if args.quick else recipe.get("pretrain.steps")
    trained = train_precisions(recipe, run_dir, steps, recipe.get("seed"))
    config, cfg, runs = trained["config"], trained["cfg"], trained["runs"]
    params = count_parameters(config)
    per_token = flops_per_token(config, params, cfg["seq_length"])
    tokens_per_step = cfg["micro_batch_size"] * cfg["grad_accum"] * cfg["seq_length"]
    tail = max(1, steps // 10)
    final = {p: statistics.fmean(r["losses"][-tail:]) for p, r in runs.items()}
    gaps = {p: final[p] / final["bf16"] - 1 for p in PRECISIONS}
    precision_table = {}
    for precision, run in runs.items():
        tok_s = steps * tokens_per_step / run["seconds"]
        precision_table[precision] = {
            "step_seconds": run["seconds"] / steps,
            "tokens_per_s": tok_s,
            "mfu_vs_fp32_peak": per_token * tok_s / (peak["fp32"] * 1e9),
            "mfu_vs_bf16_peak": per_token * tok_s / (peak["bf16"] * 1e9),
            "final_loss_mean_last_10pct": final[precision],
            "relative_loss_gap_vs_bf16": gaps[precision],
            "linears_swapped": run["linears_swapped"],
        }
        print(
            f"{precision:6s} {tok_s:8.0f} tok/s  MFU {precision_table[precision]['mfu_vs_fp32_peak']:.2%}"
            f"  loss {final[precision]:.4f} ({gaps[precision]:+.2%} vs bf16)"
        )
    ratios = {f"{p}/bf16": runs[p]["seconds"] / runs["bf16"]["seconds"] for p in ("fp8", "nvfp4")}
    print("step-time ratios: " + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items()))
    png = out.with_name(out.stem + "_precision.png")
    plot(
        runs,
        gaps,
        png,
        f"{recipe.get('name')} model on {run_dir.name}/pack, {steps} steps, seed "
        f"{recipe.get('seed')} (gap: mean loss of last {tail} steps)",
    )

    contexts = (1024, 2048) if args.quick else CONTEXTS
    decode = decode_comparison(
        recipe.get("model"), config.vocab_size, contexts, 8 if args.quick else 32
    )
    crossover = decode["hybrid_faster_from_context"]
    print(
        f"hybrid decodes faster from context {crossover}; "
        + ", ".join(f"{c}: x{r:.2f}" for c, r in decode["hybrid_over_attention"].items())
    )

    report = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "torch": torch.__version__,
            "threads": threads,
        },
        "quick": args.quick,
        "matmul_peak_gflops": {**peak, "n": n},
        "model": {
            "recipe": recipe.get("name"),
            "pattern": config.hybrid_override_pattern,
            "params": params,
            "flops_per_token": per_token,
            "flops_formula": "6 * (params - input embedding) + 12 * n_attention_layers * heads * "
            "head_dim * seq_length (PaLM appendix B; Mamba scan FLOPs not counted)",
        },
        "data": {
            "pack": f"runs/{run_dir.name}/pack",
            "sequences_in_pack": trained["sequences_in_pack"],
            "sequences_trained": steps * cfg["micro_batch_size"] * cfg["grad_accum"],
        },
        "steps": steps,
        "loss_window_steps": tail,
        "precision": precision_table,
        "step_time_ratio": ratios,
        "loss_curves": {p: r["losses"] for p, r in runs.items()},
        "loss_curves_png": str(png.relative_to(project))
        if png.is_relative_to(project)
        else str(png),
        "decode": {**decode, "new_tokens": 8 if args.quick else 32, "batch": 1},
    }
    out.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {out} and {png}")


if __name__ == "__main__":
    main(sys.argv[1:])
