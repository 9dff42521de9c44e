"""tokenizer_import: a released tokenizer (built here: a tiny BPE saved with save_pretrained and
pinned by hash) stands in for the trained one. The workflow plans it in place of ``tokenizer``
while curation and the blend stay (pack reads the blend), runs it through its Snakemake rule,
and pack packs with what it wrote; a hash mismatch, a missing pad token and an offline download
are refused by name."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from align_fixtures import train_tokenizer
from test_pack import ctx as pack_ctx
from test_pack import make_blend

from openrecipe.data import pack, tokenizer_import
from openrecipe.errors import StageInputError
from openrecipe.recipe import load_recipe
from openrecipe.stage import run_stage

REPO = Path(__file__).resolve().parents[2]
REPO_ID = "example-org/tiny-tokenizer"
REVISION = "89abcdef0123456789abcdef0123456789abcdef"
SNAPSHOT = "snapshots/tiny-tokenizer"
TEXTS = [
    f"river stone light market garden {i} window letter orange silver winter" for i in range(50)
]


def save_release(directory: Path) -> dict[str, str]:
    """The released tokenizer as `hf download --local-dir` leaves it; {file: sha256}."""
    train_tokenizer(TEXTS, vocab_size=400).save_pretrained(directory)
    (directory / ".cache").mkdir()
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.iterdir())
        if p.is_file()
    }


@pytest.fixture
def project(tmp_path: Path) -> Path:
    clone = tmp_path / "clone"
    clone.mkdir()
    for name in ("Snakefile", "workflow", "recipes", "pyproject.toml"):
        source = REPO / name
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, clone / name)
    return clone


def write_recipe(project: Path, pins: dict[str, str], name: str = "tiny-tok") -> Path:
    pretrained = {"repo": REPO_ID, "revision": REVISION, "files": pins, "snapshot": SNAPSHOT}
    recipe = {"extends": "tiny", "name": name, "tokenizer": {"pretrained": pretrained}}
    path = project / "recipes" / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def snakemake(project: Path, recipe: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "1", *args, "--configfile", recipe],
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )


def job_counts(output: str) -> dict[str, int]:
    table = output.split("Job stats:", 1)[1].split("total", 1)[0]
    return {name: int(n) for name, n in re.findall(r"^(\w+)\s+(\d+)$", table, re.M)}


def test_the_plan_replaces_only_the_tokenizer_and_pack_and_pretrain_read_the_import(
    project: Path,
) -> None:
    pins = save_release(project / SNAPSHOT)
    write_recipe(project, pins)
    plan = snakemake(project, "recipes/tiny-tok.yaml", "-n", "-p")
    assert plan.returncode == 0, plan.stdout[-3000:] + plan.stderr[-3000:]
    counts = job_counts(plan.stdout)
    assert counts.get("tokenizer_import") == 1 and "tokenizer" not in counts, counts
    for stage in ("curate", "decontam", "blend", "pack", "pretrain", "sft", "report"):
        assert counts.get(stage) == 1, (stage, counts)
    run = "runs/tiny-tok"
    assert f"--input blend={run}/blend --input tokenizer={run}/tokenizer_import " in plan.stdout
    assert f"--input pack={run}/pack --input tokenizer={run}/tokenizer_import " in plan.stdout
    assert f"--input tokenizer={run}/tokenizer " not in plan.stdout
    # the report still reads curation and the pack (only the tokenizer left the run) and
    # writes the data card from them
    assert f"--input curate={run}/curate " in plan.stdout
    assert f"--input tokenizer_import={run}/tokenizer_import " in plan.stdout
    assert "results/tiny-tok/data_card.md" in plan.stdout


def test_the_rule_copies_the_release_and_pack_packs_with_it(project: Path) -> None:
    pins = save_release(project / SNAPSHOT)
    write_recipe(project, pins)
    target = "runs/tiny-tok/tokenizer_import/manifest.json"
    done = snakemake(project, "recipes/tiny-tok.yaml", target)
    assert done.returncode == 0, done.stderr[-3000:]
    out = project / "runs/tiny-tok/tokenizer_import"
    for name, sha in pins.items():  # the tokenizer stage's layout: the files at the top
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == sha
    manifest = json.loads((out / "manifest.json").read_text())
    summary = manifest["summary"]
    assert summary["special_tokens"]["eos"]["token"] == "</s>"
    assert summary["chat_template"] and all(summary["think_tokens"].values())
    (external,) = [i for i in manifest["inputs"] if i.get("kind") == "hf_tokenizer"]
    assert external["files"] == pins and external["revision"] == REVISION

    # pack, for real, with the imported tokenizer
    blend = make_blend(project / "packing")
    packed = project / "packing" / "pack"
    pack.run(pack_ctx("pack", project, packed, {"blend": blend, "tokenizer": out}))
    tokens = np.fromfile(packed / "train.bin", dtype=np.uint16)
    eos = summary["special_tokens"]["eos"]["id"]
    assert tokens.size > 0 and int(tokens.max()) < summary["vocab_size"]
    assert eos in set(tokens.tolist())  # documents end with the release's eos


def run_import(project: Path, recipe_path: Path, out: Path) -> dict:
    recipe = load_recipe(recipe_path, project=project)
    return run_stage("tokenizer_import", recipe, out, {}, tokenizer_import.run, project=project)


def test_a_hash_mismatch_and_a_missing_pad_token_are_refused_by_name(project: Path) -> None:
    pins = save_release(project / SNAPSHOT)
    out = project / "runs/tiny-tok/tokenizer_import"
    config = project / SNAPSHOT / "tokenizer_config.json"
    original = config.read_bytes()
    config.write_bytes(original + b" ")
    found = hashlib.sha256(config.read_bytes()).hexdigest()
    with pytest.raises(StageInputError, match=rf"tokenizer_config.json: sha256 {found} does not"):
        run_import(project, write_recipe(project, pins), out)
    assert not out.exists() and not list(out.parent.glob(".tokenizer_import.tmp-*"))
    # a release without a pad token, pinned as it is
    settings = json.loads(original)
    settings["pad_token"] = None
    config.write_text(json.dumps(settings))
    special = project / SNAPSHOT / "special_tokens_map.json"
    if special.exists():
        tokens = json.loads(special.read_text())
        tokens.pop("pad_token", None)
        special.write_text(json.dumps(tokens))
    repinned = {
        name: hashlib.sha256((project / SNAPSHOT / name).read_bytes()).hexdigest() for name in pins
    }
    with pytest.raises(StageInputError, match="the tokenizer has no pad token"):
        run_import(project, write_recipe(project, repinned), out)


def test_an_absent_snapshot_is_refused_offline(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pins = {"tokenizer.json": "a" * 64}
    with pytest.raises(StageInputError, match="does not exist and HF_HUB_OFFLINE is set"):
        run_import(project, write_recipe(project, pins), project / "runs/tiny-tok/tokenizer_import")


def test_tokenizer_import_is_in_no_other_stage_closure() -> None:
    from openrecipe.codeid import CONTRACT_MODULES, import_closure
    from openrecipe.registry import STAGES

    for name, entry in STAGES.items():
        closure = import_closure((entry.module, *CONTRACT_MODULES))
        if name != "tokenizer_import":
            assert "openrecipe.data.tokenizer_import" not in closure, name
        else:
            others = {s.module for s in STAGES.values()} - {entry.module}
            assert not others & set(closure), others & set(closure)


def test_the_lock_names_the_released_tokenizer_files_as_dependencies(project: Path) -> None:
    from openrecipe.lineage.predicates import MANIFEST_KEY, _imported_dependencies

    pins = save_release(project / SNAPSHOT)
    run_import(project, write_recipe(project, pins), project / "runs/tiny-tok/tokenizer_import")
    lock = {"artifacts": {f"runs/tiny-tok/tokenizer_import{MANIFEST_KEY}": "x"}}
    deps = _imported_dependencies(project, lock)
    assert {d["name"]: d["digest"]["sha256"] for d in deps} == {
        f"hf://{REPO_ID}@{REVISION}/{name}": sha for name, sha in pins.items()
    }


def test_with_init_too_nothing_reads_the_tokenizer_so_tokenizer_import_does_not_run(
    project: Path,
) -> None:
    recipe = yaml.safe_load(write_recipe(project, {"tokenizer.json": "a" * 64}).read_text())
    recipe["name"] = "tiny-tok-init"
    recipe["init"] = {
        "repo": "example-org/tiny-hybrid",
        "revision": REVISION,
        "snapshot": "snapshots/tiny-hybrid",
        "files": {"config.json": "a" * 64, "model.safetensors": "b" * 64},
    }
    (project / "recipes" / "tiny-tok-init.yaml").write_text(yaml.safe_dump(recipe))
    plan = snakemake(project, "recipes/tiny-tok-init.yaml", "-n")
    assert plan.returncode == 0, plan.stdout[-3000:] + plan.stderr[-3000:]
    counts = job_counts(plan.stdout)
    assert counts.get("import") == 1 and "tokenizer_import" not in counts, counts
    assert not {"tokenizer", "pack", "blend", "curate"} & set(counts), counts
