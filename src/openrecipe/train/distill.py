"""The ``distill`` stage: a child derived from a parent recipe's model by pruning and
knowledge distillation (recipe ``derive:``; docs/derive.md).

Nemotron Nano 9B v2 is Nano 12B v2 Base pruned and distilled (Minitron); Nemotron-H 47B is the
56B pruned and distilled (MiniPuzzle). This stage does the same at proxy scale, in order:

1. **Pins.** The parent's ``pretrain`` output and its ``pack`` are inputs (``--input
   parent=runs/<parent>/pretrain --input data=runs/<parent>/pack``). The harness has already
   rehashed every file of both against their manifests; here each must also be the directory
   ``derive:`` names and carry the pinned ``manifest_sha256``, or the stage refuses by name.
   Both are recorded in the manifest as upstream stages, so ``trace`` and ``certify`` walk
   through them into the parent's lineage (its curation and its own pretraining).
2. **Importance and pruning** (``train/prune.py``): the teacher runs on
   ``derive.calibration_sequences`` pack sequences drawn by the stage seed; depth, hidden
   channels and MLP neurons are scored on activations and the weights sliced to this recipe's
   ``model:`` shape (which must be the parent's with layers deleted and widths reduced).
3. **Distillation**: the student trains for this recipe's ``pretrain.steps`` on the parent's
   pack read sequentially from the start (the parent's blend, as Minitron distils on), with
   ``pretrain``'s optimizer, WSD schedule, clipping and checkpoint cadence, on the loss
   ``kd_weight * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - kd_weight) * CE`` with the frozen
   teacher's logits. Killed part-way, a rerun resumes from the newest checkpoint and ends with
   the same bytes.

Outputs, like pretrain's: ``model/`` (``save_pretrained`` + the parent's tokenizer files),
``metrics.jsonl`` (``{step, loss, kd_loss, lm_loss, lr, grad_norm, tokens}``), ``params.json``,
and ``pruning.json`` (scores, kept indices and shapes per axis).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer

from openrecipe.data.indexed import IndexedDataset
from openrecipe.errors import StageInputError
from openrecipe.hashing import derive_seed, hash_obj
from openrecipe.model.build import config_for_tokenizer, count_parameters
from openrecipe.model.precision import NVFP4Config, apply_precision
from openrecipe.model.recipe_config import ModelParams, PretrainParams
from openrecipe.stage import StageContext
from openrecipe.stage_config import decode_view, plain, view_field
from openrecipe.train import prune
from openrecipe.train.derive_spec import Pin, check_pin, pins
from openrecipe.train.hf_checkpoint import save_checkpoint
from openrecipe.train.pretrain import IGNORE_INDEX, SequentialBatches, _optimizer
from openrecipe.train.resume import Resumable
from openrecipe.train.schedule import wsd_lr


@dataclass(frozen=True)
class ParentPin:
    recipe: str
    stage: str
    manifest_sha256: str


@dataclass(frozen=True)
class DataPin:
    stage: str
    manifest_sha256: str


@dataclass(frozen=True)
class DeriveParams:
    """``derive``: the pinned parent and data, calibration size and the loss mix."""

    parent: ParentPin
    data: DataPin
    calibration_sequences: int
    temperature: float
    kd_weight: float


@dataclass(frozen=True)
class DistillConfig:
    """The distill stage's view, typed: the child's shape and training run, the derivation."""

    seed: int = view_field("seed")
    model: ModelParams = view_field("model")
    pretrain: PretrainParams = view_field("pretrain")
    derive: DeriveParams = view_field("derive")
    threads: int = view_field("resources.threads")
    device: Literal["cpu", "cuda"] = view_field("resources.device")


def checked_inputs(ctx: StageContext) -> dict[str, tuple[Pin, Path]]:
    """{role: (pin, directory)}: each input is the directory its pin names, with the pinned
    manifest hash (files were rehashed by the harness before the body runs)."""
    found = {}
    for pin in pins(ctx.recipe.data["derive"], ctx.project, ctx.recipe.name):
        given = ctx.input(pin.role).resolve()
        expected = (ctx.project / pin.path).resolve()
        if given != expected:
            raise StageInputError(
                f"derive.{pin.role}: --input {pin.role}={given} is not {pin.path}, the "
                f"directory derive.{pin.role} names"
            )
        check_pin(pin, given)
        found[pin.role] = (pin, given)
    return found


def calibration_batches(
    dataset: Any, n: int, micro_batch: int, seed: int
) -> tuple[list[int], list[torch.Tensor]]:
    """(sequence indices, batches of inputs): ``n`` pack sequences drawn without replacement by
    ``seed``, in ascending order, cut into ``micro_batch`` rows (the last token is a label)."""
    if n > len(dataset):
        raise StageInputError(
            f"derive.calibration_sequences: {n}, but the pack holds {len(dataset)} sequences"
        )
    rng = np.random.default_rng(seed)
    chosen = sorted(int(i) for i in rng.choice(len(dataset), size=n, replace=False))
    rows = [np.asarray(dataset[i], dtype=np.int64)[:-1] for i in chosen]
    batches = [
        torch.from_numpy(np.stack(rows[i : i + micro_batch]))
        for i in range(0, len(rows), micro_batch)
    ]
    return chosen, batches


def kd_loss(
    student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Forward KL(teacher || student) on temperature-softened logits, per unmasked token,
    scaled by T^2 (Hinton et al.) so its gradient does not shrink with the temperature."""
    s = F.log_softmax(student.float() / temperature, dim=-1)
    t = F.log_softmax(teacher.float() / temperature, dim=-1)
    per_token = F.kl_div(s, t, log_target=True, reduction="none").sum(dim=-1)
    return (per_token * mask).sum() / mask.sum().clamp(min=1) * temperature**2


