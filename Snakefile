# openrecipe: one workflow from raw sources to scores, for any recipe.
#
#   snakemake --cores 2 --configfile recipes/<recipe>.yaml [recipes/overrides/<policy>.yaml ...]
#
# Layout of what it writes:
#   data/raw/<source>/          acquired documents (shared by recipes; pinned by data/raw/<source>.dvc)
#   runs/<recipe>/<stage>/      every other stage's outputs + manifest.json (git-ignored, DVC-pushable)
#   runs/<recipe>/logs/         one log per job
#   results/<recipe>/           the report: metrics.json, loss curve, summary.md (committed)
#
# Each rule passes its stage's config view as params, so editing one recipe section reruns
# exactly the stages that read it and those downstream. Rules only wire paths; the work is in
# `python -m openrecipe <stage>` (src/openrecipe/).

from snakemake.utils import min_version

min_version("9.0")


include: "workflow/rules/common.smk"


wildcard_constraints:
    source="|".join(SOURCES),
    checkpoint="|".join(CHECKPOINT_STAGES),


include: "workflow/rules/stages.smk"
include: "workflow/rules/align.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        get_final_targets(),
