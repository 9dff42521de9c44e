"""The stages: the one table every other part reads (CLI verbs, recipe views, Snakemake rules,
the data card, the rerun planner and the tests).

A stage name is the Snakemake rule, the ``python -m openrecipe`` subcommand and the output
directory ``runs/<recipe>/<stage>/``. Each entry says which module computes it (``run(ctx) ->
dict``), which recipe fields its outputs depend on (its *view*: the hash of that view decides
whether it reruns), which upstream stages it reads, whether it scatters over
``data.curation.shards`` jobs, and what else the workflow needs to know to wire it.

Adding a stage = its module, its entry here, its schema section (if it reads a new one), its
tests. The generic rules in ``workflow/rules/stages.smk`` build its Snakemake rule from the
entry; a stage whose rule cannot be generic (per-item wildcards, report outputs) sets
``rule="custom"`` and has its rule written out in its family's ``.smk`` file.

Kept free of imports beyond the standard library, so that the CLI, the Snakefile and the
code-identity walker (``openrecipe.codeid``) read it without loading any stage.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class Stage:
    """One stage of the workflow (see the module docstring)."""

    name: str
    module: str
    """Module with ``run(ctx) -> dict`` that computes the stage."""
    view: tuple[str, ...]
    """Dotted recipe paths the stage's outputs depend on; editing anything else never reruns it."""
    inputs: dict[str, str] = field(default_factory=dict)
    """``--input NAME=runs/<recipe>/<STAGE>`` arguments, in order: {input name: upstream stage}."""
    recipe_inputs: str | None = None
    """Inputs that depend on the recipe rather than on a fixed stage, resolved by the workflow
    (``workflow/rules/common.smk``, ``RECIPE_INPUTS``): ``raw_sources`` (one per source),
    ``eval_sets`` (the eval sets of the tasks the recipe names), ``derive`` (the parent
    recipe's stages that ``derive:`` pins) or ``policy`` (the model of the step before this one
    in ``post_training``; ``openrecipe.post_training``)."""
    scatter: bool = False
    """Runs as ``data.curation.shards`` shard jobs (``<stage>_shard``) plus a gather job."""
    outputs: tuple[str, ...] = ()
    """Files the workflow names besides ``manifest.json`` (others are read from the manifest)."""
    rule: Literal["generic", "custom"] = "generic"
    """``custom``: the rule is written out in the family's .smk file, not generated."""
    backend: str | None = None
    """Runs only for recipes with this ``backend`` (None: the reference pipeline's stages)."""
    family: str = "data"
    """The ``workflow/rules/<family>.smk`` file and ``src/openrecipe/<family>`` package group."""
    threads: bool = False
    """Runs with ``resources.threads`` threads (the training and evaluation loops)."""
    cluster: dict[str, int] = field(default_factory=dict)
    """Cluster resources and their defaults, overridable per recipe in ``resources.slurm.<stage>``."""
    curation: bool = False
    """In the curation chain whose accounting the data card checks and shows."""
    reported: bool = False
    """The report stage reads its directory."""
    checkpoint: str | None = None
    """The checkpoint name (``eval.checkpoints``) of the model this stage trains."""
    stands_in_for: str | None = None
    """In a recipe where ``active_when`` holds, this stage's output takes the place of that
    stage's, which leaves the run with every stage it reads (``import`` for ``pretrain``)."""
    active_when: str | None = None
    """Dotted recipe path that switches the stage on: it runs only for a recipe where that path
    is present and not null; a stand-in then runs in place of ``stands_in_for``, a stage with
    no ``stands_in_for`` (an optional stage: ``dpo``) in addition to the others."""

    @property
    def upstream(self) -> tuple[str, ...]:
        """The stages this one reads through fixed inputs."""
        return tuple(dict.fromkeys(self.inputs.values()))


