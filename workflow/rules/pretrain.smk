# Pretraining of the hybrid model on the packed data (reference backend).


rule pretrain:
    input:
        f"{RUN}/pack/manifest.json",
        f"{RUN}/tokenizer/manifest.json",
    output:
        manifest=f"{RUN}/pretrain/manifest.json",
    params:
        **stage_params("pretrain"),
        inputs=input_args(pack=f"{RUN}/pack", tokenizer=f"{RUN}/tokenizer"),
        out=output_dir,
    log:
        f"{RUN}/logs/pretrain.log",
    conda:
        ENV
    threads: RECIPE.data["resources"]["threads"]
    resources:
        gpus=lambda w: slurm_resources("pretrain", "gpus", 0),
        nodes=lambda w: slurm_resources("pretrain", "nodes", 1),
        runtime=lambda w: slurm_resources("pretrain", "runtime", 60),
    shell:
        STAGE_SHELL


# Scale backend (backend: megatron): the recipe compiled to a Megatron-LM launch plan, and the
# SLURM job that runs it (per-rule nodes/GPUs/runtime from resources.slurm.pretrain_megatron).
# `snakemake -n --profile workflow/profiles/slurm --configfile recipes/<full>.yaml` lists both.


rule plan:
    output:
        manifest=f"{RUN}/plan/manifest.json",
        plan=f"{RUN}/plan/megatron_plan.json",
        launch=f"{RUN}/plan/launch.sh",
    params:
        **stage_params("plan"),
        inputs="",
        out=output_dir,
    log:
        f"{RUN}/logs/plan.log",
    conda:
        ENV
    resources:
        runtime=lambda w: slurm_resources("plan", "runtime", 10),
    shell:
        STAGE_SHELL


rule pretrain_megatron:
    input:
        f"{RUN}/plan/manifest.json",
        f"{RUN}/pack/manifest.json",
        f"{RUN}/tokenizer/manifest.json",
        launch=f"{RUN}/plan/launch.sh",
    output:
        f"{RUN}/pretrain_megatron/latest_checkpointed_iteration.txt",
    log:
        f"{RUN}/logs/pretrain_megatron.log",
    conda:
        "../envs/megatron.yaml"
    resources:
        nodes=lambda w: slurm_resources("pretrain_megatron", "nodes", 1),
        gpus=lambda w: slurm_resources("pretrain_megatron", "gpus", 8),
        tasks_per_node=1,
        runtime=lambda w: slurm_resources("pretrain_megatron", "runtime", 60),
    shell:
        "bash {input.launch} > {log} 2>&1"
