"""Starting post-training from a released checkpoint: the workflow plans import -> sft -> rl ->
evaluate -> report with no curation or pretraining job, sft trains from the import's output,
``trace`` shows the release as a raw input and ``certify`` says its weights are outside what it
can certify."""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from align_fixtures import PROJECT, make_reasoning, tiny_recipe
from test_import_checkpoint import REPO_ID, REVISION, build_release, pins

from openrecipe.codeid import CONTRACT_MODULES, import_closure
from openrecipe.data.reasoning import read_split
from openrecipe.errors import LineageError
from openrecipe.lineage.certify import certify, render_markdown
from openrecipe.lineage.trace import format_tree, raw_sources, trace
from openrecipe.recipe import Recipe, validate
from openrecipe.registry import STAGES, ancestors, stand_ins
from openrecipe.stage import run_stage
from openrecipe.train import import_checkpoint, rl, sft

REPO = Path(__file__).resolve().parents[2]
IMPORT_MODULE = "openrecipe.train.import_checkpoint"


def _dry_run(project: Path, recipe: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "-p", "--cores", "1", "--configfile", recipe],
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
        capture_output=True,
        text=True,
        timeout=300,
    )


def _job_counts(stdout: str) -> dict[str, int]:
    table = stdout.split("Job stats:", 1)[1].split("total", 1)[0]
    return {name: int(n) for name, n in re.findall(r"^(\w+)\s+(\d+)$", table, re.M)}


def test_the_dry_run_of_an_imported_recipe_plans_no_curation_or_pretraining(
    tmp_path: Path,
) -> None:
    project = tmp_path / "clone"
    project.mkdir()
    for name in ("Snakefile", "workflow", "recipes", "pyproject.toml"):
        source = REPO / name
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, project / name)
    init = {
        "repo": REPO_ID,
        "revision": REVISION,
        "snapshot": "snapshots/tiny-hybrid",  # project-relative; need not exist for a plan
        "files": {
            "config.json": "a" * 64,
            "model.safetensors": "b" * 64,
            "tokenizer.json": "c" * 64,
        },
    }
    recipe = {"extends": "tiny", "name": "tiny-imported", "init": init}
    (project / "recipes" / "tiny-imported.yaml").write_text(yaml.safe_dump(recipe))

    done = _dry_run(project, "recipes/tiny-imported.yaml")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    counts = _job_counts(done.stdout)
    for stage in ("import", "reasoning", "sft", "rl", "report"):
        assert counts.get(stage) == 1, (stage, counts)
    assert counts.get("evaluate") == 3, counts  # base (the imported release), sft, rl
    replaced = {"pretrain", *ancestors("pretrain"), "acquire"}
    assert not replaced & set(counts), counts
    run = "runs/tiny-imported"
    assert f"--input pretrain={run}/import --input reasoning={run}/reasoning" in done.stdout
    assert f"--part base --input model={run}/import " in done.stdout
    # the recipe without init: still the whole chain (the same clone, the same workflow)
    plain = _dry_run(project, "recipes/tiny.yaml")
    assert plain.returncode == 0, plain.stderr[-3000:]
    assert {"acquire", "curate", "pretrain"} <= set(_job_counts(plain.stdout))
    assert "import" not in _job_counts(plain.stdout)


def test_the_import_module_is_in_no_other_stage_closure() -> None:
    """Adding the stage reruns nothing: no existing stage's code identity can see it."""
    for name, entry in STAGES.items():
        if name != "import":
            assert IMPORT_MODULE not in import_closure((entry.module, *CONTRACT_MODULES)), name
    assert stand_ins({"init": {"repo": "any"}}) == {"pretrain": "import"}


# ------------------------------------------------------------------------------------------
# The chain, for real: release -> import -> sft -> rl, then trace and certify.

ALIGN = {
    "resources": {"threads": 1},
    "sft": {
        "steps": 4,
        "lr": 2e-3,
        "batch_size": 4,
        "seq_length": 160,
        "data": {"n_train": 40, "n_heldout": 8, "min_steps": 1, "max_steps": 2, "max_value": 20},
    },
    "rl": {"steps": 1, "prompts_per_step": 2, "generations_per_prompt": 2, "max_new_tokens": 8},
}


