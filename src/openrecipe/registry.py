"""The stages: name -> module whose ``run(ctx) -> dict`` computes it.

The stage name is the Snakemake rule, the ``python -m openrecipe`` subcommand and the output
directory. Kept free of imports, so that the CLI and the code-identity walker
(``openrecipe.codeid``) can read it without loading any stage.
"""

from __future__ import annotations

STAGE_MODULES: dict[str, str] = {
    "acquire": "openrecipe.data.acquire",
    "curate": "openrecipe.data.curate",
    "langid": "openrecipe.data.stages.langid",
    "fuzzy_dedup": "openrecipe.data.stages.fuzzy_dedup",
    "quality": "openrecipe.data.stages.quality",
    "decontam": "openrecipe.data.stages.decontam",
    "blend": "openrecipe.data.blend",
    "tokenizer": "openrecipe.data.tokenizer",
    "pack": "openrecipe.data.pack",
    "pretrain": "openrecipe.train.pretrain",
    "plan": "openrecipe.model.megatron_plan",
    "reasoning": "openrecipe.data.reasoning",
    "sft": "openrecipe.train.sft",
    "rl": "openrecipe.train.grpo",
    "eval_data": "openrecipe.evaluate.eval_data",
    "evaluate": "openrecipe.evaluate.run",
    "report": "openrecipe.report",
}
