"""Where an alignment stage (SFT, GRPO) keeps its resumable checkpoints, and how it uses them.

The convention is pretrain's: ``<out parent>/.<out name>.resume/<key>/step-NNNNNNNN``, where the
key hashes the stage's config view and its inputs' manifests, so a checkpoint is only ever resumed
by a run that would have produced it. The checkpoints themselves are ``checkpoint.py``'s
(safetensors + JSON, no pickle): weights, optimizer tensors, torch/NumPy/Python RNG, loop state,
and the sha256 of each file, checked before a resume uses any of it.

Where a resume is recorded: :func:`resume_record` (the step and the checkpoint's sha256, or None
for a run that started fresh) goes to the stage's ``run_info.json``, beside ``manifest.json``,
not into the hashed manifest. A resumed run ends with the same bytes as an unbroken one (the
resume tests check this), and its manifest must hash the same too, or every downstream manifest
and release lock would tell a resumed run from an unbroken one although they trained the same
model; whether and where a run was interrupted is a fact about that execution, like its wall
time and host, which is what ``run_info.json`` holds.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import torch

from openrecipe.hashing import hash_obj
from openrecipe.manifest import read_manifest
from openrecipe.stage import StageContext
from openrecipe.train import checkpoint
from openrecipe.train.checkpoint import resume_root


class Resumable:
    """The resume directory of one stage run: load the newest checkpoint, save, clean up."""

    def __init__(self, ctx: StageContext, every: int) -> None:
        inputs = {name: read_manifest(path)["manifest_sha256"] for name, path in ctx.inputs.items()}
        # The part (an alignment seed) is in the key as well as in --out's name (seeds.check_part),
        # so two seeds' checkpoints never share a key even if their outputs shared a directory.
        key = hash_obj([ctx.config_hash, sorted(inputs.items()), ctx.part])[:16]
        self.dir = resume_root(ctx.out) / key
        self.every = every
        self.stage = ctx.stage
        self.resumed: dict[str, Any] | None = None

    def load(
        self, model: torch.nn.Module, optimizer: torch.optim.Optimizer
    ) -> dict[str, Any] | None:
        """Restore the newest checkpoint into ``model``/``optimizer``/RNGs; its loop state, or
        None when there is none (a fresh run)."""
        found = checkpoint.latest(self.dir)
        if found is None:
            return None
        state = checkpoint.load(found, model=model, optimizer=optimizer)
        self.resumed = resume_record(self.stage, found, state["step"])
        return state

    def run_info(self) -> dict[str, Any]:
        """What the stage body returns for ``run_info.json`` (see the module docstring)."""
        return {"run_info": {"resumed": self.resumed}}

    def maybe_save(
        self,
        done: int,
        steps: int,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        state: dict[str, Any],
    ) -> None:
        """Checkpoint after ``done`` steps when it is a multiple of ``every`` (not the last step:
        the stage output itself is then written), keeping only the newest."""
        if self.every and done % self.every == 0 and done < steps:
            target = checkpoint.step_dir(self.dir, done)
            checkpoint.save(target, model=model, optimizer=optimizer, state=state)
            checkpoint.prune(self.dir, keep=target)

    def clear(self) -> None:
        """Remove this run's checkpoints (and the resume root when nothing else is left)."""
        shutil.rmtree(self.dir, ignore_errors=True)
        if self.dir.parent.is_dir() and not any(self.dir.parent.iterdir()):
            self.dir.parent.rmdir()


def resume_record(stage: str, found: Path, step: int) -> dict[str, Any]:
    """Say on stderr that ``stage`` resumes from the verified checkpoint ``found``, and return
    the record for ``run_info.json``: the step, the checkpoint's name and its sha256."""
    digest = checkpoint.recorded_sha256(found)
    print(f"{stage}: resuming from {found} (step {step}, sha256 {digest})", file=sys.stderr)
    return {"step": step, "checkpoint": found.name, "checkpoint_sha256": digest}