@pytest.fixture(scope="module")
def imported_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("imported-run")
    loaded = tiny_recipe(ALIGN)
    reasoning_dir = make_reasoning(loaded, base / "reasoning")  # its view holds no init
    texts = [
        f"{r['question']} {r['thinking']} {r['answer']}" for r in read_split(reasoning_dir, "train")
    ]
    release = build_release(base / "snapshot", texts=texts)
    data = copy.deepcopy(loaded.data)
    data["init"] = {
        "repo": REPO_ID,
        "revision": REVISION,
        "files": pins(release),
        "snapshot": str(release),
    }
    recipe = Recipe(data=data, files=loaded.files)
    validate(recipe, PROJECT)
    dirs = {"import": base / "import"}
    run_stage("import", recipe, dirs["import"], {}, import_checkpoint.run, project=PROJECT)
    dirs["reasoning"] = reasoning_dir
    inputs = {"pretrain": dirs["import"], "reasoning": dirs["reasoning"]}  # as the workflow wires
    run_stage("sft", recipe, base / "sft", inputs, sft.run, project=PROJECT)
    inputs = {"sft": base / "sft", "reasoning": dirs["reasoning"]}
    run_stage("rl", recipe, base / "rl", inputs, rl.run, project=PROJECT)
    return {**dirs, "sft": base / "sft", "rl": base / "rl", "release": release}


def test_sft_trains_from_the_imported_release(imported_run: dict[str, Path]) -> None:
    from openrecipe.hashing import sha256_file
    from openrecipe.manifest import read_manifest

    manifest = read_manifest(imported_run["sft"])
    [base] = [i for i in manifest["inputs"] if i["name"] == "pretrain"]
    assert base["stage"] == "import"
    assert base["manifest_sha256"] == read_manifest(imported_run["import"])["manifest_sha256"]
    model = imported_run["sft"] / "model"
    # the release's tokenizer and chat template go on byte for byte; the weights were trained
    for name in ("tokenizer.json", "chat_template.jinja"):
        assert sha256_file(model / name) == sha256_file(imported_run["release"] / name)
    assert sha256_file(model / "model.safetensors") != sha256_file(
        imported_run["release"] / "model.safetensors"
    )


def test_trace_shows_the_release_as_a_raw_input(imported_run: dict[str, Path]) -> None:
    chain = trace(imported_run["rl"] / "model" / "model.safetensors")
    [release] = [s for s in raw_sources(chain) if s.get("kind") == "hf_model"]
    assert (release["repo"], release["revision"]) == (REPO_ID, REVISION)
    assert release["files"] == pins(imported_run["release"])
    text = format_tree(chain)
    assert f"{REPO_ID}: hf_model revision {REVISION}" in text
    assert f"revision={REVISION} files={len(release['files'])}" in text


def test_certify_counts_after_the_import_and_says_the_release_is_outside(
    imported_run: dict[str, Path],
) -> None:
    cert = certify("source=nonexistent", imported_run["rl"])
    assert cert["absent"] and set(cert["training"]) == {"sft", "rl"}
    assert cert["training"]["sft"]["tokens"] > 0
    imported = cert["imported"]
    assert (imported["repo"], imported["revision"], imported["certified"]) == (
        REPO_ID,
        REVISION,
        False,
    )
    text = render_markdown(cert)
    assert "ABSENT after the imported base" in text
    assert f"imported base: `{REPO_ID}`" in text and "NOT CERTIFIED" in text
    with pytest.raises(LineageError, match="outside what certify can certify"):
        certify("source=nonexistent", imported_run["import"])


def test_the_lock_names_the_release_files_as_dependencies(imported_run: dict[str, Path]) -> None:
    """SLSA provenance: the imported files are resolved dependencies (``hf://repo@rev/file``,
    pinned sha256, Hub URL), and the statement still agrees with the lock it carries."""
    from openrecipe.lineage.predicates import _lock_in, lock_statement
    from openrecipe.manifest import read_manifest

    project = imported_run["import"].parent
    manifest = read_manifest(imported_run["import"])
    lock = {
        "recipe": "x",
        "artifacts": {
            "import/manifest.json#manifest_sha256": manifest["manifest_sha256"],
            "runs/x/report.txt": "0" * 64,
        },
    }
    stmt = lock_statement(project, lock)
    deps = stmt["predicate"]["buildDefinition"]["resolvedDependencies"]
    pinned = {d["name"]: d["digest"]["sha256"] for d in deps if d["name"].startswith("hf://")}
    files = pins(imported_run["release"])
    assert pinned == {f"hf://{REPO_ID}@{REVISION}/{name}": sha for name, sha in files.items()}
    [config] = [d for d in deps if d["name"].endswith("/config.json")]
    assert config["uri"] == f"https://huggingface.co/{REPO_ID}/resolve/{REVISION}/config.json"
    assert _lock_in(stmt, "test") == lock
