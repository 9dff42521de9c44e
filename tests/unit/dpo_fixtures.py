"""A tiny recipe with a ``dpo:`` section and ``post_training: [sft, rl, dpo]``, shared by the DPO
tests (and rebuilt in the child process of the resume test)."""

from __future__ import annotations

import copy

from align_fixtures import tiny_recipe

from openrecipe.recipe import Recipe

SMALL = {
    "resources": {"threads": 1},
    "sft": {
        "steps": 80,
        "lr": 5e-3,
        "batch_size": 8,
        "seq_length": 128,
        "data": {"n_train": 40, "n_heldout": 4, "min_steps": 1, "max_steps": 1, "max_value": 9},
    },
    "rl": {
        "steps": 1,
        "prompts_per_step": 2,
        "generations_per_prompt": 2,
        "lr": 1e-3,
        "max_new_tokens": 16,
    },
}
# Every field, the schema's defaults written out: the recipe is patched in memory, after the
# loader filled the defaults of the sections it had.
DPO = {
    "loss": "sigmoid",
    "beta": 0.1,
    "label_smoothing": 0.0,
    "steps": 4,
    "lr": 1e-3,
    "batch_size": 2,
    "max_length": 256,
    "checkpoint_every": 1,
    "pairs": {
        "source": "rollouts",
        "prompts": 16,
        "samples": 4,
        "temperature": 1.0,
        "max_new_tokens": 48,
    },
}


def dpo_recipe(
    dpo: dict | None = None, post_training: tuple[str, ...] = ("sft", "rl", "dpo")
) -> Recipe:
    """tiny with SMALL patched in, ``dpo`` (default DPO) and ``post_training``."""
    recipe = tiny_recipe(copy.deepcopy(SMALL))
    recipe.data["dpo"] = copy.deepcopy(dpo or DPO)
    recipe.data["post_training"] = list(post_training)
    return recipe
