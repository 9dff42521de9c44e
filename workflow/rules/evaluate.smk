# Evaluation through lm-eval on the local task suite, once per checkpoint (base, sft, rl).


rule evaluate:
    input:
        get_checkpoint_manifest,
        f"{RUN}/reasoning/manifest.json",
    output:
        manifest=f"{RUN}/evaluate/{{checkpoint}}/manifest.json",
    params:
        **stage_params("evaluate"),
        inputs=get_evaluate_args,
        out=output_dir,
    log:
        f"{RUN}/logs/evaluate_{{checkpoint}}.log",
    conda:
        ENV
    threads: RECIPE.data["resources"]["threads"]
    resources:
        gpus=lambda w: slurm_resources("evaluate", "gpus", 0),
        runtime=lambda w: slurm_resources("evaluate", "runtime", 30),
    shell:
        STAGE_SHELL
