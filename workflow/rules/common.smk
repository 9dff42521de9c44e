# Shared by all the rules. Which recipe this run is,, the stage views, and input helpers.
# Recipe files come from --configfile (the first is the recipe, the rest override files, applied
# in order); with none given, recipes/default.yaml runs. Snakemake's own config merge is not
# used: our loader resolves extends:, validates and names the file and field of any error.

import shlex
import sys
from pathlib import Path

from openrecipe.codeid import stage_code_digest
from openrecipe.errors import RecipeError, StageInputError
from openrecipe.lineage.code_drift import explain as explain_code_drift
from openrecipe.paths import find_project_root
from openrecipe.recipe import load_recipe, write_resolved
from openrecipe.post_training import check_eval_checkpoints, policy_stage
from openrecipe.registry import (
    STAGES,
    ancestors,
    checkpoint_stages,
    inactive_stages,
    optional_stages,
    stages_where,
    stand_ins,
)
from openrecipe.seeds import align_seeds, stage_dir as seed_stage_dir
from openrecipe.train.derive_spec import check_parent_runs, input_dirs as derive_input_dirs

PROJECT = find_project_root(Path(workflow.basedir))
_CONFIGFILES = [Path(p) for p in workflow.configfiles] or [PROJECT / "recipes" / "default.yaml"]
try:
    RECIPE = load_recipe(_CONFIGFILES[0], _CONFIGFILES[1:], project=PROJECT)
except RecipeError as _error:  # a named refusal, not a traceback through the loader
    sys.exit(f"openrecipe: error: {_error}")
NAME = RECIPE.name
RUN = f"runs/{NAME}"
RESULTS = f"results/{NAME}"
SOURCES = sorted(s["name"] for s in RECIPE.data["data"]["sources"])
# hf_dataset sources (the released data) are acquired by acquire_hf, the others by acquire.
HF_SOURCES = sorted(s["name"] for s in RECIPE.data["data"]["sources"] if s["kind"] == "hf_dataset")
# A recipe with `init:` starts post-training from a released checkpoint (docs/import.md): a
# stage that stands in for another (registry: stands_in_for; import for pretrain) is read in
# its place, and the replaced stage leaves the run with every stage it reads (curation,
# tokenizer, pack). The checkpoint it made (base) is then the imported one.
try:
    STAND_INS = stand_ins(RECIPE.data)
except ValueError as _error:
    sys.exit(f"openrecipe: error: recipe {NAME}: {_error}")


def _running(stand_ins, backend):
    """The registry stages a recipe of this backend runs before any is replaced."""
    return {
        name
        for name, entry in STAGES.items()
        if entry.backend in (None, backend)
        and (not entry.stands_in_for or name in stand_ins.values())
    }


def _replaced(stand_ins, backend):
    """The stages that leave the run: each replaced stage, and those of its ancestors that no
    remaining stage of this backend reads (import for pretrain takes the whole data chain with
    it; tokenizer_import for tokenizer takes nothing else, since pack still reads the blend)."""
    gone = {stage for old in stand_ins for stage in (old, *ancestors(old))}
    running = _running(stand_ins, backend)
    changed = True
    while changed:
        changed = False
        for name in running - gone:
            for upstream in STAGES[name].upstream:
                kept = ({upstream, *ancestors(upstream)} & gone) - set(stand_ins)
                if upstream in gone and upstream not in stand_ins:
                    gone -= kept
                    changed = True
    return gone


REPLACED = _replaced(STAND_INS, RECIPE.data["backend"])
# A stand-in whose stage no remaining stage reads does not run either (init: with
# tokenizer.pretrained: import takes pack and pretrain, the tokenizer's readers, with it).
STAND_INS = {
    old: new
    for old, new in STAND_INS.items()
    if any(old in STAGES[s].upstream for s in _running(STAND_INS, RECIPE.data["backend"]) - REPLACED)
}
if "import" in STAND_INS.values() and RECIPE.data["backend"] != "reference":
    sys.exit(
        f"openrecipe: error: recipe {NAME}: init: starts post-training on the reference "
        f"backend; backend {RECIPE.data['backend']} pretrains"
    )
# data.curation.heuristics: datatrove names filters the curate stage does not call yet (they
# are wired in at the next regeneration of the committed results, docs/curation-heuristics.md):
# refuse it rather than run curation with other filters than the recipe names.
if RECIPE.data["data"]["curation"].get("heuristics") == "datatrove":
    sys.exit(
        f"openrecipe: error: recipe {NAME}: data.curation.heuristics: datatrove is not wired "
        f"into the curate stage yet (docs/curation-heuristics.md); unset it or use openrecipe"
    )
