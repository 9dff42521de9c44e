# Every stage whose entry in openrecipe.registry says rule="generic" gets its rule here, built
# from that entry: inputs from its upstream stages (and recipe inputs), its view, code identity
# and view hash as params (rerun triggers), one `python -m openrecipe <stage>` line, a log.
# A scattering stage (registry: scatter) also gets `<stage>_shard`: one job per shard of
# data.curation.shards, which the stage's own job gathers. Stages with per-item wildcards or
# report outputs have their rules written out in their family's .smk file (rule="custom").

STAGE_SHELL = (
    "{params.py} -m openrecipe {params.stage} --recipe {params.recipe} {params.inputs}"
    " --out {params.out} --expect-config-hash {params.view_hash} > {log} 2>&1"
)


def stage_resources(stage):
    """The stage's cluster resources (registry defaults, resources.slurm.<stage> overrides)."""
    return {
        key: (lambda w, key=key, default=default: slurm_resources(stage, key, default))
        for key, default in STAGES[stage].cluster.items()
    }


def stage_threads(stage):
    return RECIPE.data["resources"]["threads"] if STAGES[stage].threads else 1


for _stage in stages_where(rule="generic", scatter=True):

    rule:
        name:
            f"{_stage}_shard"
        input:
            stage_input_manifests(_stage),
        output:
            manifest=f"{RUN}/{_stage}_shards/{{shard}}/manifest.json",
        params:
            **stage_params(_stage),
            inputs=lambda w, stage=_stage: shard_job_args(stage, w),
            out=output_dir,
        log:
            f"{RUN}/logs/{_stage}_shards/{{shard}}.log",
        conda:
            ENV
        threads: stage_threads(_stage)
        resources:
            **stage_resources(_stage),
        shell:
            STAGE_SHELL


# An optional stage the recipe does not switch on (common.smk: INACTIVE) gets no rule.
for _stage in (s for s in stages_where(rule="generic") if s not in INACTIVE):

    rule:
        name:
            _stage
        input:
            stage_input_manifests(_stage),
            shard_manifests(_stage) if STAGES[_stage].scatter else [],
        output:
            manifest=f"{RUN}/{_stage}/manifest.json",
            **{Path(name).stem: f"{RUN}/{_stage}/{name}" for name in STAGES[_stage].outputs},
        params:
            **stage_params(_stage),
            inputs=gather_args(_stage) if STAGES[_stage].scatter else stage_args(_stage),
            out=output_dir,
        log:
            f"{RUN}/logs/{_stage}.log",
        conda:
            ENV
        threads: stage_threads(_stage)
        resources:
            **stage_resources(_stage),
        shell:
            STAGE_SHELL
