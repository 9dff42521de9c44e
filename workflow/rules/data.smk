# Data: acquire each source. The other data stages (curate -> langid -> fuzzy_dedup -> quality
# -> decontam -> blend, tokenizer, pack, reasoning) have generic rules (stages.smk) built from
# openrecipe.registry.

# Raw sources are shared by every recipe that names the same pinned entry, so nothing in this
# rule's params may depend on which recipe runs: it reads the resolved recipe from a per-source
# path that is the same for every recipe (see acquire_recipe in common.smk).
rule acquire:
    output:
        manifest="data/raw/{source}/manifest.json",
    wildcard_constraints:
        source=_one_of([s for s in SOURCES if s not in HF_SOURCES]),
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


# hf_dataset sources (openrecipe.data.acquire_hf): one job per pinned Parquet file, resumable
# file by file (a rerun redoes only the files whose manifest is missing), then a gather into
# data/raw/<source>, the directory curate reads. Like acquire, nothing here names this recipe:
# each job's view is its source entry (narrowed to its file), so recipes that pin the same
# source share its files and its raw directory. A source with no files: pin plans a gather with
# no file jobs, which refuses by name when it runs.
from openrecipe.data.acquire_hf import file_ids as hf_file_ids, part_view, part_view_hash


rule acquire_hf_file:
    output:
        manifest="data/hf/{source}/{fileid}/manifest.json",
    wildcard_constraints:
        source=_one_of(HF_SOURCES),
        fileid="[0-9a-f]{16}",
    params:
        recipe=acquire_recipe,
        py=PY,
        stage="acquire_hf",
        code=stage_code_digest("acquire_hf"),
        view=lambda w: part_view(RECIPE.data, f"{w.source}/{w.fileid}"),
        view_hash=lambda w: part_view_hash(RECIPE.data, f"{w.source}/{w.fileid}"),
        inputs=lambda w: f"--part {w.source}/{w.fileid}",
        out=output_dir,
    log:
        "runs/logs/acquire_hf/{source}/{fileid}.log",
    conda:
        ENV
    resources:
        **stage_resources("acquire_hf"),
    shell:
        STAGE_SHELL


rule acquire_hf:
    input:
        lambda w: [f"data/hf/{w.source}/{fid}/manifest.json" for fid in hf_file_ids(RECIPE.data, w.source)],
    output:
        manifest="data/raw/{source}/manifest.json",
    wildcard_constraints:
        source=_one_of(HF_SOURCES),
    params:
        recipe=acquire_recipe,
        py=PY,
        stage="acquire_hf",
        code=stage_code_digest("acquire_hf"),
        view=lambda w: part_view(RECIPE.data, w.source),
        view_hash=lambda w: part_view_hash(RECIPE.data, w.source),
        inputs=lambda w: f"--part {w.source}",
        out=output_dir,
    log:
        "runs/logs/acquire_hf/{source}.log",
    conda:
        ENV
    resources:
        **stage_resources("acquire_hf"),
    shell:
        STAGE_SHELL