# A recipe with `derive:` (docs/derive.md) reads its parent recipe's runs: refuse a parent
# recipe that is not a recipe file, and a parent run that is missing or not the pinned one, by
# name and with the command that makes it, before the DAG is built.
try:
    check_parent_runs(RECIPE.data, PROJECT)
except (RecipeError, StageInputError) as _error:
    sys.exit(f"openrecipe: error: recipe {NAME}: {_error}")
if "distill" in STAND_INS.values() and RECIPE.data["backend"] != "reference":
    sys.exit(
        f"openrecipe: error: recipe {NAME}: derive: runs the distill stage on the reference "
        f"backend only; its ModelOpt / Megatron-Bridge plan for backend "
        f"{RECIPE.data['backend']} is not written yet (docs/derive.md)"
    )
# Optional stages (registry: active_when without stands_in_for; dpo) run only where the recipe
# switches them on; the others have no rule, job or checkpoint here. The declared
# post_training sequence and eval.checkpoints are checked first (openrecipe.post_training).
try:
    check_eval_checkpoints(RECIPE.data)
except RecipeError as _error:
    sys.exit(f"openrecipe: error: recipe {NAME}: {_error}")
INACTIVE = set(inactive_stages(RECIPE.data))
ACTIVE_OPTIONAL = [s for s in optional_stages() if s not in INACTIVE]
CHECKPOINT_STAGES = {
    c: STAND_INS.get(s, s) for c, s in checkpoint_stages().items() if s not in INACTIVE
}
EVAL_CHECKPOINTS = list(RECIPE.data["eval"]["checkpoints"])
# Alignment seeds (openrecipe.seeds): seed 0 is the sft/rl chain above; each further seed k adds
# sft_seed<k> -> rl_seed<k> and their evaluations (align.smk), which the report pools.
EXTRA_SEEDS = [k for k in align_seeds(RECIPE.data) if k != 0]
SEED_STAGES = [seed_stage_dir(s, k) for k in EXTRA_SEEDS for s in ("sft", "rl")]
CHECKPOINT_STAGES.update({name: name for name in SEED_STAGES})
EVAL_CHECKPOINTS += [
    seed_stage_dir(c, k) for k in EXTRA_SEEDS for c in ("sft", "rl") if c in EVAL_CHECKPOINTS
]



# Stages read the recipe from this resolved copy (extends and overrides applied, origins kept in
# a sidecar), a fixed path per recipe: adding an override file changes the views, and so reruns
# exactly the stages whose view it changes, never the others. Rewritten only when it changes;
# each stage checks its view hash against --expect-config-hash, so a stale copy cannot run.
# Written by the onstart handler below, never while the Snakefile is parsed: Snakemake skips
# onstart in a dry run, so `snakemake -n` (and `openrecipe rerun --dry-run`) writes nothing.
RESOLVED = f"{RUN}/recipe.resolved.yaml"
# The interpreter is a param, so a rerun trigger: spell it one way (the environment's
# bin/python), not as sys.executable, which is .venv/bin/python or .venv/bin/python3.11
# depending on how snakemake was started (that difference alone reran every stage).
PY = shlex.quote(str(Path(sys.prefix) / "bin" / "python"))

# acquire's outputs (data/raw/<source>) are shared by every recipe naming the same pinned
# source, so its params must not name this recipe's RESOLVED path (switching recipes would
# refetch every source). It reads the resolved recipe from a per-source path instead; the
# stage's view-hash check still refuses a copy whose entry for the source differs.
def write_resolved_recipes():
    """The run's resolved recipe and each source's copy for acquire (see above)."""
    write_resolved(RECIPE, PROJECT / RESOLVED, PROJECT)
    for source in SOURCES:
        write_resolved(RECIPE, PROJECT / f"runs/.acquire/{source}.resolved.yaml", PROJECT)


onstart:
    write_resolved_recipes()


# Code is an input: each rule's `code` param is its stage's code identity (openrecipe.codeid),
# so editing what a stage runs reruns it and its descendants. Snakemake only says "params
# changed"; say which stage was made by other code, what changed and what reruns with it.
for _line in explain_code_drift(PROJECT, [PROJECT / RUN, PROJECT / RESULTS, *(PROJECT / "data" / "raw" / s for s in SOURCES)]):
    print(_line, file=sys.stderr)


