"""The declared post-training sequence (recipe ``post_training``; docs/post-training.md).

``post_training`` lists the steps in the order they run, each training from the one before it.
It has no default, so every recipe written before it keeps its resolved view: absent means
``[sft, rl]``, the sequence this version runs for every recipe. The only optional step is
``dpo`` (the registry's ``active_when="dpo"``), which runs where the recipe has a ``dpo:``
section and reads the step before it as its starting policy.

What the stages can run is narrower than what a list can say, and the checks here refuse the
rest by name rather than run something else: ``sft`` trains from the base and ``rl`` from
``sft`` (fixed inputs), and both run for every recipe, so a list starts ``sft, rl``; ``dpo``
can only come after them. Kept free of heavy imports: the Snakefile and the CLI read it.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from typing import Any

from openrecipe.errors import RecipeError
from openrecipe.registry import STAGES, checkpoint_stages

STEPS = tuple(s for s in checkpoint_stages().values() if STAGES[s].family == "align")
"""Every post-training step this version has (the registry's alignment checkpoints; the
schema's ``post_training`` enum)."""
DEFAULT = ("sft", "rl")
"""The sequence of a recipe without ``post_training``."""
ALWAYS = ("sft", "rl")
"""Steps that run for every recipe, in the order their fixed inputs impose."""


def sequence(data: Mapping[str, Any]) -> tuple[str, ...]:
    """The recipe's post-training steps in order (resolved recipe ``data``), checked: every
    step known and enabled, an enabled optional step listed, and an order the stages can run
    in. A ``RecipeError`` names the field and the step."""
    declared = data.get("post_training")
    if declared is None:
        if data.get("dpo") is not None:
            raise RecipeError(
                "dpo: is set but post_training is not; declare where DPO runs, e.g. "
                "post_training: [sft, rl, dpo]"
            )
        return DEFAULT
    steps = tuple(declared)
    for index, step in enumerate(steps):
        if step not in STEPS:
            raise RecipeError(
                f"post_training[{index}]: unknown step {step!r} (steps: {', '.join(STEPS)})"
            )
        if steps.index(step) != index:
            raise RecipeError(f"post_training[{index}]: step {step!r} is listed twice")
        if step == "dpo" and data.get("dpo") is None:
            raise RecipeError(
                f"post_training[{index}]: step dpo is not enabled (the recipe has no dpo: section)"
            )
    if data.get("dpo") is not None and "dpo" not in steps:
        raise RecipeError(
            f"post_training: {list(steps)} leaves out dpo, but the recipe has a dpo: section; "
            "list dpo or remove the section"
        )
    if steps[: len(ALWAYS)] != ALWAYS:
        raise RecipeError(
            f"post_training: {list(steps)} cannot run in this order: sft trains from the base "
            "and rl from sft, and both run for every recipe, so the list starts with sft, rl "
            "(then dpo)"
        )
    return steps


def policy_stage(data: Mapping[str, Any], step: str) -> str:
    """The stage whose model ``step`` starts from: the step before it in the sequence."""
    steps = sequence(data)
    if step not in steps:
        raise RecipeError(f"post_training: {list(steps)} does not list {step}")
    index = steps.index(step)
    if index == 0:
        raise RecipeError(f"post_training: {step} cannot be the first step (it needs a policy)")
    return steps[index - 1]


def evaluable_checkpoints() -> tuple[str, ...]:
    """The ``eval.checkpoints`` names the evaluate stage's code accepts, read from its typed
    config (``EvalParams.checkpoints``), so this follows that code when it widens."""
    from openrecipe.evaluate.evaluate import EvalParams

    hint = typing.get_type_hints(EvalParams)["checkpoints"]
    (item,) = typing.get_args(hint)[:1]
    return tuple(typing.get_args(item))


def check_eval_checkpoints(data: Mapping[str, Any]) -> None:
    """Refuse an ``eval.checkpoints`` entry for a step the recipe does not run, or one the
    evaluate stage of this version would refuse (at evaluation, after the training)."""
    steps = sequence(data)
    accepted = evaluable_checkpoints()
    for index, name in enumerate(data["eval"]["checkpoints"]):
        if name in STEPS and name not in steps:
            raise RecipeError(
                f"eval.checkpoints[{index}]: {name} is not a post-training step of this "
                f"recipe (post_training: {list(steps)})"
            )
        if name not in accepted:
            raise RecipeError(
                f"eval.checkpoints[{index}]: {name!r} is not accepted by this version's "
                f"evaluate stage (openrecipe.evaluate.evaluate.EvalParams.checkpoints: "
                f"{', '.join(accepted)}); evaluate the {name} checkpoint as a target, "
                f"runs/<recipe>/evaluate/{name}/manifest.json (docs/post-training.md)"
            )