STAGES: dict[str, Stage] = {
    stage.name: stage
    for stage in (
        Stage(
            "acquire",
            "openrecipe.data.acquire",
            view=("data.sources",),
            rule="custom",  # one job per source, shared by every recipe naming it (data.smk)
            cluster={"runtime": 30},
        ),
        Stage(
            "curate",
            "openrecipe.data.curate",
            view=(
                "data.curation.max_docs_per_source",
                "data.curation.normalization",
                "data.curation.min_chars",
                "data.curation.max_chars",
                "data.curation.min_words",
                "data.curation.max_mean_word_length",
                "data.curation.max_symbol_ratio",
                "data.curation.min_alpha_ratio",
                "data.curation.exempt_langs",
                "data.curation.repetition",
            ),
            recipe_inputs="raw_sources",
            curation=True,
            reported=True,
        ),
        # The per-document stages run as data.curation.shards jobs plus a gather (data/sharding.py).
        Stage(
            "langid",
            "openrecipe.data.stages.langid",
            view=("data.curation.langid", "data.curation.shards"),
            inputs={"docs": "curate"},
            scatter=True,
            curation=True,
            reported=True,
        ),
        Stage(
            "fuzzy_dedup",
            "openrecipe.data.stages.fuzzy_dedup",
            view=("data.curation.fuzzy_dedup", "data.curation.shards"),
            inputs={"docs": "langid"},
            scatter=True,
            curation=True,
            reported=True,
        ),
        Stage(
            "quality",
            "openrecipe.data.stages.quality",
            view=("data.curation.quality", "data.curation.exempt_langs", "data.curation.shards"),
            inputs={"docs": "fuzzy_dedup"},
            scatter=True,
            curation=True,
            reported=True,
        ),
        Stage(
            "decontam",
            "openrecipe.data.stages.decontam",
            view=("data.curation.decontam", "data.curation.shards"),
            inputs={"docs": "quality"},
            recipe_inputs="eval_sets",
            scatter=True,
            curation=True,
            reported=True,
        ),
        Stage(
            "blend",
            "openrecipe.data.blend",
            view=(
                "seed",
                "data.exclude",
                "data.phases",
                "pretrain.steps",
                "pretrain.seq_length",
                "pretrain.micro_batch_size",
                "pretrain.grad_accum",
            ),
            inputs={"curated": "decontam"},
            reported=True,
        ),
        Stage(
            "tokenizer",
            "openrecipe.data.tokenizer",
            view=("seed", "tokenizer"),
            inputs={"blend": "blend"},
            reported=True,
        ),
        Stage(
            "pack",
            "openrecipe.data.pack",
            view=("pretrain.seq_length",),
            inputs={"blend": "blend", "tokenizer": "tokenizer"},
            reported=True,
        ),
        Stage(
            "pretrain",
            "openrecipe.train.pretrain",
            view=("seed", "model", "pretrain", "resources.threads", "resources.device"),
            inputs={"pack": "pack", "tokenizer": "tokenizer"},
            family="pretrain",
            threads=True,
            cluster={"gpus": 0, "nodes": 1, "runtime": 60},
            reported=True,
            checkpoint="base",
        ),
        # The Megatron launch plan of the scale backend (backend: megatron); pretrain.smk runs it.
        Stage(
            "plan",
            "openrecipe.model.megatron_plan",
            view=("name", "seed", "model", "pretrain", "data.phases", "parallelism"),
            outputs=("megatron_plan.json", "launch.sh"),
            backend="megatron",
            family="pretrain",
            cluster={"runtime": 10},
        ),
        # The pack split into one Megatron dataset per phase (Megatron-LM trains phase by phase).
        Stage(
            "megatron_data",
            "openrecipe.model.megatron_data",
            view=(
                "data.phases",
                "pretrain.seq_length",
                "pretrain.steps",
                "pretrain.global_batch_size",
                "pretrain.micro_batch_size",
                "pretrain.grad_accum",
            ),
            inputs={"pack": "pack"},
            outputs=("phases.json",),
            backend="megatron",
            family="pretrain",
            cluster={"runtime": 240},
        ),
        # A released checkpoint (recipe init:) copied and hash-checked: the base that sft
        # trains from when the recipe starts from a release instead of pretraining its own.
        Stage(
            "import",
            "openrecipe.train.import_checkpoint",
            view=("init.repo", "init.revision", "init.files"),
            family="align",
            cluster={"runtime": 60},
            stands_in_for="pretrain",
            active_when="init",
        ),
        # The parent recipe's pretrained model pruned to this recipe's shape and distilled on
        # the parent's pack (recipe derive:; docs/derive.md): the base sft trains from.
        Stage(
            "distill",
            "openrecipe.train.distill",
            view=("seed", "model", "pretrain", "derive", "resources.threads", "resources.device"),
            recipe_inputs="derive",
            family="pretrain",
            threads=True,
            cluster={"gpus": 0, "nodes": 1, "runtime": 60},
            stands_in_for="pretrain",
            active_when="derive",
        ),
        # hf_dataset sources (the released pretraining data): one job per pinned Parquet file
        # (data/hf/<source>/<file id>), then a gather into data/raw/<source> (data.smk). The
        # view is narrowed per job by openrecipe.data.acquire_hf.part_view.
        Stage(
            "acquire_hf",
            "openrecipe.data.acquire_hf",
            view=("data.sources",),
            rule="custom",
            cluster={"runtime": 60},
        ),
        # A released tokenizer (recipe tokenizer.pretrained) copied and hash-checked: pack and
        # pretrain read it in place of the trained BPE; the blend it would have read still runs.
        Stage(
            "tokenizer_import",
            "openrecipe.data.tokenizer_import",
            view=(
                "tokenizer.pretrained.repo",
                "tokenizer.pretrained.revision",
                "tokenizer.pretrained.files",
            ),
            cluster={"runtime": 10},
            stands_in_for="tokenizer",
            active_when="tokenizer.pretrained",
        ),
        Stage(
            "reasoning",
            "openrecipe.data.reasoning",
            view=("seed", "sft.data"),
            reported=True,
        ),
        Stage(
            "sft",
            "openrecipe.train.sft",
            view=(
                "seed",
                "sft.steps",
                "sft.lr",
                "sft.batch_size",
                "sft.seq_length",
                "sft.warmup_fraction",
                "sft.reasoning_off_fraction",
                "sft.truncate_fraction",
                "sft.checkpoint_every",
                "resources.threads",
            ),
            inputs={"pretrain": "pretrain", "reasoning": "reasoning"},
            family="align",
            threads=True,
            cluster={"gpus": 0, "runtime": 60},
            reported=True,
            checkpoint="sft",
        ),
        Stage(
            "rl",
            "openrecipe.train.rl",
            view=("seed", "rl", "resources.threads"),
            inputs={"sft": "sft", "reasoning": "reasoning"},
            family="align",
            threads=True,
            cluster={"gpus": 0, "runtime": 60},
            reported=True,
            checkpoint="rl",
        ),
        # Optional: runs only for a recipe with a dpo: section (active_when, no stands_in_for),
        # after the step before it in post_training, whose model is its policy (recipe input).
        Stage(
            "dpo",
            "openrecipe.train.dpo",
            view=("seed", "dpo", "post_training", "resources.threads"),
            inputs={"reasoning": "reasoning"},
            recipe_inputs="policy",
            family="align",
            threads=True,
            cluster={"gpus": 0, "runtime": 60},
            reported=True,
            checkpoint="dpo",
            active_when="dpo",
        ),
        Stage(
            "eval_data",
            "openrecipe.evaluate.eval_data",
            view=("eval.data",),
            family="evaluate",
            cluster={"runtime": 30},
        ),
        # The run's lm-eval task directory for stock lm-eval; its own stage so that a template
        # edit reruns what scores, not decontamination (which reads eval_data's sets).
        Stage(
            "lm_eval_tasks",
            "openrecipe.evaluate.lm_eval_tasks",
            view=("name",),
            inputs={"eval_data": "eval_data"},
            family="evaluate",
            reported=True,
        ),
        Stage(
            "evaluate",
            "openrecipe.evaluate.evaluate",
            view=("eval", "resources.threads"),
            # Plus the model of each eval.checkpoints entry: one job per checkpoint (evaluate.smk).
            inputs={"reasoning": "reasoning", "eval_data": "eval_data"},
            rule="custom",
            family="evaluate",
            threads=True,
            cluster={"gpus": 0, "runtime": 30},
        ),
        Stage(
            "report",
            "openrecipe.report",
            view=("name", "release"),
            rule="custom",  # writes results/<recipe>/ with report() figures (report.smk)
            family="report",
        ),
    )
}

