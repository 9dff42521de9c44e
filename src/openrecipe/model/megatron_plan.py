"""The ``plan`` stage: compile a recipe into a Megatron-LM ``pretrain_hybrid.py`` launch.

The scale backend trains the same recipe with Megatron-core's hybrid model and Transformer
Engine on a SLURM cluster. This module turns the recipe's model, pretrain and parallelism
sections into that launch: the exact argument list, a ``torchrun`` line per node, the ``srun``
line that starts it on every node, and the environment. It runs nothing; the workflow's
``pretrain_megatron`` rule executes ``launch.sh`` inside the SLURM allocation.

Flag names were checked by parsing every generated argument list with Megatron-LM's own argparse
parser (``megatron.training.arguments.add_megatron_arguments``) at ``MEGATRON_LM_COMMIT``; a flag
emitted that is not in ``CONFIRMED_FLAGS`` is listed in the plan's ``unconfirmed_flags``.

Pretraining phases (``data.phases``) run as Megatron-LM runs them: one resumed job per phase
(``openrecipe.model.megatron_phases``). Every phase's job has the same arguments but its
``--data-path`` (its own dataset, written by the ``megatron_data`` stage); training is
sample-based so that ``--phase-transition-iterations`` can end each job at its phase's last
iteration, and the one WSD schedule (``--lr-*-samples``) continues across the jobs. launch.sh
runs the phases in order and skips a phase the checkpoint has already passed, so resubmitting
the job resumes where it stopped.

Outputs (in ``ctx.out``): ``megatron_plan.json`` (sorted keys) and ``launch.sh``.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import Any

from openrecipe.errors import RecipeError
from openrecipe.model.megatron_phases import PhaseRun, PhaseSpec, data_prefix, phase_runs
from openrecipe.model.recipe_config import ModelParams, ParallelismParams, PretrainParams
from openrecipe.stage import StageContext
from openrecipe.stage_config import decode_view, plain, view_field


@dataclass(frozen=True)
class PlanConfig:
    """The plan stage's view, typed: the recipe's name and seed, the model, the pretraining
    run, its phases and its Megatron layout."""

    name: str = view_field("name")
    seed: int = view_field("seed")
    model: ModelParams = view_field("model")
    pretrain: PretrainParams = view_field("pretrain")
    phases: tuple[PhaseSpec, ...] = view_field("data.phases")
    parallelism: ParallelismParams = view_field("parallelism")


MEGATRON_LM_COMMIT = "d98e8a64dd"  # NVIDIA/Megatron-LM main, parsed with its argparse parser

# Every flag this module can emit, confirmed against Megatron-LM at MEGATRON_LM_COMMIT.
CONFIRMED_FLAGS = frozenset(
    [
        "--adam-beta1",
        "--adam-beta2",
        "--adam-eps",
        "--attention-dropout",
        "--bf16",
        "--clip-grad",
        "--data-cache-path",
        "--data-path",
        "--disable-bias-linear",
        "--eval-iters",
        "--expert-model-parallel-size",
        "--expert-tensor-parallel-size",
        "--ffn-hidden-size",
        "--first-last-layers-bf16",
        "--fp4-format",
        "--fp4-recipe",
        "--fp8-format",
        "--fp8-recipe",
        "--global-batch-size",
        "--group-query-attention",
        "--hidden-dropout",
        "--hidden-size",
        "--hybrid-layer-pattern",
        "--init-method-std",
        "--is-hybrid-model",
        "--kv-channels",
        "--load",
        "--log-interval",
        "--lr",
        "--lr-decay-samples",
        "--lr-decay-style",
        "--lr-warmup-samples",
        "--lr-wsd-decay-samples",
        "--lr-wsd-decay-style",
        "--mamba-head-dim",
        "--mamba-num-groups",
        "--mamba-num-heads",
        "--mamba-state-dim",
        "--max-position-embeddings",
        "--micro-batch-size",
        "--min-lr",
        "--moe-aux-loss-coeff",
        "--moe-ffn-hidden-size",
        "--moe-grouped-gemm",
        "--moe-latent-size",
        "--moe-router-dtype",
        "--moe-router-enable-expert-bias",
        "--moe-router-load-balancing-type",
        "--moe-router-score-function",
        "--moe-router-topk",
        "--moe-router-topk-scaling-factor",
        "--moe-shared-expert-intermediate-size",
        "--moe-token-dispatcher-type",
        "--mtp-num-layers",
        "--normalization",
        "--num-attention-heads",
        "--num-experts",
        "--num-layers",
        "--num-layers-at-end-in-bf16",
        "--num-layers-at-start-in-bf16",
        "--num-query-groups",
        "--phase-transition-iterations",
        "--pipeline-model-parallel-size",
        "--position-embedding-type",
        "--save",
        "--save-interval",
        "--seed",
        "--seq-length",
        "--sequence-parallel",
        "--split",
        "--squared-relu",
        "--context-parallel-size",
        "--tensor-model-parallel-size",
        "--tokenizer-model",
        "--tokenizer-type",
        "--train-samples",
        "--untie-embeddings-and-output-weights",
        "--use-distributed-optimizer",
        "--weight-decay",
    ]
)

# recipe decay shape -> Megatron --lr-wsd-decay-style (choices: exponential linear cosine minus_sqrt)
_WSD_STYLE = {"minus_sqrt": "minus_sqrt", "linear": "linear", "cosine": "cosine"}

# Per-module precision exceptions of the Nemotron 3 NVFP4 recipes that Megatron-LM has no flag
# for (releases.md); recorded in the plan so a reader sees what the flags leave out.
_NVFP4_NOTE = (
    "NVIDIA's NVFP4 recipes also keep QKV/attention projections, MoE latent projections, MTP "
    "layers and embeddings in BF16 and Mamba out_proj in MXFP8; Megatron-LM flags express only "
    "whole first/last layers (--num-layers-at-start/end-in-bf16)."
)

_ENV = {
    "CUDA_DEVICE_MAX_CONNECTIONS": "1",  # Megatron's TP/SP comm-compute overlap needs it
    "NCCL_NVLS_ENABLE": "0",
    "PYTHONPATH": "${MEGATRON_LM}:${PYTHONPATH:-}",
    "TORCH_NCCL_AVOID_RECORD_STREAMS": "1",
}


def _fmt(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _flag(args: list[str], name: str, value: Any = None) -> None:
    args.append(name)
    if value is not None:
        args.append(_fmt(value))


def _model_args(model: dict[str, Any], args: list[str]) -> None:
    pattern = model["hybrid_override_pattern"]
    heads = model["num_attention_heads"]
    _flag(args, "--is-hybrid-model")
    _flag(args, "--hybrid-layer-pattern", pattern)
    _flag(args, "--num-layers", len(pattern))
    _flag(args, "--hidden-size", model["hidden_size"])
    _flag(args, "--ffn-hidden-size", model["intermediate_size"])
    _flag(args, "--num-attention-heads", heads)
    _flag(args, "--group-query-attention")
    _flag(args, "--num-query-groups", model["num_key_value_heads"])
    _flag(args, "--kv-channels", model.get("head_dim", model["hidden_size"] // heads))
    _flag(args, "--mamba-num-heads", model["mamba_num_heads"])
    _flag(args, "--mamba-head-dim", model["mamba_head_dim"])
    _flag(args, "--mamba-state-dim", model["ssm_state_size"])
    _flag(args, "--mamba-num-groups", model["n_groups"])
    if "E" in pattern:
        # Router settings shared by the Nemotron 3 family (Megatron-Bridge NemotronHModelProvider).
        _flag(args, "--num-experts", model["n_routed_experts"])
        _flag(args, "--moe-router-topk", model["num_experts_per_tok"])
        _flag(args, "--moe-ffn-hidden-size", model["moe_intermediate_size"])
        _flag(
            args,
            "--moe-shared-expert-intermediate-size",
            model["moe_shared_expert_intermediate_size"],
        )
        if "moe_latent_size" in model:
            _flag(args, "--moe-latent-size", model["moe_latent_size"])
        if "routed_scaling_factor" in model:
            _flag(args, "--moe-router-topk-scaling-factor", model["routed_scaling_factor"])
        _flag(args, "--moe-router-score-function", "sigmoid")
        _flag(args, "--moe-router-enable-expert-bias")
        _flag(args, "--moe-router-load-balancing-type", "seq_aux_loss")
        _flag(args, "--moe-aux-loss-coeff", 1e-4)
        _flag(args, "--moe-router-dtype", "fp32")
        _flag(args, "--moe-grouped-gemm")
        _flag(args, "--moe-token-dispatcher-type", "alltoall")
    if model.get("mtp_num_layers"):
        # The MTP depth's own layers go in the unified pattern after "/" (Megatron-LM's
        # hybrid_layer_allocation); --mtp-num-layers must then agree with it.
        mtp = model.get("mtp_hybrid_override_pattern", "*E")
        index = args.index("--hybrid-layer-pattern") + 1
        args[index] = pattern + "".join("/" + mtp for _ in range(model["mtp_num_layers"]))
        _flag(args, "--mtp-num-layers", model["mtp_num_layers"])
    _flag(args, "--position-embedding-type", model.get("position_embedding_type", "none"))
    _flag(args, "--squared-relu")
    _flag(args, "--normalization", "RMSNorm")
    _flag(args, "--disable-bias-linear")
    if not model.get("tie_word_embeddings", False):
        _flag(args, "--untie-embeddings-and-output-weights")
    _flag(args, "--init-method-std", model["initializer_range"])
    _flag(args, "--attention-dropout", 0.0)
    _flag(args, "--hidden-dropout", 0.0)


def _precision_args(pretrain: dict[str, Any], args: list[str]) -> None:
    _flag(args, "--bf16")  # parameters and non-quantised compute stay BF16 in every recipe
    precision = pretrain["precision"]
    if precision == "fp8":
        # Per-tensor current scaling, E4M3 forward and E5M2 gradients = "hybrid" + "tensorwise".
        _flag(args, "--fp8-format", "hybrid")
        _flag(args, "--fp8-recipe", "tensorwise")
    elif precision == "nvfp4":
        _flag(args, "--fp4-format", "e2m1")
        _flag(args, "--fp4-recipe", "nvfp4")
    if precision != "bf16" and (pretrain["bf16_first_layers"] or pretrain["bf16_last_layers"]):
        # The counts only take effect with --first-last-layers-bf16 (TransformerConfig).
        _flag(args, "--first-last-layers-bf16")
        _flag(args, "--num-layers-at-start-in-bf16", pretrain["bf16_first_layers"])
        _flag(args, "--num-layers-at-end-in-bf16", pretrain["bf16_last_layers"])


def _schedule_args(
    pretrain: dict[str, Any], gbs: int, phases: list[PhaseRun], args: list[str]
) -> None:
    """The optimizer and one WSD schedule over the whole run, in samples (Megatron-LM's phase
    transitions need sample-based training); warmup and decay keep their iteration counts."""
    steps = pretrain["steps"]
    opt, sched = pretrain["optimizer"], pretrain["schedule"]
    _flag(args, "--train-samples", steps * gbs)
    if len(phases) > 1:
        _flag(args, "--phase-transition-iterations", ",".join(str(p.end) for p in phases[:-1]))
    _flag(args, "--lr", opt["lr"])
    _flag(args, "--min-lr", opt["min_lr"])
    _flag(args, "--lr-decay-style", "WSD")
    _flag(args, "--lr-decay-samples", steps * gbs)
    _flag(args, "--lr-warmup-samples", round(sched["warmup_fraction"] * steps) * gbs)
    _flag(args, "--lr-wsd-decay-style", _WSD_STYLE[sched["decay_shape"]])
    _flag(args, "--lr-wsd-decay-samples", round(sched["decay_fraction"] * steps) * gbs)
    _flag(args, "--weight-decay", opt["weight_decay"])
    _flag(args, "--adam-beta1", opt["betas"][0])
    _flag(args, "--adam-beta2", opt["betas"][1])
    _flag(args, "--adam-eps", opt["eps"])
    _flag(args, "--clip-grad", opt["grad_clip"])


def _layout(recipe: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Parallelism with defaults, and the data-parallel size; refuses layouts Megatron would."""
    par = recipe.get("parallelism")
    if par is None:
        raise RecipeError("parallelism: required to compile a Megatron plan (nodes, gpus_per_node)")
    world = par["nodes"] * par["gpus_per_node"]
    model_parallel = par["tp"] * par["pp"] * par["cp"]
    if world % model_parallel:
        raise RecipeError(f"parallelism: {world} GPUs not divisible by tp*pp*cp = {model_parallel}")
    dp = world // model_parallel
    pretrain = recipe["pretrain"]
    gbs = pretrain.get("global_batch_size", pretrain["micro_batch_size"] * pretrain["grad_accum"])
    if gbs % (pretrain["micro_batch_size"] * dp):
        raise RecipeError(
            f"pretrain.global_batch_size: {gbs} not divisible by micro_batch_size x data-parallel "
            f"size ({pretrain['micro_batch_size']} x {dp})"
        )
    if (world // par["pp"]) % (par["ep"] * par["etp"]):
        raise RecipeError(
            f"parallelism: ep*etp = {par['ep'] * par['etp']} does not divide {world // par['pp']}"
        )
    if len(recipe["model"]["hybrid_override_pattern"]) % par["pp"]:
        raise RecipeError("parallelism.pp: must divide the number of layers")
    return par, dp


def _layout_args(
    model: dict[str, Any], pretrain: dict[str, Any], par: dict[str, Any], gbs: int, args: list[str]
) -> None:
    """Parallelism and batch flags."""
    _flag(args, "--tensor-model-parallel-size", par["tp"])
    _flag(args, "--pipeline-model-parallel-size", par["pp"])
    _flag(args, "--context-parallel-size", par["cp"])
    if "E" in model["hybrid_override_pattern"]:
        _flag(args, "--expert-model-parallel-size", par["ep"])
        _flag(args, "--expert-tensor-parallel-size", par["etp"])
    if par["sequence_parallel"] and par["tp"] > 1:
        _flag(args, "--sequence-parallel")
    _flag(args, "--use-distributed-optimizer")
    _flag(args, "--micro-batch-size", pretrain["micro_batch_size"])
    _flag(args, "--global-batch-size", gbs)
    _flag(args, "--seq-length", pretrain["seq_length"])
    _flag(args, "--max-position-embeddings", pretrain["seq_length"])


def megatron_dir(name: str) -> str:
    """Megatron-LM's own directory in the run: its checkpoints (``--save``/``--load``) and its
    dataset index cache. Not a stage: ``verify`` skips it (``NOT_STAGE_DIRS``)."""
    return f"runs/{name}/pretrain_megatron"


def data_cache_dir(name: str) -> str:
    """Where Megatron writes its dataset index cache (``--data-cache-path``). Without the flag,
    megatron-core's GPTDataset writes ``cache/GPTDataset_indices/`` beside the ``.bin`` it reads,
    inside the sealed pack directory, and ``verify`` then reports those files as unexpected."""
    return f"{megatron_dir(name)}/data_cache"


def _run_args(name: str, pretrain: dict[str, Any], seed: int, args: list[str]) -> None:
    """Seed, tokenizer, data cache, checkpoint and logging flags (the tokenizer is this
    recipe's own tokenizer stage; each phase adds its own ``--data-path``)."""
    _flag(args, "--seed", seed)
    _flag(args, "--tokenizer-type", "HuggingFaceTokenizer")
    _flag(args, "--tokenizer-model", f"runs/{name}/tokenizer")
    _flag(args, "--data-cache-path", data_cache_dir(name))
    _flag(args, "--split", "100,0,0")
    _flag(args, "--eval-iters", 0)
    _flag(args, "--save", megatron_dir(name))
    _flag(args, "--load", megatron_dir(name))
    _flag(args, "--save-interval", max(1, pretrain["steps"] // 100))
    _flag(args, "--log-interval", pretrain["log_every"])


def _commands(args: list[str], nodes: int, gpus: int) -> tuple[str, str]:
    """(the torchrun line each node runs, the srun line that starts them). Shell variables stay
    unquoted (expanded on each node); every argument is quoted."""
    torchrun = " ".join(
        [
            "torchrun",
            f"--nproc-per-node={gpus}",
            f"--nnodes={nodes}",
            "--rdzv-backend=c10d",
            '"--rdzv-endpoint=$MASTER_ADDR:$MASTER_PORT"',
            '"--rdzv-id=$SLURM_JOB_ID"',
            '"$MEGATRON_LM/pretrain_hybrid.py"',
            *(shlex.quote(a) for a in args),
        ]
    )
    srun = shlex.join(
        [
            "srun",
            f"--nodes={nodes}",
            "--ntasks-per-node=1",
            f"--gpus-per-node={gpus}",
            "bash",
            "-c",
            torchrun,
        ]
    )
    return torchrun, srun


def _phase_plans(
    name: str, args: list[str], runs: list[PhaseRun], nodes: int, gpus: int
) -> list[dict[str, Any]]:
    """Per phase, in order: its iterations and samples, its dataset, and its job's full
    argument list, torchrun and srun lines (the shared arguments plus its ``--data-path``)."""
    phases = []
    for run in runs:
        phase_args = [*args, "--data-path", data_prefix(name, run.name)]
        torchrun, srun = _commands(phase_args, nodes, gpus)
        phases.append(
            {
                "name": run.name,
                "iterations": [run.start, run.end],
                "train_samples": run.samples,
                "data_path": data_prefix(name, run.name),
                "loads": megatron_dir(name) if run.start else None,
                "args": phase_args,
                "torchrun": torchrun,
                "srun": srun,
            }
        )
    return phases


def compile_plan(recipe: dict[str, Any]) -> dict[str, Any]:
    """The launch plan of a resolved recipe (deterministic: a pure function of the recipe)."""
    name = recipe["name"]
    model, pretrain = recipe["model"], recipe["pretrain"]
    par, dp = _layout(recipe)
    gbs = pretrain.get("global_batch_size", pretrain["micro_batch_size"] * pretrain["grad_accum"])
    specs = [PhaseSpec(p["name"], p["fraction"], p["weights"]) for p in recipe["data"]["phases"]]
    runs = phase_runs(specs, pretrain["steps"], gbs)
    args: list[str] = []
    _model_args(model, args)
    _precision_args(pretrain, args)
    _layout_args(model, pretrain, par, gbs, args)
    _schedule_args(pretrain, gbs, runs, args)
    _run_args(name, pretrain, recipe["seed"], args)

    nodes, gpus = par["nodes"], par["gpus_per_node"]
    phases = _phase_plans(name, args, runs, nodes, gpus)
    flags = sorted({a for p in phases for a in p["args"] if a.startswith("--")})
    notes = [
        f"data-parallel size {dp}; {gbs // (pretrain['micro_batch_size'] * dp)} micro-batches "
        "per step per rank",
    ]
    if pretrain["precision"] == "nvfp4":
        notes.append(_NVFP4_NOTE)
    return {
        "recipe": name,
        "entry_point": "pretrain_hybrid.py",
        "megatron_lm_commit_checked": MEGATRON_LM_COMMIT,
        "args": args,
        "phases": phases,
        "checkpoint_dir": megatron_dir(name),
        "train_iterations": pretrain["steps"],
        "nodes": nodes,
        "gpus_per_node": gpus,
        "data_parallel_size": dp,
        "env": dict(_ENV),
        "unconfirmed_flags": [f for f in flags if f not in CONFIRMED_FLAGS],
        "notes": notes,
    }


def _phase_lines(plan: dict[str, Any], phase: dict[str, Any], count: str) -> list[str]:
    """One phase's job: run it unless the checkpoint has passed its end, then check it got
    there (Megatron exits at the transition iteration after saving)."""
    start, end = phase["iterations"]
    where = f"phase {phase['name']} ({phase['iterations'][0]}..{end})"
    return [
        "",
        f"# Phase {phase['name']} ({count}): iterations {start}..{end}, {phase['train_samples']} "
        f"samples from {phase['data_path']}" + (f", resuming {phase['loads']}" if start else ""),
        f'if [ "$(checkpointed)" -lt {end} ]; then',
        f"  {phase['srun']}",
        "fi",
        f'[ "$(checkpointed)" -ge {end} ] || {{ echo "{where} stopped at iteration '
        f'$(checkpointed)" >&2; exit 1; }}',
    ]


def launch_script(plan: dict[str, Any]) -> str:
    """The batch step ``pretrain_megatron`` runs inside its SLURM allocation: each phase's job
    in order, resumable (a phase the checkpoint has passed is skipped)."""
    marker = shlex.quote(f"{plan['checkpoint_dir']}/latest_checkpointed_iteration.txt")
    lines = [
        "#!/bin/bash",
        f"# Megatron-LM launch of recipe {plan['recipe']} (generated by openrecipe plan).",
        "set -euo pipefail",
        ': "${MEGATRON_LM:?set MEGATRON_LM to a Megatron-LM checkout}"',
        'export MASTER_ADDR="${MASTER_ADDR:-$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)}"',
        'export MASTER_PORT="${MASTER_PORT:-29500}"',
        *(f'export {k}="{v}"' for k, v in sorted(plan["env"].items())),
        "# The iteration of Megatron's latest checkpoint (0 before the first).",
        f"checkpointed() {{ if [ -f {marker} ]; then cat {marker}; else echo 0; fi; }}",
    ]
    total = len(plan["phases"])
    for index, phase in enumerate(plan["phases"], start=1):
        lines += _phase_lines(plan, phase, f"{index}/{total}")
    lines.append("")
    return "\n".join(lines)


def encode_recipe(config: PlanConfig) -> dict[str, Any]:
    """``compile_plan``'s input: {name, seed, model, pretrain, data.phases, parallelism} as
    written."""
    return {
        "name": config.name,
        "seed": config.seed,
        "model": plain(config.model),
        "pretrain": plain(config.pretrain),
        "data": {"phases": plain(config.phases)},
        "parallelism": plain(config.parallelism),
    }


def run(ctx: StageContext) -> dict[str, Any]:
    # compile_plan takes the sections as the recipe wrote them (tests build them by hand)
    plan = compile_plan(encode_recipe(decode_view(PlanConfig, ctx.config, ctx.stage)))
    (ctx.out / "megatron_plan.json").write_text(
        json.dumps(plan, indent=1, sort_keys=True) + "\n", encoding="utf-8"
    )
    (ctx.out / "launch.sh").write_text(launch_script(plan), encoding="utf-8")
    return {
        "nodes": plan["nodes"],
        "gpus_per_node": plan["gpus_per_node"],
        "data_parallel_size": plan["data_parallel_size"],
        "n_args": len(plan["args"]),
        "phases": {p["name"]: p["iterations"] for p in plan["phases"]},
        "unconfirmed_flags": plan["unconfirmed_flags"],
    }