def _one_of(names):
    """A wildcard constraint matching exactly these names (none: a regex that matches nothing)."""
    return "|".join(names) if names else "(?!)"


def acquire_recipe(wildcards):
    return f"runs/.acquire/{wildcards.source}.resolved.yaml"
ENV = "../envs/openrecipe.yaml"


def view(stage, part=None):
    return RECIPE.view(stage, part)


def view_hash(stage, part=None):
    return RECIPE.view_hash(stage, part)


def stage_params(stage, part=None):
    """Params shared by the stage rules: the view and the code identity (rerun triggers), the
    view hash, the resolved recipe and the interpreter."""
    return {
        "stage": stage,
        "view": view(stage, part),
        "code": stage_code_digest(stage),
        "view_hash": view_hash(stage, part),
        "recipe": RESOLVED,
        "py": PY,
    }


def output_dir(wildcards, output):
    """A stage's directory: where its manifest.json lives."""
    return str(Path(output.manifest).parent)


def input_args(**dirs):
    """`--input name=dir` arguments for a stage (dirs are fixed per recipe)."""
    return " ".join(f"--input {name}={path}" for name, path in dirs.items())


def get_evaluate_args(wildcards):
    model = get_checkpoint_dir(wildcards)
    return f"--part {wildcards.checkpoint} {input_args(model=model, reasoning=f'{RUN}/reasoning')}"


# The stage whose outputs hold the eval set of each eval task, for decontamination (the decontam
# rule depends on the sets of the tasks the recipe names, never on eval settings).
EVAL_SET_STAGES = {
    "openrecipe_reasoning_heldout": "reasoning",
    "openrecipe_reasoning_bpb": "reasoning",
}


def _eval_set_dirs():
    """{decontam input name: stage dir}: openrecipe's own sets by stage, the standard
    benchmarks' as eval_data.<set> (one input per set the named tasks read)."""
    from openrecipe.evaluate.benchmarks import BENCHMARKS

    sets = {}
    for task in (t["name"] for t in RECIPE.data["eval"]["tasks"]):
        if task in EVAL_SET_STAGES:
            sets[EVAL_SET_STAGES[task]] = f"{RUN}/{EVAL_SET_STAGES[task]}"
        elif task in BENCHMARKS:
            sets[f"eval_data.{BENCHMARKS[task].data}"] = f"{RUN}/eval_data"
    return dict(sorted(sets.items()))


def _raw_sources():
    """{curate input name: directory} of each acquired source."""
    return {f"raw_{source}": f"data/raw/{source}" for source in SOURCES}


def _policy_dir():
    """{"policy": directory} of the step before dpo in post_training (its starting model)."""
    return {"policy": f"{RUN}/{policy_stage(RECIPE.data, 'dpo')}"}


# Inputs that depend on the recipe, not on a fixed upstream stage (registry: recipe_inputs).
RECIPE_INPUTS = {
    "raw_sources": _raw_sources,
    "eval_sets": _eval_set_dirs,
    "derive": lambda: derive_input_dirs(RECIPE.data, PROJECT),
    "policy": _policy_dir,
}


def stage_input_dirs(stage):
    """{input name: directory} of a stage: its fixed upstream stages, then its recipe inputs."""
    entry = STAGES[stage]
    dirs = {
        name: f"{RUN}/{STAND_INS.get(upstream, upstream)}" for name, upstream in entry.inputs.items()
    }
    if entry.recipe_inputs:
        dirs.update(RECIPE_INPUTS[entry.recipe_inputs]())
    return dirs


def stage_args(stage):
    """The `--input NAME=DIR` arguments of a stage's job."""
    return input_args(**stage_input_dirs(stage))


def stage_input_manifests(stage):
    """The manifests a stage's job waits for (one per input directory)."""
    return sorted({f"{path}/manifest.json" for path in stage_input_dirs(stage).values()})


# Per-document curation stages (registry: scatter) run as data.curation.shards jobs when it is
# above 1; the stage's own job then gathers them (openrecipe.data.sharding). With one shard the
# stage is a single job.
SHARDS = int(RECIPE.data["data"]["curation"]["shards"])
SHARD_IDS = [f"{i:03d}" for i in range(SHARDS)] if SHARDS > 1 else []


def shard_manifests(stage):
    return [f"{RUN}/{stage}_shards/{shard}/manifest.json" for shard in SHARD_IDS]


def shard_job_args(stage, wildcards):
    """A shard job's arguments: its part and the same inputs as the unsharded stage."""
    return f"--part shard-{wildcards.shard} {input_args(**stage_input_dirs(stage))}"


