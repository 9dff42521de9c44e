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
