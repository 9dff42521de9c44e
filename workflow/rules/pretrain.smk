# Pretraining of the hybrid model on the packed data (reference backend).


rule pretrain:
    input:
        f"{RUN}/pack/manifest.json",
        f"{RUN}/tokenizer/manifest.json",
    output:
        manifest=f"{RUN}/pretrain/manifest.json",
    params:
        view=view("pretrain"),
        view_hash=view_hash("pretrain"),
    log:
        f"{RUN}/logs/pretrain.log",
    threads: RECIPE.data["resources"]["threads"]
    resources:
        gpus=lambda w: slurm_resources("pretrain", "gpus", 0),
        nodes=lambda w: slurm_resources("pretrain", "nodes", 1),
        runtime=lambda w: slurm_resources("pretrain", "runtime", 60),
    shell:
        "{PY} -m openrecipe pretrain {RECIPE_ARGS} --input pack={RUN}/pack --input tokenizer={RUN}/tokenizer"
        " --out {RUN}/pretrain --expect-config-hash {params.view_hash} > {log} 2>&1"
