# Evaluation through lm-eval on the local task suite, once per checkpoint (base, sft, rl).

from openrecipe.evaluate.benchmarks import BENCHMARKS

EVAL_TASKS = [task["name"] for task in RECIPE.data["eval"]["tasks"]]
# The standard benchmarks read the eval_data stage's files; openrecipe's own tasks do not.
EVAL_DATA = [f"{RUN}/eval_data/manifest.json"] if set(EVAL_TASKS) & set(BENCHMARKS) else []
# Task templates and their functions (evaluate/tasks/) are part of the evaluate stage's code
# identity (openrecipe.codeid: package data), so editing a prompt reruns evaluation through the
# rule's code param; the rendered config's hash lands in the manifest. The eval_data stage has
# a generic rule (stages.smk).


rule evaluate:
    input:
        get_checkpoint_manifest,
        f"{RUN}/reasoning/manifest.json",
        EVAL_DATA,
    output:
        manifest=f"{RUN}/evaluate/{{checkpoint}}/manifest.json",
    params:
        **stage_params("evaluate"),
        inputs=lambda w: get_evaluate_args(w)
        + "".join(f" --input eval_data={Path(m).parent}" for m in EVAL_DATA),
        out=output_dir,
    log:
        f"{RUN}/logs/evaluate_{{checkpoint}}.log",
    conda:
        ENV
    threads: stage_threads("evaluate")
    resources:
        **stage_resources("evaluate"),
    shell:
        STAGE_SHELL
