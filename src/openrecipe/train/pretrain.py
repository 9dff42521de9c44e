"""The ``pretrain`` stage: a NemotronH hybrid trained from scratch on the packed dataset.

One loop, nanoGPT-style, read top to bottom in ``_train``. Everything that decides the result is
a function of the recipe and the input bytes: the initial weights (seed derived from the recipe
seed), the batch order (sequential over the pack, which already holds sequences in consumption
order), the schedule (a pure function of the step). A run killed part-way resumes from its last
checkpoint in ``<out parent>/.<out name>.resume/<hash of config and inputs>/`` and ends with bit-identical
weights to an unbroken run.

Outputs (in ``ctx.out``):
- ``model/``: ``save_pretrained`` safetensors + config + the tokenizer, loadable by lm-eval's hf
  backend and by ``AutoModelForCausalLM.from_pretrained``;
- ``checkpoint/``: the final resumable checkpoint (see ``checkpoint.py``);
- ``metrics.jsonl``: one row per logged step ``{step, loss, lr, grad_norm, tokens}``;
- ``params.json``: parameter counts.

Precision (``pretrain.precision``): ``bf16`` runs every GEMM under bf16 autocast; ``fp8`` and
``nvfp4`` swap the decoder-layer linears (outside the first/last ``bf16_*_layers``) for
``PrecisionLinear``, which emulates Transformer Engine's FP8 current scaling or NVFP4 recipe in
all three GEMMs. The stochastic-rounding generators of those layers are part of the checkpoint.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm
from transformers import AutoTokenizer

from openrecipe.data.indexed import IndexedDataset
from openrecipe.errors import RecipeError, StageInputError
from openrecipe.hashing import derive_seed, hash_obj
from openrecipe.manifest import read_manifest
from openrecipe.model.build import build_model, config_for_tokenizer, count_parameters
from openrecipe.model.precision import NVFP4Config, apply_precision
from openrecipe.model.recipe_config import ModelParams, OptimizerParams, PretrainParams
from openrecipe.stage import StageContext
from openrecipe.stage_config import decode_view, plain, view_field
from openrecipe.train import checkpoint
from openrecipe.train.resume import resume_record
from openrecipe.train.schedule import wsd_lr


@dataclass(frozen=True)
class PretrainConfig:
    """The pretrain stage's view, typed: the seed, the model, the run, and the threads and
    device it runs with."""

    seed: int = view_field("seed")
    model: ModelParams = view_field("model")
    pretrain: PretrainParams = view_field("pretrain")
    threads: int = view_field("resources.threads")
    device: Literal["cpu", "cuda"] = view_field("resources.device")


IGNORE_INDEX = -100  # cross_entropy's default ignore_index: padding positions carry no loss


class SequentialBatches:
    """Step ``s`` reads sequences ``[s*B, (s+1)*B)`` with ``B = micro_batch * grad_accum``.

    The state is only the position and a fingerprint of the data, so resuming is exact and a
    checkpoint taken on other data is recognised."""

    def __init__(
        self,
        dataset: Sequence[np.ndarray],
        *,
        seq_length: int,
        micro_batch: int,
        grad_accum: int,
        fingerprint: str,
    ) -> None:
        self.dataset = dataset
        self.seq_length = seq_length
        self.micro_batch = micro_batch
        self.grad_accum = grad_accum
        self.fingerprint = fingerprint
        self.position = 0

    def next_step(self) -> list[torch.Tensor]:
        """``grad_accum`` micro-batches of shape ``[micro_batch, seq_length + 1]`` (int64)."""
        batches = []
        for _ in range(self.grad_accum):
            rows = [
                np.asarray(self.dataset[i])
                for i in range(self.position, self.position + self.micro_batch)
            ]
            for offset, row in enumerate(rows):
                if row.shape != (self.seq_length + 1,):
                    raise StageInputError(
                        f"pack: sequence {self.position + offset} has shape {row.shape}, "
                        f"expected ({self.seq_length + 1},) for seq_length {self.seq_length}"
                    )
            batches.append(torch.from_numpy(np.stack(rows).astype(np.int64)))
            self.position += self.micro_batch
        return batches

    def state(self) -> dict[str, Any]:
        return {"position": self.position, "fingerprint": self.fingerprint}

    def restore(self, state: dict[str, Any]) -> None:
        if state["fingerprint"] != self.fingerprint:
            raise StageInputError(
                f"checkpoint was taken on other data (fingerprint {state['fingerprint'][:12]}…, "
                f"inputs are {self.fingerprint[:12]}…)"
            )
        self.position = state["position"]


def _input_fingerprint(pack_dir: Path, tokenizer_dir: Path) -> str:
    """Identity of the training data and vocabulary, from the upstream manifests (already verified
    by the harness). The ``.idx`` alone is not enough: fixed-length packs share their index."""
    pack = read_manifest(pack_dir)["outputs"]
    return hash_obj(
        {
            "train.bin": pack["train.bin"]["sha256"],
            "train.idx": pack["train.idx"]["sha256"],
            "tokenizer": read_manifest(tokenizer_dir)["manifest_sha256"],
        }
    )


def _phase_tokens(pack_dir: Path, n_sequences: int, seq_length: int) -> dict[str, int]:
    """Input tokens trained per blend phase, from the pack's sidecar (one line per sequence)."""
    counts: Counter[str] = Counter()
    path = pack_dir / "sidecar.jsonl"
    with open(path, encoding="utf-8") as handle:
        for index, line in zip(range(n_sequences), handle, strict=False):
            try:
                counts[json.loads(line)["phase"]] += seq_length
            except (json.JSONDecodeError, KeyError) as exc:
                raise StageInputError(
                    f"{path}:{index + 1}: expected a JSON object with 'phase' ({exc})"
                ) from exc
    return dict(sorted(counts.items()))