def gather_args(stage):
    """The stage job's inputs: all of them unscattered; scattered, its fixed inputs and its
    shards (the shards already read the recipe inputs)."""
    if not SHARD_IDS:
        return stage_args(stage)
    shards = {f"shard_{shard}": f"{RUN}/{stage}_shards/{shard}" for shard in SHARD_IDS}
    fixed = {name: f"{RUN}/{upstream}" for name, upstream in STAGES[stage].inputs.items()}
    return input_args(**fixed, **shards)


REPORTED_STAGES = [
    *(s for s in stages_where(reported=True) if s not in REPLACED and s not in INACTIVE),
    *STAND_INS.values(),
    *SEED_STAGES,
]


def report_data_outputs():
    """The data card and blend plot, drawn from curation and the pack: none in a run that
    imports its base (the report stage writes them only when it reads those stages)."""
    if "curate" in REPLACED:  # the report writes the card when it reads curate
        return {}
    return {
        "data_card": report(f"{RESULTS}/data_card.md", category="Data"),
        "blend_plot": report(f"{RESULTS}/blend.png", category="Data"),
    }


def get_report_inputs(wildcards):
    manifests = [f"{RUN}/{stage}/manifest.json" for stage in REPORTED_STAGES]
    return manifests + [f"{RUN}/evaluate/{c}/manifest.json" for c in EVAL_CHECKPOINTS]


def get_report_input_args(wildcards):
    dirs = {stage: f"{RUN}/{stage}" for stage in REPORTED_STAGES}
    dirs.update({f"eval_{c}": f"{RUN}/evaluate/{c}" for c in EVAL_CHECKPOINTS})
    return input_args(**dirs)


def get_checkpoint_manifest(wildcards):
    return f"{RUN}/{CHECKPOINT_STAGES[wildcards.checkpoint]}/manifest.json"


def get_checkpoint_dir(wildcards):
    return f"{RUN}/{CHECKPOINT_STAGES[wildcards.checkpoint]}"


def get_final_targets():
    # Full-size recipes run on the scale backend: the Megatron plan and its SLURM launch (the
    # HF-checkpoint stages after pretraining need a Megatron-to-HF conversion first).
    if RECIPE.data["backend"] == "megatron":
        return [f"{RUN}/plan/manifest.json", f"{RUN}/pretrain_megatron/latest_checkpointed_iteration.txt"]
    # The run's own stage manifests are targets too, not only the report: results/<recipe>/ is
    # committed, so on a fresh clone the report exists while runs/<recipe>/ does not, and a
    # report-only target would leave Snakemake with nothing to do. Naming what the report is
    # computed from makes it build the run, and the fresh inputs then rerun the report (mtime).
    # An optional stage the recipe switches on is a target of its own: the report does not
    # read it (yet), and its evaluation runs only when eval.checkpoints names it.
    optional = [f"{RUN}/{stage}/manifest.json" for stage in ACTIVE_OPTIONAL]
    return [f"{RESULTS}/manifest.json", *get_report_inputs(None), *optional]


# Host memory a GPU job asks for per GPU (MB): 64 GiB, which a DGX H100/B200 (2 TiB for 8 GPUs)
# and a GB200 tray (about 960 GB for 4) both hold. Override per rule: resources.slurm.<rule>.mem_mb.
HOST_MB_PER_GPU = 65536


def slurm_resources(rule_name, key, default):
    """Per-rule cluster resources from the recipe (resources.slurm.<rule>.<key>)."""
    return RECIPE.data.get("resources", {}).get("slurm", {}).get(rule_name, {}).get(key, default)


def megatron_layout():
    """(nodes, GPUs per node) of the Megatron launch: the recipe's parallelism, which the plan
    compiles launch.sh for. resources.slurm.pretrain_megatron.{nodes,gpus} may restate them but
    not differ (a job sized unlike its launch would wait for, or strand, nodes)."""
    parallelism = RECIPE.data.get("parallelism") or {}
    layout = {"nodes": parallelism.get("nodes"), "gpus": parallelism.get("gpus_per_node")}
    for key, value in layout.items():
        stated = slurm_resources("pretrain_megatron", key, value)
        if stated != value:
            sys.exit(
                f"openrecipe: error: recipe {NAME}: resources.slurm.pretrain_megatron.{key} "
                f"= {stated} but the Megatron launch is compiled for {value} "
                f"(parallelism.{'nodes' if key == 'nodes' else 'gpus_per_node'})"
            )
    return layout["nodes"], layout["gpus"]
