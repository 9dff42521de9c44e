# Reasoning alignment: SFT on traces with reasoning on/off, then GRPO with verifiable rewards.


rule sft:
    input:
        f"{RUN}/pretrain/manifest.json",
        f"{RUN}/reasoning/manifest.json",
    output:
        manifest=f"{RUN}/sft/manifest.json",
    params:
        **stage_params("sft"),
        inputs=input_args(pretrain=f"{RUN}/pretrain", reasoning=f"{RUN}/reasoning"),
        out=output_dir,
    log:
        f"{RUN}/logs/sft.log",
    conda:
        ENV
    threads: RECIPE.data["resources"]["threads"]
    resources:
        gpus=lambda w: slurm_resources("sft", "gpus", 0),
        runtime=lambda w: slurm_resources("sft", "runtime", 60),
    shell:
        STAGE_SHELL


rule rl:
    input:
        f"{RUN}/sft/manifest.json",
        f"{RUN}/reasoning/manifest.json",
    output:
        manifest=f"{RUN}/rl/manifest.json",
    params:
        **stage_params("rl"),
        inputs=input_args(sft=f"{RUN}/sft", reasoning=f"{RUN}/reasoning"),
        out=output_dir,
    log:
        f"{RUN}/logs/rl.log",
    conda:
        ENV
    threads: RECIPE.data["resources"]["threads"]
    resources:
        gpus=lambda w: slurm_resources("rl", "gpus", 0),
        runtime=lambda w: slurm_resources("rl", "runtime", 60),
    shell:
        STAGE_SHELL
