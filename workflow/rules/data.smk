# Data: acquire each source. The other data stages (curate -> langid -> fuzzy_dedup -> quality
# -> decontam -> blend, tokenizer, pack, reasoning) have generic rules (stages.smk) built from
# openrecipe.registry.

# Raw sources are shared by every recipe that names the same pinned entry, so nothing in this
# rule's params may depend on which recipe runs: it reads the resolved recipe from a per-source
# path that is the same for every recipe (see acquire_recipe in common.smk).
rule acquire:
    output:
        manifest="data/raw/{source}/manifest.json",
    params:
        recipe=acquire_recipe,
        py=PY,
        stage="acquire",
        code=stage_code_digest("acquire"),
        view=lambda w: view("acquire", w.source),
        view_hash=lambda w: view_hash("acquire", w.source),
        inputs=lambda w: f"--part {w.source}",
        out=output_dir,
    log:
        "runs/logs/acquire/{source}.log",
    conda:
        ENV
    resources:
        **stage_resources("acquire"),
    shell:
        STAGE_SHELL