def _fingerprint(dirs: dict[str, tuple[Pin, Path]]) -> str:
    return hash_obj({role: pin.manifest_sha256 for role, (pin, _) in sorted(dirs.items())})


def _step(
    student: torch.nn.Module,
    teacher: torch.nn.Module,
    loader: SequentialBatches,
    cfg: PretrainParams,
    derive: DeriveParams,
    pad_id: int | None,
    device: torch.device,
) -> dict[str, float]:
    """One optimizer step's forward and backward passes; the step's mean losses."""
    sums = {"loss": 0.0, "kd_loss": 0.0, "lm_loss": 0.0}
    w, temperature = derive.kd_weight, derive.temperature
    for batch in loader.next_step():
        batch = batch.to(device)
        inputs, labels = batch[:, :-1], batch[:, 1:].clone()
        if pad_id is not None:
            labels[labels == pad_id] = IGNORE_INDEX
        mask = (labels != IGNORE_INDEX).float()
        with torch.autocast(device.type, dtype=torch.bfloat16):
            with torch.no_grad():
                target = teacher(input_ids=inputs).logits
            logits = student(input_ids=inputs).logits
        kd = kd_loss(logits, target, mask, temperature)
        lm = F.cross_entropy(
            logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX
        )
        loss = w * kd + (1.0 - w) * lm
        (loss / cfg.grad_accum).backward()
        for key, value in (("loss", loss), ("kd_loss", kd), ("lm_loss", lm)):
            sums[key] += value.item() / cfg.grad_accum
    return sums


def _train(
    student: torch.nn.Module,
    teacher: torch.nn.Module,
    loader: SequentialBatches,
    config: DistillConfig,
    resumable: Resumable,
    pad_id: int | None,
) -> dict[str, Any]:
    """The distillation loop (pretrain's, with the teacher's logits as the target)."""
    cfg, derive = config.pretrain, config.derive
    opt, sched = cfg.optimizer, cfg.schedule
    tokens_per_step = cfg.micro_batch_size * cfg.grad_accum * cfg.seq_length
    optimizer = _optimizer(student, opt)
    state: dict[str, Any] = {"step": 0, "metrics": [], "first_loss": None}
    loaded = resumable.load(student, optimizer)
    if loaded is not None:
        state = loaded
        loader.restore(state.pop("loader"))
    device = next(student.parameters()).device
    student.train()
    teacher.eval()
    bar = tqdm(
        total=cfg.steps * tokens_per_step,
        initial=state["step"] * tokens_per_step,
        unit="tok",
        unit_scale=True,
        mininterval=1.0,
        file=sys.stderr,
        desc="distill",
    )
    for step in range(state["step"], cfg.steps):
        lr = wsd_lr(
            step,
            cfg.steps,
            opt.lr,
            opt.min_lr,
            sched.warmup_fraction,
            sched.decay_fraction,
            sched.decay_shape,
        )
        for group in optimizer.param_groups:
            group["lr"] = lr
        losses = _step(student, teacher, loader, cfg, derive, pad_id, device)
        max_norm = opt.grad_clip if opt.grad_clip > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(student.parameters(), max_norm).item()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        done = step + 1
        if state["first_loss"] is None:
            state["first_loss"] = round(losses["loss"], 6)
        if done % cfg.log_every == 0 or done == cfg.steps:
            state["metrics"].append(
                {
                    "step": done,
                    **{k: round(v, 6) for k, v in losses.items()},
                    "lr": lr,
                    "grad_norm": round(grad_norm, 6),
                    "tokens": done * tokens_per_step,
                }
            )
        state["step"] = done
        bar.update(tokens_per_step)
        bar.set_postfix(loss=f"{losses['loss']:.3f}", lr=f"{lr:.2e}")
        resumable.maybe_save(
            done, cfg.steps, student, optimizer, {**state, "loader": loader.state()}
        )
    bar.close()
    return state


