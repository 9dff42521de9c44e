# Data: acquire each source, curate them together, blend, train the tokenizer, pack.

import sys

PY = shlex.quote(sys.executable)


rule acquire:
    output:
        manifest="data/raw/{source}/manifest.json",
    params:
        view=lambda w: view("acquire", w.source),
        view_hash=lambda w: view_hash("acquire", w.source),
    log:
        "runs/logs/acquire/{source}.log",
    resources:
        runtime=lambda w: slurm_resources("acquire", "runtime", 30),
    shell:
        "{PY} -m openrecipe acquire {RECIPE_ARGS} --part {wildcards.source}"
        " --out data/raw/{wildcards.source} --expect-config-hash {params.view_hash} > {log} 2>&1"


rule curate:
    input:
        get_raw_manifests,
    output:
        manifest=f"{RUN}/curate/manifest.json",
    params:
        view=view("curate"),
        view_hash=view_hash("curate"),
        inputs=get_raw_input_args,
    log:
        f"{RUN}/logs/curate.log",
    shell:
        "{PY} -m openrecipe curate {RECIPE_ARGS} {params.inputs} --out {RUN}/curate"
        " --expect-config-hash {params.view_hash} > {log} 2>&1"


rule blend:
    input:
        f"{RUN}/curate/manifest.json",
    output:
        manifest=f"{RUN}/blend/manifest.json",
    params:
        view=view("blend"),
        view_hash=view_hash("blend"),
    log:
        f"{RUN}/logs/blend.log",
    shell:
        "{PY} -m openrecipe blend {RECIPE_ARGS} --input curated={RUN}/curate --out {RUN}/blend"
        " --expect-config-hash {params.view_hash} > {log} 2>&1"


rule tokenizer:
    input:
        f"{RUN}/blend/manifest.json",
    output:
        manifest=f"{RUN}/tokenizer/manifest.json",
    params:
        view=view("tokenizer"),
        view_hash=view_hash("tokenizer"),
    log:
        f"{RUN}/logs/tokenizer.log",
    shell:
        "{PY} -m openrecipe tokenizer {RECIPE_ARGS} --input blend={RUN}/blend --out {RUN}/tokenizer"
        " --expect-config-hash {params.view_hash} > {log} 2>&1"


rule pack:
    input:
        f"{RUN}/blend/manifest.json",
        f"{RUN}/tokenizer/manifest.json",
    output:
        manifest=f"{RUN}/pack/manifest.json",
    params:
        view=view("pack"),
        view_hash=view_hash("pack"),
    log:
        f"{RUN}/logs/pack.log",
    shell:
        "{PY} -m openrecipe pack {RECIPE_ARGS} --input blend={RUN}/blend --input tokenizer={RUN}/tokenizer"
        " --out {RUN}/pack --expect-config-hash {params.view_hash} > {log} 2>&1"


rule reasoning:
    output:
        manifest=f"{RUN}/reasoning/manifest.json",
    params:
        view=view("reasoning"),
        view_hash=view_hash("reasoning"),
    log:
        f"{RUN}/logs/reasoning.log",
    shell:
        "{PY} -m openrecipe reasoning {RECIPE_ARGS} --out {RUN}/reasoning"
        " --expect-config-hash {params.view_hash} > {log} 2>&1"
