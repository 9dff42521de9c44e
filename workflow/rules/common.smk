# Shared by every rule: which recipe this run is, the stage views, and input helpers.
# Recipe files come from --configfile (the first is the recipe, the rest override files, applied
# in order); with none given, recipes/default.yaml runs. Snakemake's own config merge is not
# used: our loader resolves extends:, validates and names the file and field of any error.

import shlex
from pathlib import Path

from openrecipe.paths import find_project_root
from openrecipe.recipe import dump_resolved, load_recipe

PROJECT = find_project_root(Path(workflow.basedir))
_CONFIGFILES = [Path(p) for p in workflow.configfiles] or [PROJECT / "recipes" / "default.yaml"]
RECIPE = load_recipe(_CONFIGFILES[0], _CONFIGFILES[1:], project=PROJECT)
NAME = RECIPE.name
RUN = f"runs/{NAME}"
RESULTS = f"results/{NAME}"
SOURCES = sorted(s["name"] for s in RECIPE.data["data"]["sources"])
CHECKPOINT_STAGES = {"base": "pretrain", "sft": "sft", "rl": "rl"}
EVAL_CHECKPOINTS = list(RECIPE.data["eval"]["checkpoints"])

wildcard_constraints:
    source="|".join(SOURCES),
    checkpoint="|".join(CHECKPOINT_STAGES),


def _relative(path):
    path = Path(path).resolve()
    return path.relative_to(PROJECT).as_posix() if PROJECT in path.parents else str(path)


# Passed to every stage but deliberately not a param: adding an override file must rerun only
# the stages whose view it changes, which the view params already capture.
RECIPE_ARGS = " ".join(
    [f"--recipe {shlex.quote(_relative(_CONFIGFILES[0]))}"]
    + [f"--override {shlex.quote(_relative(p))}" for p in _CONFIGFILES[1:]]
)


def _write_resolved():
    """runs/<recipe>/recipe.resolved.yaml, for people and tools; rewritten only when it changes."""
    target = PROJECT / RUN / "recipe.resolved.yaml"
    text = dump_resolved(RECIPE)
    if not target.exists() or target.read_text(encoding="utf-8") != text:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(target)


_write_resolved()


def view(stage, part=None):
    return RECIPE.view(stage, part)


def view_hash(stage, part=None):
    return RECIPE.view_hash(stage, part)


def get_raw_manifests(wildcards):
    return [f"data/raw/{source}/manifest.json" for source in SOURCES]


def get_raw_input_args(wildcards):
    return " ".join(f"--input raw_{source}=data/raw/{source}" for source in SOURCES)


def get_checkpoint_manifest(wildcards):
    return f"{RUN}/{CHECKPOINT_STAGES[wildcards.checkpoint]}/manifest.json"


def get_checkpoint_dir(wildcards):
    return f"{RUN}/{CHECKPOINT_STAGES[wildcards.checkpoint]}"


def get_final_targets():
    return [f"{RESULTS}/manifest.json"]


def slurm_resources(rule_name, key, default):
    """Per-rule cluster resources from the recipe (resources.slurm.<rule>.<key>)."""
    return RECIPE.data.get("resources", {}).get("slurm", {}).get(rule_name, {}).get(key, default)
