"""Resumable training checkpoints with no pickle anywhere.

A checkpoint is a directory written under a temporary name and renamed into place, so a
directory named ``step-NNNNNNNN`` is always complete. It holds:

- ``model.safetensors``: the fp32 master weights (state-dict names);
- ``optimizer.safetensors``: the optimizer's per-parameter tensors, keyed ``<param index>.<name>``
  (hyper-parameters are rebuilt from the recipe, and the learning rate is set every step);
- ``rng.safetensors``: torch's CPU generator state;
- ``precision_rng.safetensors`` (fp8/nvfp4 runs only): the stochastic-rounding generator of every
  ``PrecisionLinear``, by module name, without which a resumed NVFP4 run would draw other
  rounding noise than an unbroken one;
- ``state.json``: step, loader position and fingerprint, Python and NumPy RNG states, and whatever
  the loop needs to continue its logs;
- ``checksums.json``: the sha256 of every other file, written last, inside the temporary
  directory, so the checkpoint and its hashes appear together in one rename. The checkpoint's
  own hash (``checkpoint_sha256``) is the hash of that file list.

Everything is tensors or JSON, so loading runs no code from the file. :func:`load` rehashes every
file first and refuses a checkpoint whose bytes changed since it was written (a flipped bit, a
truncated or swapped file), naming the file and both hashes: a corrupt checkpoint would otherwise
resume, exit 0 and train a different model than the one the manifest describes.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from openrecipe.errors import StageInputError
from openrecipe.hashing import hash_obj, sha256_file
from openrecipe.model.precision import load_precision_rng_states, precision_rng_states

_PREFIX = "step-"
_PRECISION_RNG = "precision_rng.safetensors"
CHECKSUMS = "checksums.json"


def _rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors = {"torch": torch.random.get_rng_state()}
    as_json = {
        "python": {"version": version, "state": list(mt), "gauss": gauss},
        "numpy": {
            "kind": kind,
            "keys": keys.tolist(),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
    }
    return tensors, as_json


def _restore_rng(tensors: dict[str, torch.Tensor], as_json: dict[str, Any]) -> None:
    torch.random.set_rng_state(tensors["torch"])
    py = as_json["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    npy = as_json["numpy"]
    np.random.set_state(
        (
            npy["kind"],
            np.asarray(npy["keys"], dtype=np.uint32),
            npy["pos"],
            npy["has_gauss"],
            npy["cached_gaussian"],
        )
    )


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    flat = {}
    for index, slots in optimizer.state_dict()["state"].items():
        for name, value in slots.items():
            if not isinstance(value, torch.Tensor):
                raise TypeError(
                    f"optimizer state {index}.{name} is {type(value).__name__}, not a tensor"
                )
            flat[f"{index}.{name}"] = value.detach().cpu().clone().contiguous()
    return flat


def _load_optimizer(optimizer: torch.optim.Optimizer, flat: dict[str, torch.Tensor]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in flat.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict(
        {"state": state, "param_groups": optimizer.state_dict()["param_groups"]}
    )


def _write_checksums(directory: Path) -> str:
    """Hash every file of ``directory`` into ``checksums.json``; the checkpoint's sha256."""
    files = {p.name: sha256_file(p) for p in sorted(directory.iterdir()) if p.name != CHECKSUMS}
    digest = hash_obj(files)
    text = json.dumps({"checkpoint_sha256": digest, "files": files}, sort_keys=True, indent=1)
    (directory / CHECKSUMS).write_text(text + "\n", encoding="utf-8")
    return digest


