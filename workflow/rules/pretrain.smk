# Pretraining. The pretrain stage (reference backend) has a generic rule (stages.smk), and so
# has the scale backend's plan (backend: megatron): the recipe compiled to a Megatron-LM launch
# plan. Here: the SLURM job that runs that plan (per-rule nodes/GPUs/runtime from resources.slurm.pretrain_megatron).
# `snakemake -n --profile workflow/profiles/slurm --configfile recipes/<full>.yaml` lists both.


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
