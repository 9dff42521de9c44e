"""Where an alignment stage (SFT, GRPO) keeps its resumable checkpoints, and how it uses them.

The convention is pretrain's: ``<out parent>/.<out name>.resume/<key>/step-NNNNNNNN``, where the
key hashes the stage's config view and its inputs' manifests, so a checkpoint is only ever resumed
by a run that would have produced it. The checkpoints themselves are ``checkpoint.py``'s
(safetensors + JSON, no pickle): weights, optimizer tensors, torch/NumPy/Python RNG, loop state.
"""

from __future__ import annotations

import shutil
import sys
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
        key = hash_obj([ctx.config_hash, sorted(inputs.items())])[:16]
        self.dir = resume_root(ctx.out) / key
        self.every = every
        self.stage = ctx.stage

    def load(
        self, model: torch.nn.Module, optimizer: torch.optim.Optimizer
    ) -> dict[str, Any] | None:
        """Restore the newest checkpoint into ``model``/``optimizer``/RNGs; its loop state, or
        None when there is none (a fresh run)."""
        found = checkpoint.latest(self.dir)
        if found is None:
            return None
        state = checkpoint.load(found, model=model, optimizer=optimizer)
        print(f"{self.stage}: resuming from {found} (step {state['step']})", file=sys.stderr)
        return state

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
