"""A release proxy's pretraining on a CUDA GPU in bf16: tokens/s against the same loop on CPU cores.

Usage: python bench/pretrain_gpu.py [--recipe recipes/nemotron_3_nano_30b_a3b_proxy.yaml]
           [--steps 60] [--micro-batches 8,64,256,1024] [--out results/bench/pretrain_gpu.json]

Needs the proxy's ``pack`` and ``tokenizer`` stage outputs in ``runs/<recipe name>/`` (``make``
or ``bench/proxies.py`` makes them on a CPU machine; they are a few hundred kB and travel to the
GPU machine with the working tree). Everything below runs in one process:

1. Peak: the best bf16 8192^3 matmul rate of the GPU, the denominator of MFU.
2. Stage: the ``pretrain`` stage itself, through ``run_stage`` with an override file setting
   ``resources.device: cuda``: the manifest, the hashes and the deterministic-algorithms setting
   are the ones Snakemake's job gets. Run twice, to check that the GPU gives the same weights
   twice (same recipe, same machine, same hashes); its final loss is set beside the committed CPU
   run's (the same seed and data, so only the arithmetic differs).
3. Loop: the stage's own loop (``pretrain._train``) timed after a warm-up, at the recipe's
   micro-batch on the GPU and on 2 and all CPU threads (the baseline, same process), then at
   larger micro-batches on the GPU (the pack cycled), where a ~100k-parameter proxy starts to use
   the device. Model FLOPs are PaLM's 6N + attention, as in ``bench/pretrain.py``.

Without CUDA it exits with an error rather than measuring nothing.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

# cuBLAS needs this before its first handle when deterministic algorithms are on (the stage sets
# it too, but the peak matmul below comes first)
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from openrecipe.data.indexed import IndexedDataset  # noqa: E402
from openrecipe.hashing import derive_seed, sha256_file  # noqa: E402
from openrecipe.model.build import build_model, config_for_tokenizer, count_parameters  # noqa: E402
from openrecipe.model.recipe_config import PretrainParams  # noqa: E402
from openrecipe.paths import find_project_root  # noqa: E402
from openrecipe.recipe import load_recipe  # noqa: E402
from openrecipe.stage import run_stage, seed_everything  # noqa: E402
from openrecipe.stage_config import decode_value  # noqa: E402
from openrecipe.train import pretrain  # noqa: E402


def _bench_pretrain_module():
    """bench/pretrain.py (not a package): its Cycled dataset and FLOP count are reused."""
    spec = importlib.util.spec_from_file_location(
        "bench_pretrain", Path(__file__).with_name("pretrain.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def gpu_matmul_peak(n: int = 8192, repeats: int = 10) -> float:
    """Best bf16 TFLOP/s of an n^3 matmul on the current CUDA device."""
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e12


def run_pretrain_stage(
    recipe_path: Path, run_dir: Path, project: Path, work: Path, device: str = "cuda"
) -> dict:
    """The pretrain stage on ``device`` through the stage harness; wall, loss and weight hash."""
    override = work / f"{device}.yaml"
    override.write_text(f"resources:\n  device: {device}\n", encoding="utf-8")
    recipe = load_recipe(recipe_path, [override], project=project)
    out = work / "pretrain"
    inputs = {"pack": run_dir / "pack", "tokenizer": run_dir / "tokenizer"}
    start = time.perf_counter()
    manifest = run_stage("pretrain", recipe, out, inputs, pretrain.run, project=project)
    wall = time.perf_counter() - start
    summary = manifest["summary"]
    return {
        "wall_s": round(wall, 3),
        "tokens": summary["tokens"],
        "tokens_per_s_stage": round(summary["tokens"] / wall, 1),
        "device": summary["device"],
        "compute": summary["compute"],
        "first_loss": summary["first_loss"],
        "final_loss": summary["final_loss"],
        "model_sha256": sha256_file(out / "model" / "model.safetensors"),
    }


def time_loop(
    recipe,
    run_dir: Path,
    device: str,
    micro_batch: int,
    steps: int,
    threads: int,
    strict: bool = True,
):
    """tokens/s of ``pretrain._train`` on ``device`` (after a 3-step warm-up of the same shape).
    ``strict=False`` lets ops without a deterministic CUDA kernel run (with a warning)."""
    bench = _bench_pretrain_module()
    pack_dir, tokenizer_dir = run_dir / "pack", run_dir / "tokenizer"
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = config_for_tokenizer(recipe.get("model"), tokenizer)
    base = recipe.get("pretrain")
    data = IndexedDataset(pack_dir / "train")
    fingerprint = pretrain._input_fingerprint(pack_dir, tokenizer_dir)
    seed = recipe.get("seed")
    result = {}
    for label, n_steps in (("warmup", 3), ("timed", steps)):
        section = {
            **base,
            "steps": n_steps,
            "micro_batch_size": micro_batch,
            "grad_accum": 1,
            "log_every": n_steps,
            "checkpoint_every": 0,
        }
        cfg = decode_value(PretrainParams, section, "pretrain")
        seed_everything(seed, threads)
        torch.use_deterministic_algorithms(True, warn_only=not strict)
        model = build_model(config, seed=derive_seed(seed, "pretrain", "init")).to(device)
        loader = pretrain.SequentialBatches(
            bench.Cycled(data, n_steps * micro_batch),
            seq_length=cfg.seq_length,
            micro_batch=micro_batch,
            grad_accum=1,
            fingerprint=fingerprint,
        )
        with tempfile.TemporaryDirectory() as tmp:
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            loop = pretrain._train(
                model, loader, cfg, pad_id=tokenizer.pad_token_id, resume_dir=Path(tmp) / "r"
            )
            if device == "cuda":
                torch.cuda.synchronize()
            wall = time.perf_counter() - start
        result[label] = wall
        final_loss = loop["state"]["metrics"][-1]["loss"]
    tokens = steps * micro_batch * base["seq_length"]
    params = count_parameters(config)
    flops = bench.flops_per_token(config, params, base["seq_length"]) * tokens
    return {
        "device": device,
        "threads": threads,
        "deterministic_algorithms": "strict" if strict else "warn_only",
        "micro_batch": micro_batch,
        "steps": steps,
        "tokens": tokens,
        "seconds": round(result["timed"], 4),
        "tokens_per_s": round(tokens / result["timed"], 1),
        "model_tflops_per_s": round(flops / result["timed"] / 1e12, 6),
        "final_loss": final_loss,
        "peak_cuda_mib": (
            round(torch.cuda.max_memory_allocated() / 2**20, 1) if device == "cuda" else None
        ),
    }


def _attempt(name: str, errors: dict, fn, *args):
    """Run one measurement; a failure is recorded with its traceback and the bench goes on."""
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - every failure is a finding to report
        errors[name] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}"
        print(f"{name}: FAILED {type(exc).__name__}: {exc}", file=sys.stderr)
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", default="recipes/nemotron_3_nano_30b_a3b_proxy.yaml")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--micro-batches", default="8,64,256,1024")
    parser.add_argument("--out", default="results/bench/pretrain_gpu.json")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("pretrain_gpu: this torch sees no CUDA device; nothing measured", file=sys.stderr)
        return 2
    project = find_project_root()
    recipe_path = project / args.recipe
    recipe = load_recipe(recipe_path, project=project)
    if recipe.get("pretrain")["precision"] != "bf16":
        raise SystemExit(f"{args.recipe}: pretrain.precision is not bf16; pick a bf16 proxy")
    run_dir = project / "runs" / recipe.get("name")
    errors: dict[str, str] = {}
    report: dict = {
        "bench": "pretrain_gpu",
        "recipe": args.recipe,
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "cpu_threads_available": os.cpu_count(),
    }
    report["bf16_matmul_peak_tflops"] = _attempt("peak", errors, gpu_matmul_peak)
    print(f"peak bf16 matmul: {report['bf16_matmul_peak_tflops']} TFLOP/s")

    cpu_manifest = run_dir / "pretrain" / "manifest.json"
    if cpu_manifest.is_file():
        cpu = json.loads(cpu_manifest.read_text(encoding="utf-8"))["summary"]
        report["cpu_stage_reference"] = {
            "final_loss": cpu["final_loss"],
            "device": cpu["device"],
            "note": "the committed CPU run of the same recipe (same seed, data, steps)",
        }
    stages = []
    for attempt in (1, 2):
        with tempfile.TemporaryDirectory(dir=project / "runs") as tmp:
            stage = _attempt(
                f"stage_{attempt}",
                errors,
                run_pretrain_stage,
                recipe_path,
                run_dir,
                project,
                Path(tmp),
            )
        if stage:
            print(f"stage run {attempt}: {json.dumps(stage)}")
            stages.append(stage)
    report["stage"] = stages
    if len(stages) == 2:
        report["stage_deterministic"] = stages[0]["model_sha256"] == stages[1]["model_sha256"]

    recipe_mb = recipe.get("pretrain")["micro_batch_size"]
    loops = []
    baseline_plan = [("cpu", recipe_mb, 2), ("cpu", recipe_mb, os.cpu_count() or 1)]
    gpu_plan = [("cuda", int(mb), 1) for mb in args.micro_batches.split(",")]
    for device, micro_batch, threads in baseline_plan + gpu_plan:
        # the CPU baseline needs fewer steps to time; its rate is per token
        steps = args.steps if device == "cuda" else min(args.steps, 20)
        # strict first; on CUDA, an op without a deterministic kernel gets one warn-only retry
        for strict in (True, False) if device == "cuda" else (True,):
            name = f"loop_{device}_{micro_batch}_{threads}" + ("" if strict else "_warn_only")
            loop_args = (recipe, run_dir, device, micro_batch, steps, threads, strict)
            row = _attempt(name, errors, time_loop, *loop_args)
            if row is not None or "determinis" not in errors.get(name, ""):
                break
        if row:
            print(f"loop: {json.dumps(row)}")
            loops.append(row)
    report["loop"] = loops
    cpu2 = next((r for r in loops if r["device"] == "cpu" and r["threads"] == 2), None)
    for row in loops:
        if cpu2:
            row["speedup_vs_cpu_2_threads"] = round(row["tokens_per_s"] / cpu2["tokens_per_s"], 2)
        peak = report["bf16_matmul_peak_tflops"]
        if row["device"] == "cuda" and peak:
            row["mfu"] = round(row["model_tflops_per_s"] / peak, 8)
    report["errors"] = errors
    out = project / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], out.name).write_text(out.read_text(encoding="utf-8"))
    print(f"wrote {out}")
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
