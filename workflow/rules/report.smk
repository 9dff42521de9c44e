# The report: results/<recipe>/ (metrics.json, loss curve, summary.md) from every stage's outputs,
# and `snakemake --report` pulls in the figures marked below.


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
        **report_data_outputs(),
        scores=f"{RESULTS}/scores.md",
        scores_chart=report(f"{RESULTS}/scores.png", category="Evaluation"),
        reasoning=report(f"{RESULTS}/reasoning.md", category="Evaluation"),
        rl_curve=report(f"{RESULTS}/rl_curve.png", category="Training"),
    params:
        **stage_params("report"),
        inputs=get_report_input_args,
        out=output_dir,
    log:
        f"{RUN}/logs/report.log",
    conda:
        ENV
    shell:
        STAGE_SHELL


rule push:
    """Version the finished run's artifacts with DVC and push them to the default remote."""
    input:
        f"{RESULTS}/manifest.json",
    output:
        f"runs/{NAME}.dvc",
    params:
        py=PY,
        run=lambda w, output: output[0].removesuffix(".dvc"),
    log:
        f"{RUN}/logs/push.log",
    conda:
        ENV
    shell:
        "{params.py} -m openrecipe push {params.run} > {log} 2>&1"
