# The report: results/<recipe>/ (metrics.json, loss curve, summary.md) from every stage's outputs,
# and `snakemake --report` pulls in the figures marked below.


def get_report_inputs(wildcards):
    stages = ["curate", "blend", "tokenizer", "pack", "pretrain", "reasoning", "sft", "rl"]
    return [f"{RUN}/{stage}/manifest.json" for stage in stages] + [
        f"{RUN}/evaluate/{checkpoint}/manifest.json" for checkpoint in EVAL_CHECKPOINTS
    ]


def get_report_input_args(wildcards):
    stages = ["curate", "blend", "tokenizer", "pack", "pretrain", "reasoning", "sft", "rl"]
    args = [f"--input {stage}={RUN}/{stage}" for stage in stages]
    args += [f"--input eval_{c}={RUN}/evaluate/{c}" for c in EVAL_CHECKPOINTS]
    return " ".join(args)


rule report:
    input:
        get_report_inputs,
    output:
        manifest=f"{RESULTS}/manifest.json",
        loss_curve=report(
            f"{RESULTS}/loss_curve.png",
            caption="../report/loss_curve.rst",
            category="Training",
        ),
        summary=report(f"{RESULTS}/summary.md", caption="../report/summary.rst", category="Summary"),
    params:
        view=view("report"),
        view_hash=view_hash("report"),
        inputs=get_report_input_args,
    log:
        f"{RUN}/logs/report.log",
    shell:
        "{PY} -m openrecipe report {RECIPE_ARGS} {params.inputs} --out {RESULTS}"
        " --expect-config-hash {params.view_hash} > {log} 2>&1"


rule push:
    """Version the finished run's artifacts with DVC and push them to the default remote."""
    input:
        f"{RESULTS}/manifest.json",
    output:
        f"runs/{NAME}.dvc",
    log:
        f"{RUN}/logs/push.log",
    shell:
        "{PY} -m openrecipe push {RUN} > {log} 2>&1"
