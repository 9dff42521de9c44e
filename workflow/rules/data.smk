# Data: acquire each source, curate them together (curate -> langid -> fuzzy_dedup -> quality
# -> decontam), blend, train the tokenizer, pack; and the
# reasoning set for alignment and evaluation.
#
# Every stage rule has the same shape: its stage's params (view = rerun trigger, view hash,
# resolved recipe), one `python -m openrecipe <stage>` line, a log.

STAGE_SHELL = (
    "{params.py} -m openrecipe {params.stage} --recipe {params.recipe} {params.inputs}"
    " --out {params.out} --expect-config-hash {params.view_hash} > {log} 2>&1"
)


# Raw sources are shared by every recipe that names the same pinned entry, so nothing in this
# rule's params may depend on which recipe runs: it reads the resolved recipe from a per-source
# path that is the same for every recipe (see acquire_recipe in common.smk).
rule acquire:
    output:
        manifest="data/raw/{source}/manifest.json",
    params:
        recipe=acquire_recipe,
        py=PY,
        stage="acquire",
        code=stage_code_digest("acquire"),
        view=lambda w: view("acquire", w.source),
        view_hash=lambda w: view_hash("acquire", w.source),
        inputs=lambda w: f"--part {w.source}",
        out=output_dir,
    log:
        "runs/logs/acquire/{source}.log",
    conda:
        ENV
    resources:
        runtime=lambda w: slurm_resources("acquire", "runtime", 30),
    shell:
        STAGE_SHELL


rule curate:
    input:
        get_raw_manifests,
    output:
        manifest=f"{RUN}/curate/manifest.json",
    params:
        **stage_params("curate"),
        inputs=get_raw_input_args,
        out=output_dir,
    log:
        f"{RUN}/logs/curate.log",
    conda:
        ENV
    shell:
        STAGE_SHELL


# The curation chain after curate: each step its own stage, reading the previous one's docs.jsonl
# and writing its own accounting (see openrecipe.data.accounting).
rule langid_shard:
    input:
        f"{RUN}/curate/manifest.json",
    output:
        manifest=f"{RUN}/langid_shards/{{shard}}/manifest.json",
    params:
        **stage_params("langid"),
        inputs=lambda w: shard_job_args(w, docs=f"{RUN}/curate"),
        out=output_dir,
    log:
        f"{RUN}/logs/langid_shards/{{shard}}.log",
    conda:
        ENV
    shell:
        STAGE_SHELL


rule langid:
    input:
        f"{RUN}/curate/manifest.json",
        shard_manifests("langid"),
    output:
        manifest=f"{RUN}/langid/manifest.json",
    params:
        **stage_params("langid"),
        inputs=gather_args("langid", "curate"),
        out=output_dir,
    log:
        f"{RUN}/logs/langid.log",
    conda:
        ENV
    shell:
        STAGE_SHELL


rule fuzzy_dedup_shard:
    input:
        f"{RUN}/langid/manifest.json",
    output:
        manifest=f"{RUN}/fuzzy_dedup_shards/{{shard}}/manifest.json",
    params:
        **stage_params("fuzzy_dedup"),
        inputs=lambda w: shard_job_args(w, docs=f"{RUN}/langid"),
        out=output_dir,
    log:
        f"{RUN}/logs/fuzzy_dedup_shards/{{shard}}.log",
    conda:
        ENV
    shell:
        STAGE_SHELL


rule fuzzy_dedup:
    input:
        f"{RUN}/langid/manifest.json",
        shard_manifests("fuzzy_dedup"),
    output:
        manifest=f"{RUN}/fuzzy_dedup/manifest.json",
    params:
        **stage_params("fuzzy_dedup"),
        inputs=gather_args("fuzzy_dedup", "langid"),
        out=output_dir,
    log:
        f"{RUN}/logs/fuzzy_dedup.log",
    conda:
        ENV
    shell:
        STAGE_SHELL


rule quality_shard:
    input:
        f"{RUN}/fuzzy_dedup/manifest.json",
    output:
        manifest=f"{RUN}/quality_shards/{{shard}}/manifest.json",
    params:
        **stage_params("quality"),
        inputs=lambda w: shard_job_args(w, docs=f"{RUN}/fuzzy_dedup"),
        out=output_dir,
    log:
        f"{RUN}/logs/quality_shards/{{shard}}.log",
    conda:
        ENV
    shell:
        STAGE_SHELL


rule quality:
    input:
        f"{RUN}/fuzzy_dedup/manifest.json",
        shard_manifests("quality"),
    output:
        manifest=f"{RUN}/quality/manifest.json",
    params:
        **stage_params("quality"),
        inputs=gather_args("quality", "fuzzy_dedup"),
        out=output_dir,
    log:
        f"{RUN}/logs/quality.log",
    conda:
        ENV
    shell:
        STAGE_SHELL


rule decontam_shard:
    input:
        f"{RUN}/quality/manifest.json",
        get_decontam_manifests,
    output:
        manifest=f"{RUN}/decontam_shards/{{shard}}/manifest.json",
    params:
        **stage_params("decontam"),
        inputs=lambda w: shard_job_args(w, **decontam_input_dirs()),
        out=output_dir,
    log:
        f"{RUN}/logs/decontam_shards/{{shard}}.log",
    conda:
        ENV
    shell:
        STAGE_SHELL


rule decontam:
    input:
        f"{RUN}/quality/manifest.json",
        get_decontam_manifests,
        shard_manifests("decontam"),
    output:
        manifest=f"{RUN}/decontam/manifest.json",
    params:
        **stage_params("decontam"),
        inputs=get_decontam_input_args if SHARDS == 1 else gather_args("decontam", "quality"),
        out=output_dir,
    log:
        f"{RUN}/logs/decontam.log",
    conda:
        ENV
    shell:
        STAGE_SHELL


rule blend:
    input:
        f"{RUN}/decontam/manifest.json",
    output:
        manifest=f"{RUN}/blend/manifest.json",
    params:
        **stage_params("blend"),
        inputs=input_args(curated=f"{RUN}/decontam"),
        out=output_dir,
    log:
        f"{RUN}/logs/blend.log",
    conda:
        ENV
    shell:
        STAGE_SHELL


rule tokenizer:
    input:
        f"{RUN}/blend/manifest.json",
    output:
        manifest=f"{RUN}/tokenizer/manifest.json",
    params:
        **stage_params("tokenizer"),
        inputs=input_args(blend=f"{RUN}/blend"),
        out=output_dir,
    log:
        f"{RUN}/logs/tokenizer.log",
    conda:
        ENV
    shell:
        STAGE_SHELL


rule pack:
    input:
        f"{RUN}/blend/manifest.json",
        f"{RUN}/tokenizer/manifest.json",
    output:
        manifest=f"{RUN}/pack/manifest.json",
    params:
        **stage_params("pack"),
        inputs=input_args(blend=f"{RUN}/blend", tokenizer=f"{RUN}/tokenizer"),
        out=output_dir,
    log:
        f"{RUN}/logs/pack.log",
    conda:
        ENV
    shell:
        STAGE_SHELL


rule reasoning:
    output:
        manifest=f"{RUN}/reasoning/manifest.json",
    params:
        **stage_params("reasoning"),
        inputs="",
        out=output_dir,
    log:
        f"{RUN}/logs/reasoning.log",
    conda:
        ENV
    shell:
        STAGE_SHELL