def _loader(cfg: PretrainParams, pack_dir: Path, fingerprint: str) -> SequentialBatches:
    dataset = IndexedDataset(pack_dir / "train")
    need = cfg.steps * cfg.micro_batch_size * cfg.grad_accum
    if len(dataset) < need:
        raise StageInputError(
            f"{pack_dir}/train.idx: {len(dataset)} sequences, but pretrain.steps {cfg.steps} x "
            f"{cfg.micro_batch_size * cfg.grad_accum} sequences need {need}"
        )
    if len(dataset) and np.asarray(dataset[0]).shape != (cfg.seq_length + 1,):
        raise StageInputError(
            f"pretrain.seq_length: {cfg.seq_length}, but the parent's pack {pack_dir} holds "
            f"sequences of {np.asarray(dataset[0]).shape[0] - 1} tokens"
        )
    return SequentialBatches(
        dataset,
        seq_length=cfg.seq_length,
        micro_batch=cfg.micro_batch_size,
        grad_accum=cfg.grad_accum,
        fingerprint=fingerprint,
    )


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, sort_keys=True, indent=2) + "\n", encoding="utf-8")


def run(ctx: StageContext) -> dict[str, Any]:
    config = decode_view(DistillConfig, ctx.config, ctx.stage)
    cfg = config.pretrain
    if config.device == "cuda" and not torch.cuda.is_available():
        raise StageInputError("resources.device: cuda, but this torch sees no CUDA device")
    device = torch.device(config.device)
    dirs = checked_inputs(ctx)
    parent_dir, pack_dir = dirs["parent"][1], dirs["data"][1]
    model_dir = parent_dir / "model"
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    teacher = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    teacher.requires_grad_(False)
    child_config = config_for_tokenizer(plain(config.model), tokenizer)
    loader = _loader(cfg, pack_dir, _fingerprint(dirs))

    calib_seed = derive_seed(config.seed, "distill", "calibration")
    chosen, batches = calibration_batches(
        loader.dataset, config.derive.calibration_sequences, cfg.micro_batch_size, calib_seed
    )
    importance = prune.measure(teacher, batches)
    keep = prune.plan(teacher.config, child_config, importance)
    student = prune.prune(teacher, child_config, keep)
    pruning = prune.report(importance, keep, teacher.config, child_config)
    pruning["calibration"] = {"sequences": chosen, "seed": calib_seed}
    teacher.to(device)
    student.to(device)
    # the student trains in the recipe's precision, as pretrain does (fp8 / nvfp4 emulated in
    # the decoder linears outside the first/last bf16 layers); the frozen teacher runs bf16
    nvfp4 = NVFP4Config(**plain(cfg.nvfp4))
    swapped = apply_precision(
        student,
        cfg.precision,
        cfg.bf16_first_layers,
        cfg.bf16_last_layers,
        config=nvfp4 if cfg.precision == "nvfp4" else None,
        seed=derive_seed(ctx.seed, "precision"),
    )

    resumable = Resumable(ctx, cfg.checkpoint_every)
    state = _train(student, teacher, loader, config, resumable, tokenizer.pad_token_id)

    save_checkpoint(student, parent_dir, ctx.out)
    rows = state["metrics"]
    (ctx.out / "metrics.jsonl").write_text(
        "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows), encoding="utf-8"
    )
    params = count_parameters(child_config)
    _write_json(ctx.out / "params.json", params)
    _write_json(ctx.out / "pruning.json", pruning)
    resumable.clear()
    parent_params = count_parameters(teacher.config)
    return {
        **resumable.run_info(),
        "parent": {
            role: {"recipe": pin.recipe, "stage": pin.stage, "manifest_sha256": pin.manifest_sha256}
            for role, (pin, _) in sorted(dirs.items())
        },
        "device": device.type,
        "precision": cfg.precision,
        "precision_linears": len(swapped),
        "compute": f"student {cfg.precision} ({len(swapped)} emulated linears), teacher bf16 "
        f"autocast, on {device.type}; fp32 master weights and AdamW state",
        "params": params,
        "parent_params": parent_params,
        "kept_layers": keep.layers,
        "steps": cfg.steps,
        "tokens": cfg.steps * cfg.micro_batch_size * cfg.grad_accum * cfg.seq_length,
        "temperature": config.derive.temperature,
        "kd_weight": config.derive.kd_weight,
        "first_loss": state["first_loss"],
        "final_loss": rows[-1]["loss"],
    }
