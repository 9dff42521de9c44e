"""The stage contract, in one place.

``run_stage`` is what every ``python -m openrecipe <stage>`` goes through:

1. load the resolved recipe, take the stage's view, and check its hash against the one the
   workflow expected (``--expect-config-hash``), so a stale resolved recipe cannot run;
2. verify every input stage directory against its manifest (tampered or partial files refused);
3. fix determinism (seed derived from recipe seed + stage name, deterministic algorithms, a fixed
   thread count);
4. let the stage body write into a fresh temporary directory beside ``--out`` (so inside the run
   directory: the CLI confines ``--out`` with ``paths.stage_out_dir``), after removing the
   ``.<name>.tmp-PID`` / ``.<name>.old-PID`` leftovers of an earlier killed run of this stage;
5. hash what it wrote, write ``manifest.json`` (deterministic) and ``run_info.json`` (volatile),
   then swap the directory into place with renames. A killed stage leaves only a ``.tmp-`` dir,
   never an output directory that looks complete.
"""

from __future__ import annotations

import os
import platform
import random
import re
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from openrecipe.codeid import code_identity, stage_code_identity
from openrecipe.errors import RecipeError, StageInputError
from openrecipe.hashing import derive_seed
from openrecipe.manifest import (
    MANIFEST_NAME,
    RUN_INFO_NAME,
    SCHEMA_VERSION,
    describe_outputs,
    seal,
    verified_input,
    write_json_atomic,
)
from openrecipe.recipe import Recipe


@dataclass(frozen=True)
class StageContext:
    """What a stage body gets: its config view, verified inputs, a seed and where to write."""

    stage: str
    recipe: Recipe
    config: dict[str, Any]  # the stage's view: {dotted path: value}
    config_hash: str
    seed: int
    inputs: dict[str, Path]  # verified upstream stage directories
    out: Path  # temporary directory; becomes --out on success
    project: Path
    part: str | None = None  # the item of a per-item stage (a source, a checkpoint, a shard)
    dest: Path | None = None  # where ``out`` is renamed to on success (files naming their run)

    def cfg(self, dotted: str) -> Any:
        """A value from the stage's view (or inside one of its subtrees)."""
        if dotted in self.config:
            return self.config[dotted]
        for prefix, value in self.config.items():
            if dotted.startswith(prefix + "."):
                node = value
                for part in dotted[len(prefix) + 1 :].split("."):
                    node = node[part]
                return node
        raise KeyError(f"{dotted} is not in the {self.stage} stage's view {sorted(self.config)}")

    def input(self, name: str) -> Path:
        if name not in self.inputs:
            raise StageInputError(
                f"stage {self.stage}: input {name!r} was not given (--input {name}=DIR)"
            )
        return self.inputs[name]


StageBody = Callable[[StageContext], dict[str, Any] | None]


def seed_everything(seed: int, threads: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def _relative(text: str, project: Path) -> str:
    """Project-relative form of a path (or "path:line"), so manifests do not depend on where
    the checkout lives."""
    prefix = str(project.resolve()) + os.sep
    return text[len(prefix) :] if text.startswith(prefix) else text


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # no such process (or not a possible PID)
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers(out: Path) -> list[str]:
    """Delete the ``.<name>.tmp-PID`` / ``.<name>.old-PID`` siblings of ``out`` that a killed run
    of this stage left behind (a SIGKILL skips every cleanup handler). One whose PID is a live
    process here is kept: it may be a concurrent run. Returns the names removed."""
    pattern = re.compile(rf"\.{re.escape(out.name)}\.(?:tmp|old)-([0-9]+)")
    removed: list[str] = []
    if not out.parent.is_dir():
        return removed
    for entry in sorted(out.parent.iterdir()):
        match = pattern.fullmatch(entry.name)
        if match is None:
            continue
        pid = int(match.group(1))
        if pid != os.getpid() and _pid_alive(pid):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
        removed.append(entry.name)
    return removed


def _check_out(out: Path, project: Path) -> None:
    """Last line of defence (the CLI's ``stage_out_dir`` is the first): a stage replaces its
    output directory, so it may never be the project, hold the project, or be a filesystem root."""
    resolved, root = out.resolve(), project.resolve()
    if resolved == resolved.parent or resolved == root or resolved in root.parents:
        raise RecipeError(
            f"--out {out}: would replace {resolved}, which holds the project; refused"
        )


def _swap_into_place(tmp: Path, out: Path) -> None:
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def run_stage(
    stage: str,
    recipe: Recipe,
    out: Path,
    inputs: dict[str, Path],
    body: StageBody,
    *,
    project: Path,
    expect_config_hash: str | None = None,
    extra_inputs: list[dict[str, Any]] | None = None,
    part: str | None = None,
) -> dict[str, Any]:
    started = time.time()
    config = recipe.view(stage, part)
    config_hash = recipe.view_hash(stage, part)
    if expect_config_hash and expect_config_hash != config_hash:
        raise StageInputError(
            f"stage {stage}: config view hash {config_hash[:12]}… differs from the workflow's "
            f"{expect_config_hash[:12]}…; the resolved recipe is stale, rerun snakemake"
        )
    described_inputs = [verified_input(name, Path(path)) for name, path in sorted(inputs.items())]
    for item in described_inputs:
        item["path"] = _relative(item["path"], project)
    seed = derive_seed(recipe.data["seed"], stage, *([part] if part else []))
    threads = int(recipe.get("resources.threads") or 2)
    seed_everything(seed, threads)

    out = Path(out)
    _check_out(out, project)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(out)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.mkdir(parents=True)
    ctx = StageContext(
        stage, recipe, config, config_hash, seed, dict(inputs), tmp, project, part, dest=out
    )
    try:
        extra = body(ctx) or {}
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # volatile facts the body reports (e.g. that it resumed from a checkpoint) are never hashed
    run_info_extra = extra.pop("run_info", {})
    manifest = seal(
        {
            "schema_version": SCHEMA_VERSION,
            "stage": stage,
            "part": part,
            "recipe": recipe.name,
            "config_view": config,
            "config_hash": config_hash,
            "config_origins": {
                path: _relative(recipe.origin(path), project) for path in sorted(config)
            },
            "seed": seed,
            "inputs": described_inputs
            + list(extra_inputs or [])
            + list(extra.pop("external_inputs", [])),
            "outputs": describe_outputs(tmp),
            "code": stage_code_identity(stage),
            "summary": extra,
        }
    )
    write_json_atomic(tmp / MANIFEST_NAME, manifest)
    write_json_atomic(
        tmp / RUN_INFO_NAME,
        {
            "started_utc": datetime.fromtimestamp(started, UTC).isoformat(),
            "wall_seconds": round(time.time() - started, 3),
            "host": socket.gethostname(),
            "platform": platform.platform(),
            "pid": os.getpid(),
            # Where the code came from. Not in the manifest: the stage code identity there
            # already addresses what ran, and a commit hash there would re-address every
            # stage on every commit (and no committed result could ever be reproduced
            # hash by hash by a later commit).
            "git": code_identity(),
            **run_info_extra,
        },
    )
    _swap_into_place(tmp, out)
    return manifest