# stage -> module; what the CLI and the code-identity walker need.
STAGE_MODULES: dict[str, str] = {name: stage.module for name, stage in STAGES.items()}


def stage(name: str) -> Stage:
    """The registry entry of ``name`` (KeyError names the known stages)."""
    try:
        return STAGES[name]
    except KeyError:
        raise KeyError(f"unknown stage {name!r}; stages: {', '.join(STAGES)}") from None


def stages_where(**flags: object) -> list[str]:
    """Names of the stages whose fields equal ``flags``, in registry order (the chain order)."""
    return [s.name for s in STAGES.values() if all(getattr(s, k) == v for k, v in flags.items())]


def ancestors(name: str) -> list[str]:
    """The stages ``name`` reads through fixed inputs, directly or not, in registry order."""
    found: set[str] = set()
    todo = list(stage(name).upstream)
    while todo:
        upstream = todo.pop()
        if upstream not in found:
            found.add(upstream)
            todo.extend(stage(upstream).upstream)
    return [s for s in STAGES if s in found]


def _present(recipe: Mapping[str, Any], dotted: str) -> bool:
    node: Any = recipe
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or node.get(part) is None:
            return False
        node = node[part]
    return True


def stand_ins(recipe: Mapping[str, Any]) -> dict[str, str]:
    """{stage replaced: the stage standing in for it} in ``recipe`` (resolved data): the
    stand-ins whose ``active_when`` path the recipe sets. Two stand-ins for one stage in one
    recipe is a recipe error, named by both switches."""
    found: dict[str, str] = {}
    for s in STAGES.values():
        if not (s.stands_in_for and s.active_when and _present(recipe, s.active_when)):
            continue
        if s.stands_in_for in found:
            other = STAGES[found[s.stands_in_for]]
            raise ValueError(
                f"recipe sets both {other.active_when}: and {s.active_when}:, and each replaces "
                f"stage {s.stands_in_for} ({other.name} / {s.name}); keep one"
            )
        found[s.stands_in_for] = s.name
    return found


def stand_in_stages() -> list[str]:
    """Every stage that runs only as a stand-in, in registry order."""
    return [s.name for s in STAGES.values() if s.stands_in_for]


def optional_stages() -> list[str]:
    """Stages that run only where their ``active_when`` path is set and replace nothing."""
    return [s.name for s in STAGES.values() if s.active_when and not s.stands_in_for]


def inactive_stages(recipe: Mapping[str, Any]) -> list[str]:
    """The optional stages ``recipe`` (resolved data) does not switch on: no job, no
    checkpoint, no evaluation of theirs in its run."""
    return [s for s in optional_stages() if not _present(recipe, str(STAGES[s].active_when))]


def checkpoint_stages() -> dict[str, str]:
    """{checkpoint name: the stage that trains it}, e.g. ``{"base": "pretrain", ...}``."""
    return {s.checkpoint: s.name for s in STAGES.values() if s.checkpoint}
