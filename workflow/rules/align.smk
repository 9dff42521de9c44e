# Alignment seeds k > 0 (align.seeds; openrecipe.seeds). Seed 0 is the registry's own sft and rl
# stages (stages.smk); each further seed runs the same two stages with --part seed<k>, so a seed
# of its own, in sft_seed<k> and rl_seed<k>; rl_seed<k> trains from sft_seed<k>. Written out here
# because the seed is a wildcard the generic rules do not have.

SEED_STAGE_SHELL = (
    "{params.py} -m openrecipe {params.stage} --recipe {params.recipe} {params.inputs}"
    " --part seed{wildcards.k} --out {params.out} --expect-config-hash {params.view_hash}"
    " > {log} 2>&1"
)
# no extra seed: a pattern nothing matches, so the rules below produce nothing
SEED_PATTERN = "|".join(str(k) for k in EXTRA_SEEDS) or "(?!)"


rule sft_seed:
    input:
        stage_input_manifests("sft"),
    output:
        manifest=f"{RUN}/sft_seed{{k}}/manifest.json",
    wildcard_constraints:
        k=SEED_PATTERN,
    params:
        **stage_params("sft"),
        inputs=stage_args("sft"),
        out=output_dir,
    log:
        f"{RUN}/logs/sft_seed{{k}}.log",
    conda:
        ENV
    threads: stage_threads("sft")
    resources:
        **stage_resources("sft"),
    shell:
        SEED_STAGE_SHELL


rule rl_seed:
    input:
        f"{RUN}/sft_seed{{k}}/manifest.json",
        f"{RUN}/reasoning/manifest.json",
    output:
        manifest=f"{RUN}/rl_seed{{k}}/manifest.json",
    wildcard_constraints:
        k=SEED_PATTERN,
    params:
        **stage_params("rl"),
        inputs=lambda w: input_args(sft=f"{RUN}/sft_seed{w.k}", reasoning=f"{RUN}/reasoning"),
        out=output_dir,
    log:
        f"{RUN}/logs/rl_seed{{k}}.log",
    conda:
        ENV
    threads: stage_threads("rl")
    resources:
        **stage_resources("rl"),
    shell:
        SEED_STAGE_SHELL