def verify(directory: Path) -> str:
    """Rehash ``directory`` against the ``checksums.json`` written with it; its sha256.

    Raises StageInputError naming the file and both hashes when anything differs (a changed,
    missing or extra file, or an altered checksum list)."""
    listing = directory / CHECKSUMS
    fix = f"delete {directory} to train from the previous checkpoint or from scratch"
    try:
        recorded = json.loads(listing.read_text(encoding="utf-8"))
        files, digest = recorded["files"], recorded["checkpoint_sha256"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StageInputError(
            f"{listing}: unreadable or missing ({exc}); resume checkpoint {directory} has no "
            f"recorded hashes, so it cannot be trusted; {fix}"
        ) from exc
    if hash_obj(files) != digest:
        raise StageInputError(
            f"{listing}: the file list hashes to {hash_obj(files)}, but it records "
            f"checkpoint_sha256 {digest}; the checksums were altered; {fix}"
        )
    present = sorted(p.name for p in directory.iterdir() if p.name != CHECKSUMS)
    for name in sorted(set(files) | set(present)):
        path = directory / name
        if name not in files:
            raise StageInputError(
                f"{path}: not listed in {listing} (sha256 {sha256_file(path)}, recorded: none); "
                f"the resume checkpoint was altered; {fix}"
            )
        actual = sha256_file(path) if path.is_file() else "missing"
        if actual != files[name]:
            raise StageInputError(
                f"{path}: sha256 {actual} does not match {files[name]} recorded when the resume "
                f"checkpoint was written; the checkpoint is corrupt; {fix}"
            )
    return digest


def recorded_sha256(directory: Path) -> str:
    """The checkpoint's sha256 as recorded when it was written (call :func:`verify` first)."""
    return json.loads((directory / CHECKSUMS).read_text(encoding="utf-8"))["checkpoint_sha256"]


def save(
    directory: Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
) -> str:
    """Write a checkpoint atomically to ``directory`` (replacing one already there); its sha256."""
    tmp = directory.with_name(f".{directory.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    # clone(): tied weights share storage, which safetensors refuses; loading copies into both
    weights = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    save_file(weights, tmp / "model.safetensors")
    save_file(_optimizer_tensors(optimizer), tmp / "optimizer.safetensors")
    rng_tensors, rng_json = _rng_state()
    save_file(rng_tensors, tmp / "rng.safetensors")
    precision_states = precision_rng_states(model)
    if precision_states:
        save_file(precision_states, tmp / _PRECISION_RNG)
    text = json.dumps({**state, "rng": rng_json}, sort_keys=True, indent=1)
    (tmp / "state.json").write_text(text + "\n", encoding="utf-8")
    digest = _write_checksums(tmp)
    if directory.exists():
        shutil.rmtree(directory)
    os.replace(tmp, directory)
    return digest


def load(
    directory: Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """Check every file against its recorded sha256 (:func:`verify`, refusing a corrupt
    checkpoint before any byte of it is used), then restore model, optimizer and RNG states in
    place; return the loop state."""
    verify(directory)
    model.load_state_dict(load_file(directory / "model.safetensors"), strict=True)
    _load_optimizer(optimizer, load_file(directory / "optimizer.safetensors"))
    state = json.loads((directory / "state.json").read_text(encoding="utf-8"))
    _restore_rng(load_file(directory / "rng.safetensors"), state.pop("rng"))
    # also when the file is absent: refuses a checkpoint whose layers do not match the model's
    precision_path = directory / _PRECISION_RNG
    load_precision_rng_states(model, load_file(precision_path) if precision_path.exists() else {})
    return state


def step_dir(root: Path, step: int) -> Path:
    return root / f"{_PREFIX}{step:08d}"


def latest(root: Path) -> Path | None:
    """The newest complete checkpoint under ``root`` (temporary dirs are ignored)."""
    if not root.is_dir():
        return None
    done = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(_PREFIX))
    return done[-1] if done else None


def prune(root: Path, keep: Path) -> None:
    """Remove every checkpoint and leftover temporary dir under ``root`` except ``keep``."""
    for path in sorted(root.iterdir()):
        if path != keep and path.is_dir():
            shutil.rmtree(path)


def resume_root(out: Path) -> Path:
    """``<parent>/.<out name>.resume``: where a stage keeps resumable checkpoints, stable across
    the harness's per-attempt ``.<name>.tmp-<pid>`` output directories (shared by pretrain, SFT
    and GRPO)."""
    match = re.fullmatch(r"\.(.+)\.tmp-\d+", out.name)
    return out.parent / f".{match.group(1) if match else out.name}.resume"