def _optimizer(model: torch.nn.Module, opt: OptimizerParams) -> torch.optim.AdamW:
    """AdamW; weight decay only on matrices (ndim >= 2) other than the input embedding, as in
    minGPT's ``configure_optimizers``: norms, biases, Mamba's ``A_log``/``D``/``dt_bias`` and the
    embedding table are not decayed."""
    embedding = model.get_input_embeddings().weight
    decay, no_decay = [], []
    for _, param in model.named_parameters():
        (decay if param.ndim >= 2 and param is not embedding else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": opt.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=opt.lr, betas=tuple(opt.betas), eps=opt.eps)


def _device(ctx: StageContext, name: str) -> torch.device:
    """``resources.device``; asking for CUDA on a machine without it is a recipe error, not a
    silent fall-back to the CPU."""
    if name == "cuda" and not torch.cuda.is_available():
        raise RecipeError(
            f"{ctx.recipe.origin('resources.device')}: resources.device: cuda, but this torch "
            f"({torch.__version__}, CUDA {torch.version.cuda}) sees no CUDA device"
        )
    return torch.device(name)


def _compute(precision: str, device: torch.device) -> str:
    """One line for the manifest summary saying what arithmetic the run used."""
    if precision == "bf16":
        return f"bf16 autocast on {device.type}, fp32 master weights and AdamW state"
    return (
        f"{precision} emulated (Transformer Engine numerics, fp32 GEMMs on dequantised operands) "
        f"in the swapped decoder linears, bf16 autocast elsewhere on {device.type}, "
        "fp32 master weights and AdamW state"
    )


def _build(
    ctx: StageContext, config: PretrainConfig, device: torch.device, tokenizer: Any
) -> tuple[Any, torch.nn.Module, list[str], NVFP4Config]:
    """(model config, the initialised model on ``device`` with its precision applied, the
    swapped linears, the NVFP4 switches)."""
    cfg = config.pretrain
    model_config = config_for_tokenizer(plain(config.model), tokenizer)
    model = build_model(model_config, seed=derive_seed(config.seed, "pretrain", "init"))
    model.to(device)
    nvfp4 = NVFP4Config(**plain(cfg.nvfp4))
    # before the optimizer is built; parameters are shared, so its param order is unchanged
    swapped = apply_precision(
        model,
        cfg.precision,
        cfg.bf16_first_layers,
        cfg.bf16_last_layers,
        config=nvfp4 if cfg.precision == "nvfp4" else None,
        seed=derive_seed(ctx.seed, "precision"),
    )
    return model_config, model, swapped, nvfp4


def _loader(cfg: PretrainParams, pack_dir: Path, tokenizer_dir: Path) -> SequentialBatches:
    """The batches of the pack, checked to hold the ``steps`` the run needs."""
    steps, per_step = cfg.steps, cfg.micro_batch_size * cfg.grad_accum
    dataset = IndexedDataset(pack_dir / "train")
    if len(dataset) < steps * per_step:
        raise StageInputError(
            f"{pack_dir}/train.idx: {len(dataset)} sequences, but {steps} steps x "
            f"{per_step} sequences need {steps * per_step}"
        )
    return SequentialBatches(
        dataset,
        seq_length=cfg.seq_length,
        micro_batch=cfg.micro_batch_size,
        grad_accum=cfg.grad_accum,
        fingerprint=_input_fingerprint(pack_dir, tokenizer_dir),
    )


def _write_outputs(
    out: Path, model: torch.nn.Module, tokenizer: Any, loop: dict[str, Any], model_config: Any
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """model/, checkpoint/, metrics.jsonl and params.json; (metrics rows, parameter counts)."""
    model.save_pretrained(out / "model", safe_serialization=True)
    tokenizer.save_pretrained(out / "model")
    checkpoint.save(
        out / "checkpoint", model=model, optimizer=loop["optimizer"], state=loop["state"]
    )
    rows = loop["state"]["metrics"]
    (out / "metrics.jsonl").write_text(
        "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows), encoding="utf-8"
    )
    params = count_parameters(model_config)
    (out / "params.json").write_text(
        json.dumps(params, sort_keys=True, indent=2) + "\n", encoding="utf-8"
    )
    return rows, params


def run(ctx: StageContext) -> dict[str, Any]:
    config = decode_view(PretrainConfig, ctx.config, ctx.stage)
    cfg, precision = config.pretrain, config.pretrain.precision
    device = _device(ctx, config.device)
    pack_dir, tokenizer_dir = ctx.input("pack"), ctx.input("tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    model_config, model, swapped, nvfp4 = _build(ctx, config, device, tokenizer)
    loader = _loader(cfg, pack_dir, tokenizer_dir)
    # keyed by config and inputs, so a checkpoint is only ever resumed by an identical run
    resume_dir = (
        checkpoint.resume_root(ctx.out) / hash_obj([ctx.config_hash, loader.fingerprint])[:16]
    )

    loop = _train(model, loader, cfg, pad_id=tokenizer.pad_token_id, resume_dir=resume_dir)

    rows, params = _write_outputs(ctx.out, model, tokenizer, loop, model_config)
    shutil.rmtree(resume_dir, ignore_errors=True)
    if resume_dir.parent.is_dir() and not any(resume_dir.parent.iterdir()):
        resume_dir.parent.rmdir()
    steps, per_step = cfg.steps, cfg.micro_batch_size * cfg.grad_accum
    summary: dict[str, Any] = {
        "run_info": {"resumed": loop["resumed"]},  # run_info.json, not hashed: see train/resume
        "precision": precision,
        "precision_linears": len(swapped),
        "device": device.type,
        "compute": _compute(precision, device),
        "params": params,
        "steps": steps,
        "tokens": steps * per_step * cfg.seq_length,
        "tokens_by_phase": _phase_tokens(pack_dir, steps * per_step, cfg.seq_length),
        "first_loss": loop["state"]["first_loss"],
        "final_loss": rows[-1]["loss"],
    }
    if precision == "nvfp4":
        summary["nvfp4"] = asdict(nvfp4)
    return summary


def _resume(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: SequentialBatches,
    resume_dir: Path,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(loop state, resume record): a fresh state, or the latest checkpoint's, restored into
    the model, optimizer and loader."""
    state: dict[str, Any] = {"step": 0, "metrics": [], "first_loss": None}
    found, resumed = checkpoint.latest(resume_dir), None
    if found is not None:
        state = checkpoint.load(found, model=model, optimizer=optimizer)
        loader.restore(state.pop("loader"))
        resumed = resume_record("pretrain", found, state["step"])
    return state, resumed


def _step_loss(
    model: torch.nn.Module,
    loader: SequentialBatches,
    grad_accum: int,
    pad_id: int | None,
    device: torch.device,
) -> float:
    """One step's micro-batches forward and backward (gradients accumulated); the mean loss."""
    loss_sum = 0.0
    for batch in loader.next_step():
        batch = batch.to(device)
        inputs, labels = batch[:, :-1], batch[:, 1:].clone()
        if pad_id is not None:
            labels[labels == pad_id] = IGNORE_INDEX
        with torch.autocast(device.type, dtype=torch.bfloat16):
            logits = model(input_ids=inputs).logits
        loss = F.cross_entropy(
            logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX
        )
        (loss / grad_accum).backward()
        loss_sum += loss.item() / grad_accum
    return loss_sum


def _save_resumable(
    resume_dir: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
) -> None:
    """A resumable checkpoint of ``step``; older ones are pruned once it is complete."""
    target = checkpoint.step_dir(resume_dir, step)
    checkpoint.save(target, model=model, optimizer=optimizer, state=state)
    checkpoint.prune(resume_dir, keep=target)


def _progress(cfg: PretrainParams, state: dict[str, Any], tokens_per_step: int) -> tqdm:
    """The token progress bar on stderr."""
    return tqdm(
        total=cfg.steps * tokens_per_step,
        initial=state["step"] * tokens_per_step,
        unit="tok",
        unit_scale=True,
        mininterval=1.0,
        file=sys.stderr,
        desc="pretrain",
    )


def _train(
    model: torch.nn.Module,
    loader: SequentialBatches,
    cfg: PretrainParams,
    *,
    pad_id: int | None,
    resume_dir: Path,
) -> dict[str, Any]:
    """The training loop. Returns the optimizer and the loop state (metrics rows, first loss)."""
    opt, sched = cfg.optimizer, cfg.schedule
    steps, every = cfg.steps, cfg.checkpoint_every
    tokens_per_step = cfg.micro_batch_size * cfg.grad_accum * cfg.seq_length
    optimizer = _optimizer(model, opt)
    state, resumed = _resume(model, optimizer, loader, resume_dir)

    model.train()
    device = next(model.parameters()).device
    bar = _progress(cfg, state, tokens_per_step)
    for step in range(state["step"], steps):
        lr = wsd_lr(
            step,
            steps,
            opt.lr,
            opt.min_lr,
            sched.warmup_fraction,
            sched.decay_fraction,
            sched.decay_shape,
        )
        for group in optimizer.param_groups:
            group["lr"] = lr

        loss_sum = _step_loss(model, loader, cfg.grad_accum, pad_id, device)
        max_norm = opt.grad_clip if opt.grad_clip > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm).item()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

        done = step + 1
        if state["first_loss"] is None:
            state["first_loss"] = round(loss_sum, 6)
        if done % cfg.log_every == 0 or done == steps:
            state["metrics"].append(
                {
                    "step": done,
                    "loss": round(loss_sum, 6),
                    "lr": lr,
                    "grad_norm": round(grad_norm, 6),
                    "tokens": done * tokens_per_step,
                }
            )
        state["step"] = done
        bar.update(tokens_per_step)
        bar.set_postfix(loss=f"{loss_sum:.3f}", lr=f"{lr:.2e}")
        if every and done % every == 0 and done < steps:
            _save_resumable(resume_dir, done, model, optimizer, {**state, "loader": loader.state()})
    bar.close()
    state["loader"] = loader.state()
    return {"optimizer": optimizer, "state": state, "resumed": resumed}
