# Pretraining. The pretrain stage (reference backend) has a generic rule (stages.smk), and so
# has the scale backend's plan (backend: megatron): the recipe compiled to a Megatron-LM launch
# plan, and megatron_data, the pack split into one dataset per phase. Here: the SLURM job that
# runs that plan (launch.sh: one Megatron job per phase, in order, resumable).
# `snakemake -n --profile workflow/profiles/slurm --configfile recipes/<full>.yaml` lists both.
#
# Its resources are named as snakemake-executor-plugin-slurm reads them (2.8.0: `gres`, `nodes`,
# `runtime`, `cpus_per_task`; a `gpus` resource is ignored, and a job without `gres`/`gpu` gets
# `--ntasks=1`). They follow the layout the plan compiles launch.sh for, parallelism.nodes x
# parallelism.gpus_per_node: launch.sh's srun starts one torchrun per node (one task per node),
# which starts one rank per GPU. tests/unit/test_slurm_submit.py builds the sbatch line with the
# plugin's own functions.


# Reference recipes have no Megatron layout; their DAG never holds pretrain_megatron.
MEGATRON_NODES, MEGATRON_GPUS = (
    megatron_layout() if RECIPE.data["backend"] == "megatron" else (1, 8)
)


rule pretrain_megatron:
    input:
        f"{RUN}/plan/manifest.json",
        f"{RUN}/megatron_data/manifest.json",  # one dataset per phase (launch.sh's --data-path)
        f"{RUN}/tokenizer/manifest.json",
        launch=f"{RUN}/plan/launch.sh",
    output:
        f"{RUN}/pretrain_megatron/latest_checkpointed_iteration.txt",
    log:
        f"{RUN}/logs/pretrain_megatron.log",
    conda:
        "../envs/megatron.yaml"
    resources:
        nodes=MEGATRON_NODES,
        gres=f"gpu:{MEGATRON_GPUS}",  # per node (a --gpus total may land unevenly)
        # The plugin writes --ntasks-per-node only for MPI jobs, so it travels in slurm_extra
        # (a profile's set-resources slurm_extra for this rule replaces it: keep it there).
        slurm_extra="--ntasks-per-node=1 --exclusive",
        # the one task per node hosts every rank of its torchrun and their data workers
        cpus_per_task=lambda w: slurm_resources(
            "pretrain_megatron", "cpus_per_task", 8 * MEGATRON_GPUS
        ),
        runtime=lambda w: slurm_resources("pretrain_megatron", "runtime", 60),
        # host memory per node: --exclusive gives the job the node's CPUs, not its memory
        # (SLURM still enforces --mem), so the profile's 16 GB default would cap every rank's
        # data workers and checkpoint buffers. HOST_MB_PER_GPU per GPU unless the recipe says.
        mem_mb=lambda w: slurm_resources(
            "pretrain_megatron", "mem_mb", HOST_MB_PER_GPU * MEGATRON_GPUS
        ),
    shell:
        "bash {input.launch} > {log} 2>&1"
