"""The recipe's pretraining phases as Megatron-LM runs them: one resumed job per phase.

Megatron-LM (``--phase-transition-iterations``, training.py at the plan's commit) trains a phase
from its own ``--data-path`` and stops at the next transition iteration, saving a checkpoint; the
next phase's job loads it and continues with its own data. The learning-rate schedule is global
(sample-based: ``--train-samples``, ``--lr-*-samples``), so it carries on across the jobs as one
schedule, as the recipe's single ``pretrain.schedule`` says. Each phase's share of the
iterations is its ``fraction`` (the blend stage gives it that share of the tokens), rounded on
the cumulative fraction so the phases add up to ``pretrain.steps`` exactly.

Imported by the plan (the flags and launch.sh) and by the ``megatron_data`` stage (which splits
the pack into one dataset per phase and checks each holds what its phase trains on), so both
count the same samples.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from openrecipe.errors import RecipeError

# A phase name becomes a file name (runs/<recipe>/megatron_data/<phase>.bin); the recipe schema
# already restricts it to this (``ident``), checked again where it reaches a path.
PHASE_NAME = re.compile(r"^[a-z0-9][a-z0-9_]{0,63}$")
DATA_STAGE = "megatron_data"


@dataclass(frozen=True)
class PhaseSpec:
    """One ``data.phases`` entry as the Megatron stages read it."""

    name: str
    fraction: float
    weights: dict[str, float]


@dataclass(frozen=True)
class PhaseRun:
    """One phase's Megatron job: it trains iterations ``[start, end)`` on ``samples`` samples
    (``(end - start) * global_batch_size``) drawn from its own dataset."""

    index: int
    name: str
    start: int
    end: int
    samples: int


def phase_runs(phases: list[PhaseSpec], steps: int, global_batch_size: int) -> list[PhaseRun]:
    """The phases in recipe order, each with its iterations; refuses a phase left with none."""
    runs: list[PhaseRun] = []
    start, cumulative = 0, 0.0
    for index, phase in enumerate(phases):
        if not PHASE_NAME.match(phase.name):
            raise RecipeError(f"data.phases[{index}].name: {phase.name!r} is not an identifier")
        cumulative += phase.fraction
        end = steps if index == len(phases) - 1 else min(steps, round(cumulative * steps))
        if end <= start:
            raise RecipeError(
                f"data.phases[{index}] ({phase.name}): fraction {phase.fraction:g} of "
                f"{steps} steps leaves it no iteration"
            )
        runs.append(PhaseRun(index, phase.name, start, end, (end - start) * global_batch_size))
        start = end
    return runs


def data_prefix(recipe_name: str, phase: str) -> str:
    """The Megatron dataset prefix (``<prefix>.bin``/``.idx``) of one phase."""
    return f"runs/{recipe_name}/{DATA_STAGE}/{phase}"


def megatron_epochs(samples: int, sequences: int, sequence_tokens: int, seq_length: int) -> int:
    """Epochs megatron-core's GPTDataset builds to draw ``samples`` samples from ``sequences``
    documents of ``sequence_tokens`` tokens (``GPTDataset._get_num_epochs``: each sample takes
    ``seq_length`` tokens plus the one extra; more than one epoch repeats the data)."""
    per_epoch = sequences * sequence_tokens
    if per_epoch <= 0:
        return 0
    requested = samples * seq_length + 1
    return max(1, -(-requested // per_epoch))
