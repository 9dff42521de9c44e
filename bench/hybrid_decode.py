"""Decode throughput of a Nemotron-H-like hybrid vs an all-attention model of equal size.

Usage: python bench/hybrid_decode.py [--quick] [--contexts 1024,2048,...] [--batches 1,8]
       [--new-tokens 32] [--threads 1] [--library] [--mamba-only]
       [--out results/bench/hybrid_decode.json]

Models (fp32, random init, seed 0; decode cost does not depend on the weights' values):

* hybrid: ``M-M-M-M*-M-M-M-M*-M-M-M-`` (11 Mamba-2, 11 MLP, 2 attention = 8% attention layers,
  the Nemotron-H-8B pattern scaled to 24 layers), hidden 512, GQA 8 query / 2 KV heads of 64,
  Mamba 16 heads x 64, state 128, 2 groups, squared-ReLU MLP 2688 (5.25 x hidden, as 8B).
* attention: ``*-`` repeated at the same width and heads, the number of pairs (then the MLP
  width, if needed) chosen so the parameter counts (``count_parameters``) differ by < 2%.
* mamba_only (``--mamba-only``): ``M-`` x 12, the check that a cached Mamba step does not grow
  with context.

Each model prefills one random prompt of the longest context once (batch 1, the model's own
forward in 1024-token chunks); the prefill time to each context is the cumulative time up to
that chunk, and the Mamba conv/SSM states are snapshotted there, so one prefill serves every
context. For each context and batch the cache is moved into preallocated buffers
(``openrecipe.model.decode``; batch 8 repeats the prefilled row: a step costs the same whatever
the rows hold), one step warms up, and ``--new-tokens`` greedy steps are timed, one step of each
model in turn so that load from other processes falls on both alike. tokens/s = batch / median
step time; ratio = hybrid tokens/s / attention tokens/s. One thread by default: on a shared
2-core machine a 2-thread OpenMP step waits at every barrier for a descheduled thread. ``--library`` also
times transformers' own cached step (``model.forward`` with ``DynamicCache``) at the shortest
context, batch 1, beside ours. Wall clock on a shared machine: results go to results/bench/,
never into a manifest or a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from openrecipe.model.build import build_model, count_parameters, nemotronh_config  # noqa: E402
from openrecipe.model.decode import (  # noqa: E402
    mamba_snapshot,
    prefill,
    state_from_cache,
    step,
)
from openrecipe.paths import find_project_root  # noqa: E402

CONTEXTS = (1024, 2048, 4096, 8192, 16384, 32768)
BATCHES = (1, 8)
VOCAB = 1024  # the default recipe's tokenizer: embeddings stay ~2% of the parameters
HYBRID = "M-M-M-M*-M-M-M-M*-M-M-M-"
WIDTH = {
    "hidden_size": 512,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "head_dim": 64,
    "mamba_num_heads": 16,
    "mamba_head_dim": 64,
    "ssm_state_size": 128,
    "n_groups": 2,
    "chunk_size": 128,
    "intermediate_size": 2688,
    "mlp_hidden_act": "relu2",
}
PREFILL_CHUNK = 1024
MATCH = 0.02


def config_for(pattern: str, max_len: int, **overrides):
    config = nemotronh_config(
        {**WIDTH, **overrides, "hybrid_override_pattern": pattern},
        VOCAB,
        bos_id=1,
        eos_id=2,
        pad_id=0,
        max_position_embeddings=max_len,
    )
    config._attn_implementation = "sdpa"  # flash-style CPU kernel for the prefill
    return config


def matched_attention(target: int, max_len: int) -> tuple[str, dict]:
    """The ``*-`` pattern (and MLP width, if the pair count alone misses) whose parameter count
    is within ``MATCH`` of ``target``."""
    per_pair = (
        count_parameters(config_for("*-*-", max_len))["total"]
        - count_parameters(config_for("*-", max_len))["total"]
    )
    base = count_parameters(config_for("*-", max_len))["total"] - per_pair
    pairs = max(1, round((target - base) / per_pair))
    pattern, overrides = "*-" * pairs, {}
    total = count_parameters(config_for(pattern, max_len))["total"]
    if abs(total / target - 1) >= MATCH:  # widen/narrow the MLPs by the missing parameters
        delta = (target - total) // (2 * WIDTH["hidden_size"] * pairs)
        overrides = {"intermediate_size": WIDTH["intermediate_size"] + delta}
        total = count_parameters(config_for(pattern, max_len, **overrides))["total"]
    if abs(total / target - 1) >= MATCH:
        raise SystemExit(f"cannot match {target} parameters within {MATCH:.0%}: {total}")
    return pattern, overrides


def prepared(name, config, contexts) -> dict:
    """Build the model and prefill one prompt of max(contexts) tokens (batch 1) in chunks,
    keeping, at each context, the cumulative prefill time, the greedy next token and the Mamba
    states."""
    model = build_model(config, seed=0).eval()
    ids = torch.randint(3, VOCAB, (1, max(contexts)), generator=torch.Generator().manual_seed(0))
    marks: dict[int, dict] = {}
    start = time.perf_counter()

    def snapshot(end: int, logits: torch.Tensor, cache) -> None:
        if end in contexts:
            marks[end] = {
                "seconds": time.perf_counter() - start,
                "first": logits.argmax(-1),
                "mamba": mamba_snapshot(model, cache),
            }

    _, cache = prefill(model, ids, chunk=PREFILL_CHUNK, on_chunk=snapshot)
    print(
        f"{name:10s} prefill " + ", ".join(f"{c}: {m['seconds']:.1f} s" for c, m in marks.items()),
        flush=True,
    )
    return {"model": model, "cache": cache, "marks": marks}


def interleaved_decode(prepared_models: dict, context: int, batch: int, new_tokens: int) -> dict:
    """Greedy decode ``new_tokens`` for every model after ``context`` cached positions, one step
    of each model in turn (the order rotating), so load from other processes falls on all of
    them alike; per model the median step time. One untimed warm-up step each."""
    states, tokens, times = {}, {}, {}
    for name, prep in prepared_models.items():
        conv, ssm = prep["marks"][context]["mamba"]
        states[name] = state_from_cache(
            prep["model"],
            prep["cache"],
            context,
            extra=new_tokens + 1,
            batch=batch,
            conv=conv,
            ssm=ssm,
        )
        first = prep["marks"][context]["first"].expand(batch).clone()
        tokens[name] = step(prep["model"], states[name], first).argmax(-1)
        times[name] = []
    names = list(prepared_models)
    for round_ in range(new_tokens):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            start = time.perf_counter()
            tokens[name] = step(prepared_models[name]["model"], states[name], tokens[name]).argmax(
                -1
            )
            times[name].append(time.perf_counter() - start)
    rows = {}
    for name in names:
        median = statistics.median(times[name])
        rows[name] = {
            "tokens_per_s": batch / median,
            "ms_per_step_median": 1000 * median,
            "ms_per_step_mean": 1000 * statistics.fmean(times[name]),
            "cache_mb": states[name].nbytes() / 2**20,
        }
    return rows


def library_step_ms(model, context: int, new_tokens: int) -> dict:
    """transformers' own cached step (forward + DynamicCache) vs ours, batch 1, after the same
    prefill of ``context`` tokens, interleaved step by step; medians."""
    ids = torch.randint(3, VOCAB, (1, context), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits, cache = prefill(model, ids, chunk=PREFILL_CHUNK)
        ours = state_from_cache(model, cache, context, extra=new_tokens + 1)
        ours_token = logits.argmax(-1)
        lib_token = ours_token[:, None]
        library, mine = [], []
        for i in range(new_tokens + 1):
            start = time.perf_counter()
            out = model(
                lib_token,
                past_key_values=cache,
                use_cache=True,
                position_ids=torch.tensor([[context + i]]),
            )
            library.append(time.perf_counter() - start)
            lib_token = out.logits[:, -1].argmax(-1, keepdim=True)
            start = time.perf_counter()
            ours_token = step(model, ours, ours_token).argmax(-1)
            mine.append(time.perf_counter() - start)
    result = {
        "library_ms_per_step": 1000 * statistics.median(library[1:]),
        "ours_ms_per_step": 1000 * statistics.median(mine[1:]),
    }
    result["library_over_ours"] = result["library_ms_per_step"] / result["ours_ms_per_step"]
    return result


def crossover(hyb: dict, att: dict, contexts, batch: int) -> int | None:
    """The shortest context from which the hybrid is faster at every longer one measured."""
    found = None
    for context in sorted(contexts, reverse=True):
        key = f"{context}/{batch}"
        if hyb[key]["tokens_per_s"] <= att[key]["tokens_per_s"]:
            break
        found = context
    return found


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="contexts 1k,2k, 8 new tokens")
    parser.add_argument("--contexts", type=str, default=None, help="comma list, multiples of 1024")
    parser.add_argument("--batches", type=str, default=None, help="comma list (default 1,8)")
    parser.add_argument("--new-tokens", type=int, default=None, help="timed steps (default 32)")
    parser.add_argument(
        "--threads", type=int, default=1, help="1: robust to other load on a shared machine"
    )
    parser.add_argument("--library", action="store_true", help="also time transformers' step")
    parser.add_argument(
        "--mamba-only", action="store_true", help="add an all-Mamba model (step flat in context?)"
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    contexts = (
        tuple(int(c) for c in args.contexts.split(","))
        if args.contexts
        else ((1024, 2048) if args.quick else CONTEXTS)
    )
    if any(c <= 0 or c % PREFILL_CHUNK for c in contexts):
        raise SystemExit(f"--contexts: each must be a positive multiple of {PREFILL_CHUNK}")
    batches = tuple(int(b) for b in args.batches.split(",")) if args.batches else BATCHES
    new_tokens = args.new_tokens or (8 if args.quick else 32)
    torch.set_num_threads(args.threads)
    project = find_project_root()
    out = args.out or project / "results" / "bench" / (
        "hybrid_decode_quick.json" if args.quick else "hybrid_decode.json"
    )
    max_len = max(contexts) + new_tokens + 2

    hybrid = config_for(HYBRID, max_len)
    hybrid_params = count_parameters(hybrid)
    att_pattern, att_overrides = matched_attention(hybrid_params["total"], max_len)
    models = {
        "hybrid": (HYBRID, {}),
        "attention": (att_pattern, att_overrides),
    }
    if args.mamba_only:
        models["mamba_only"] = ("M-" * (len(HYBRID) // 2), {})
    report_models, preps = {}, {}
    began = time.perf_counter()
    for name, (pattern, overrides) in models.items():
        config = config_for(pattern, max_len, **overrides)
        report_models[name] = {
            "pattern": pattern,
            "overrides": overrides,
            "params": count_parameters(config),
            "attention_layers": pattern.count("*"),
            "mamba_layers": pattern.count("M"),
        }
        print(f"{name}: {pattern} {overrides or ''} {report_models[name]['params']['total']:,}")
        preps[name] = prepared(name, config, contexts)
    results = {
        name: {
            "prefill_s": {str(c): m["seconds"] for c, m in prep["marks"].items()},
            "decode": {},
        }
        for name, prep in preps.items()
    }
    for context in contexts:
        for batch in batches:
            rows = interleaved_decode(preps, context, batch, new_tokens)
            for name, row in rows.items():
                results[name]["decode"][f"{context}/{batch}"] = row
            print(
                f"ctx {context:6d} b{batch}: "
                + ", ".join(
                    f"{n} {r['tokens_per_s']:.1f} tok/s ({r['ms_per_step_median']:.1f} ms)"
                    for n, r in rows.items()
                ),
                flush=True,
            )
    if args.library:  # transformers cannot decode an all-Mamba model, so hybrid and attention
        for name in ("hybrid", "attention"):
            lib = library_step_ms(preps[name]["model"], min(contexts), new_tokens)
            results[name]["library_vs_ours"] = {"context": min(contexts), "batch": 1, **lib}
            print(
                f"{name:10s} library step {lib['library_ms_per_step']:.1f} ms vs ours "
                f"{lib['ours_ms_per_step']:.1f} ms (ctx {min(contexts)}, batch 1)"
            )
    del preps

    hyb, att = results["hybrid"]["decode"], results["attention"]["decode"]
    ratio = {key: hyb[key]["tokens_per_s"] / att[key]["tokens_per_s"] for key in hyb}
    cross = {str(b): crossover(hyb, att, contexts, b) for b in batches}
    print(
        f"\n{'context':>8s} {'batch':>5s} {'hybrid tok/s':>13s} {'attention tok/s':>16s} "
        f"{'ratio':>6s} {'prefill hyb/att s':>18s}"
    )
    for context in contexts:
        for batch in batches:
            key = f"{context}/{batch}"
            print(
                f"{context:8d} {batch:5d} {hyb[key]['tokens_per_s']:13.1f} "
                f"{att[key]['tokens_per_s']:16.1f} {ratio[key]:6.2f} "
                f"{results['hybrid']['prefill_s'][str(context)]:8.1f}/"
                f"{results['attention']['prefill_s'][str(context)]:.1f}"
            )
    print("hybrid faster from context: " + ", ".join(f"batch {b}: {c}" for b, c in cross.items()))

    report = {
        "command": "python bench/hybrid_decode.py " + " ".join(argv),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "threads": args.threads,
            "dtype": "float32",
        },
        "width": WIDTH,
        "vocab": VOCAB,
        "models": report_models,
        "param_mismatch": report_models["attention"]["params"]["total"] / hybrid_params["total"]
        - 1,
        "contexts": list(contexts),
        "batches": list(batches),
        "new_tokens": new_tokens,
        "prefill_chunk": PREFILL_CHUNK,
        "prefill_batch": 1,
        "results": results,
        "hybrid_over_attention": ratio,
        "hybrid_faster_from_context": cross,
        "wall_s": time.perf_counter() - began,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {out} ({report['wall_s']:.0f} s)")


if __name__ == "__main__":
    main(sys.argv[1:])
