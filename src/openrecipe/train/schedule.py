"""Warmup-stable-decay (WSD) learning-rate schedule, as a pure function of the step.

WSD (Hu et al. 2024, "MiniCPM", arXiv:2404.06395; Hägele et al. 2024, arXiv:2405.18392) warms up
linearly, holds the peak, then decays over the last fraction of training. Nemotron 3 uses the
``minus_sqrt`` decay, ``1 - sqrt(progress)``, which Hägele et al. found best among decay shapes.

Convention (Megatron's ``OptimizerParamScheduler`` with its step counter taken *after* the
update): the update of 0-based step ``s`` uses the rate for ``n = s + 1`` completed steps. So step 0
gets ``lr / warmup_steps`` (never a wasted zero-lr step), and the last step trains at ``min_lr``.
"""

from __future__ import annotations

import math

SHAPES = ("linear", "minus_sqrt", "cosine")


def phase_steps(total_steps: int, warmup_fraction: float, decay_fraction: float) -> tuple[int, int]:
    """(warmup steps, decay steps), each rounded to the nearest whole step."""
    return round(warmup_fraction * total_steps), round(decay_fraction * total_steps)


def wsd_lr(
    step: int,
    total_steps: int,
    lr: float,
    min_lr: float,
    warmup_fraction: float,
    decay_fraction: float,
    shape: str,
) -> float:
    """Learning rate for the update of 0-based ``step`` out of ``total_steps``."""
    if shape not in SHAPES:
        raise ValueError(f"decay shape {shape!r}: expected one of {SHAPES}")
    if not 0 <= step < total_steps:
        raise ValueError(f"step {step} outside [0, {total_steps})")
    warmup, decay = phase_steps(total_steps, warmup_fraction, decay_fraction)
    done = step + 1
    decay_start = total_steps - decay
    if done > decay_start:
        progress = (done - decay_start) / decay  # in (0, 1]; 1 on the last step
        if shape == "linear":
            factor = 1.0 - progress
        elif shape == "minus_sqrt":
            factor = 1.0 - math.sqrt(progress)
        else:
            factor = 0.5 * (1.0 + math.cos(math.pi * progress))
        return min_lr + (lr - min_lr) * factor
    if done <= warmup:
        return lr * done / warmup
    return lr
