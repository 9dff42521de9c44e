"""Alignment seeds: the SFT -> RL -> evaluation chain run once per seed of ``align.seeds``.

One GRPO run's held-out gain can be one lucky (or unlucky) seed; a claim that RL beats SFT is
made over several. Seed 0 is the recipe's own chain, unchanged: stage directories ``sft``,
``rl``, ``evaluate/sft``, ``evaluate/rl``, stage seeds ``derive_seed(seed, stage)``. Seed ``k``
> 0 is a second chain beside it, ``sft_seed<k>``, ``rl_seed<k>`` (which trains from
``sft_seed<k>``), ``evaluate/sft_seed<k>``, ``evaluate/rl_seed<k>``; its sft and rl jobs run
with ``--part seed<k>``, so their stage seed is ``derive_seed(seed, stage, "seed<k>")`` and the
manifest records the part. The pretrained model and the problems are shared by every seed: the
seeds vary what alignment draws (SFT order and reasoning-off sampling, GRPO rollouts), nothing
upstream of it. A recipe without ``align`` runs seed 0 only, exactly as before.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from openrecipe.errors import StageInputError

ALIGN_STAGES = ("sft", "rl")
_PART = re.compile(r"seed([1-9][0-9]*)")
_CHECKPOINT = re.compile(r"(sft|rl)_seed([1-9][0-9]*)")


def align_seeds(data: dict[str, Any]) -> list[int]:
    """The recipe's alignment seeds (``align.seeds``; ``[0]`` when the recipe has none)."""
    return [int(k) for k in (data.get("align") or {}).get("seeds", [0])]


def part(seed: int) -> str | None:
    """The ``--part`` of seed ``seed``'s sft and rl jobs (None for seed 0: the plain stage)."""
    return None if seed == 0 else f"seed{seed}"


def stage_dir(stage: str, seed: int) -> str:
    """The directory (and evaluation checkpoint) name of ``stage`` for seed ``seed``."""
    return stage if seed == 0 else f"{stage}_seed{seed}"


def seed_of_checkpoint(name: str) -> tuple[str, int] | None:
    """``("rl", 2)`` for ``rl_seed2``, ``("sft", 0)`` for ``sft``; None for other names."""
    if name in ALIGN_STAGES:
        return name, 0
    match = _CHECKPOINT.fullmatch(name)
    return (match.group(1), int(match.group(2))) if match else None


def check_part(stage: str, part_name: str | None, data: dict[str, Any], out: str) -> int:
    """The seed an sft/rl job runs (0 without a part); refuses a part that is not
    ``seed<k>`` for a seed ``k`` > 0 of ``align.seeds``, naming the valid ones, and an ``--out``
    whose name is another seed's: a directory holds one seed's stage, so a killed run's resume
    checkpoint (kept beside ``--out``, keyed by config and inputs) is never resumed under
    another seed."""
    seeds = align_seeds(data)
    seed = 0
    if part_name is not None:
        valid = [p for p in (part(k) for k in seeds) if p]
        match = _PART.fullmatch(part_name)
        if match is None or int(match.group(1)) not in seeds:
            raise StageInputError(
                f"stage {stage}: --part {part_name!r} is not an alignment seed of the recipe "
                f"(align.seeds: {seeds}; valid parts: {', '.join(valid) or 'none'})"
            )
        seed = int(match.group(1))
    name = Path(out).name
    named = seed_of_checkpoint(name)
    if (named is not None and named[1] != seed) or (seed and name != stage_dir(stage, seed)):
        raise StageInputError(
            f"stage {stage}: --out {out} is not the directory of seed {seed} "
            f"(--part {part_name}); seed {seed} writes {stage_dir(stage, seed)}"
        )
    return seed
