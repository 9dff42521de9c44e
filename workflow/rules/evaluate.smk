# Evaluation through lm-eval on the local task suite, once per checkpoint (base, sft, rl).


rule evaluate:
    input:
        get_checkpoint_manifest,
        f"{RUN}/reasoning/manifest.json",
    output:
        manifest=f"{RUN}/evaluate/{{checkpoint}}/manifest.json",
    params:
        view=view("evaluate"),
        view_hash=view_hash("evaluate"),
        model=get_checkpoint_dir,
    log:
        f"{RUN}/logs/evaluate_{{checkpoint}}.log",
    threads: RECIPE.data["resources"]["threads"]
    resources:
        gpus=lambda w: slurm_resources("evaluate", "gpus", 0),
        runtime=lambda w: slurm_resources("evaluate", "runtime", 30),
    shell:
        "{PY} -m openrecipe evaluate {RECIPE_ARGS} --part {wildcards.checkpoint}"
        " --input model={params.model} --input reasoning={RUN}/reasoning"
        " --out {RUN}/evaluate/{wildcards.checkpoint} --expect-config-hash {params.view_hash} > {log} 2>&1"
