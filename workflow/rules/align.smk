# Reasoning alignment: SFT on traces with reasoning on/off, then GRPO with verifiable rewards.


rule sft:
    input:
        f"{RUN}/pretrain/manifest.json",
        f"{RUN}/reasoning/manifest.json",
    output:
        manifest=f"{RUN}/sft/manifest.json",
    params:
        view=view("sft"),
        view_hash=view_hash("sft"),
    log:
        f"{RUN}/logs/sft.log",
    threads: RECIPE.data["resources"]["threads"]
    resources:
        gpus=lambda w: slurm_resources("sft", "gpus", 0),
        runtime=lambda w: slurm_resources("sft", "runtime", 60),
    shell:
        "{PY} -m openrecipe sft {RECIPE_ARGS} --input pretrain={RUN}/pretrain --input reasoning={RUN}/reasoning"
        " --out {RUN}/sft --expect-config-hash {params.view_hash} > {log} 2>&1"


rule rl:
    input:
        f"{RUN}/sft/manifest.json",
        f"{RUN}/reasoning/manifest.json",
    output:
        manifest=f"{RUN}/rl/manifest.json",
    params:
        view=view("rl"),
        view_hash=view_hash("rl"),
    log:
        f"{RUN}/logs/rl.log",
    threads: RECIPE.data["resources"]["threads"]
    resources:
        gpus=lambda w: slurm_resources("rl", "gpus", 0),
        runtime=lambda w: slurm_resources("rl", "runtime", 60),
    shell:
        "{PY} -m openrecipe rl {RECIPE_ARGS} --input sft={RUN}/sft --input reasoning={RUN}/reasoning"
        " --out {RUN}/rl --expect-config-hash {params.view_hash} > {log} 2>&1"
