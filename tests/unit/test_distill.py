"""Prune + distill (recipe ``derive:``, the ``distill`` stage): a child recipe derived from a
parent recipe's pretrained model, in a throwaway project with a tiny parent run.

The parent run is real stage output (``run_stage``): a ``pretrain`` directory with a random tiny
NemotronH and a trained BPE tokenizer, and a ``pack`` directory of fixed-length sequences."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from align_fixtures import train_tokenizer
from transformers import NemotronHForCausalLM

from openrecipe.data.indexed import optimal_dtype, write_indexed
from openrecipe.errors import RecipeError, StageInputError
from openrecipe.hashing import sha256_file
from openrecipe.lineage.trace import trace
from openrecipe.model.build import build_model, nemotronh_config
from openrecipe.recipe import load_recipe
from openrecipe.registry import STAGES, ancestors, stand_ins
from openrecipe.stage import StageContext, run_stage
from openrecipe.train import distill, prune
from openrecipe.train.derive_spec import pins

REPO = Path(__file__).resolve().parents[2]
SEQ = 32
PARENT = "tiny_parent"  # recipes/tiny.yaml with a 4-step pretrain on 32-token sequences
CHILD_MODEL = {"hybrid_override_pattern": "M-*M-", "hidden_size": 48, "intermediate_size": 96}
TEXTS = [f"sample {i}: the quick brown fox jumps over {i % 7} lazy dogs." for i in range(200)]


def _copy_project(root: Path) -> Path:
    root.mkdir()
    for name in ("Snakefile", "workflow", "recipes", "pyproject.toml"):
        source = REPO / name
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, root / name)
    return root


def _parent_runs(project: Path) -> dict[str, str]:
    """runs/tiny_parent/pretrain and .../pack as real stage outputs (the pack with the sidecar
    certify reads: sequence i holds document doc<i//3> of source austen or brown, by i's
    parity); {stage: manifest_sha256}."""
    parent = {
        "extends": "tiny",
        "name": PARENT,
        "pretrain": {"seq_length": SEQ, "micro_batch_size": 2, "steps": 4},
    }
    path = project / "recipes" / f"{PARENT}.yaml"
    path.write_text(yaml.safe_dump(parent), encoding="utf-8")
    recipe = load_recipe(path, project=project)
    tokenizer = train_tokenizer(TEXTS)

    def pretrain_body(ctx: StageContext) -> dict:
        ids = tokenizer.convert_tokens_to_ids
        config = nemotronh_config(
            recipe.get("model"),
            len(tokenizer),
            bos_id=ids("<s>"),
            eos_id=ids("</s>"),
            pad_id=ids("<pad>"),
        )
        build_model(config, seed=ctx.seed).save_pretrained(ctx.out / "model")
        tokenizer.save_pretrained(ctx.out / "model")
        return {}

    def pack_body(ctx: StageContext) -> dict:
        stream = [t for text in TEXTS for t in tokenizer(text)["input_ids"]]
        rows = [stream[i : i + SEQ + 1] for i in range(0, len(stream) - SEQ - 1, SEQ + 1)]
        write_indexed(ctx.out / "train", [np.asarray(r) for r in rows], optimal_dtype(400))
        with open(ctx.out / "sidecar.jsonl", "w", encoding="utf-8") as handle:
            for i in range(len(rows)):
                segment = [f"doc{i // 3}", _source(i), 0, SEQ + 1]
                handle.write(json.dumps({"phase": "p", "segments": [segment], "seq": i}) + "\n")
        return {}

    out = {}
    for stage, body in (("pretrain", pretrain_body), ("pack", pack_body)):
        manifest = run_stage(
            stage, recipe, project / "runs" / PARENT / stage, {}, body, project=project
        )
        out[stage] = manifest["manifest_sha256"]
    return out


def _source(sequence: int) -> str:
    return "austen" if sequence % 2 else "brown"


def _child_recipe(project: Path, name: str, shas: dict[str, str], **changes) -> Path:
    derive = {
        "parent": {"recipe": PARENT, "stage": "pretrain", "manifest_sha256": shas["pretrain"]},
        "data": {"stage": "pack", "manifest_sha256": shas["pack"]},
        "calibration_sequences": 8,
    }
    data = {
        "extends": "tiny",
        "name": name,
        "model": {**CHILD_MODEL, **changes.pop("model", {})},
        "pretrain": {
            "seq_length": SEQ,
            "micro_batch_size": 2,
            "steps": 4,
            "log_every": 1,
            "checkpoint_every": 1,
        },
        "derive": {**derive, **changes.pop("derive", {})},
    }
    path = project / "recipes" / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    project = _copy_project(tmp_path_factory.mktemp("distill") / "project")
    shas = _parent_runs(project)
    _child_recipe(project, "tiny_child", shas)
    return project, shas


def _inputs(project: Path) -> dict[str, Path]:
    return {
        "parent": project / "runs/tiny_parent/pretrain",
        "data": project / "runs/tiny_parent/pack",
    }


def _distill(project: Path, name: str, out: Path) -> dict:
    recipe = load_recipe(project / "recipes" / f"{name}.yaml", project=project)
    return run_stage("distill", recipe, out, _inputs(project), distill.run, project=project)


# ------------------------------------------------------------------------------------------
# pruning


def test_top_k_keeps_the_highest_scores_in_their_original_order() -> None:
    assert prune.top_k([0.1, 0.9, 0.5, 0.9, 0.2], 3) == [1, 2, 3]
    assert prune.top_k([1.0, 1.0, 1.0], 2) == [0, 1]  # ties: the lower index


def test_depth_pruning_drops_the_least_important_layer_that_spells_the_child() -> None:
    # 'M-M-' -> 'M-': keep (0,1), (0,3), (2,3); layer 1 is least important, so (2,3) wins
    assert prune.select_layers("M-M-", "M-", [0.5, 0.1, 0.6, 0.4]) == [2, 3]
    assert prune.select_layers("M-M-", "M-", [0.9, 0.8, 0.1, 0.1]) == [0, 1]
    assert prune.select_layers("M-M*", "M-M*", [0, 0, 0, 0]) == [0, 1, 2, 3]


def test_a_child_pattern_that_is_not_a_deletion_is_refused_by_name() -> None:
    with pytest.raises(prune.PruneError, match=r"'M\*-'.*'M-\*'.*layers deleted"):
        prune.select_layers("M-*", "M*-", [1.0, 1.0, 1.0])


def _tiny(model: dict | None = None) -> tuple[NemotronHForCausalLM, list[torch.Tensor]]:
    base = yaml.safe_load((REPO / "recipes" / "tiny.yaml").read_text())["model"]
    config = nemotronh_config({**base, **(model or {})}, 100)
    generator = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, 100, (2, 16), generator=generator) for _ in range(2)]
    return build_model(config, seed=3), batches


def test_pruning_to_the_parents_own_shape_returns_the_parents_weights() -> None:
    parent, batches = _tiny()
    importance = prune.measure(parent, batches)
    same = prune.prune(parent, parent.config, prune.plan(parent.config, parent.config, importance))
    theirs, mine = parent.state_dict(), same.state_dict()
    assert theirs.keys() == mine.keys()
    assert all(torch.equal(theirs[k], mine[k]) for k in theirs)


def test_the_pruned_model_has_the_child_configs_shapes_and_runs() -> None:
    parent, batches = _tiny()
    child_config = nemotronh_config(
        {**yaml.safe_load((REPO / "recipes" / "tiny.yaml").read_text())["model"], **CHILD_MODEL},
        100,
    )
    importance = prune.measure(parent, batches)
    keep = prune.plan(parent.config, child_config, importance)
    child = prune.prune(parent, child_config, keep)
    with torch.device("meta"):
        fresh = NemotronHForCausalLM(child_config)
    assert {k: v.shape for k, v in child.state_dict().items()} == {
        k: v.shape for k, v in fresh.state_dict().items()
    }
    assert child(input_ids=batches[0]).logits.shape == (2, 16, 100)
    # kept widths are the top scores of their axis
    assert keep.hidden == prune.top_k(importance.hidden, 48)
    mlp = next(iter(keep.mlp))
    assert keep.mlp[mlp] == prune.top_k(importance.mlp[mlp], 96)
    # and the kept hidden channels' weights are the parent's, sliced
    hidden = torch.tensor(keep.hidden)
    assert torch.equal(child.model.embeddings.weight, parent.model.embeddings.weight[:, hidden])


def test_a_child_with_other_head_counts_is_refused_by_field() -> None:
    parent, _ = _tiny()
    other, _ = _tiny({"mamba_num_heads": 2})
    importance = prune.Importance([0.0] * 6, [0.0] * 64, {}, {}, {})
    with pytest.raises(prune.PruneError, match="model.mamba_num_heads"):
        prune.plan(parent.config, other.config, importance)


# ------------------------------------------------------------------------------------------
# the stage


def test_distill_is_deterministic_and_records_the_parent_as_inputs(world, tmp_path) -> None:
    project, shas = world
    first = _distill(project, "tiny_child", project / "runs/tiny_child/distill")
    again = _distill(project, "tiny_child", project / "runs/tiny_child_again/distill")
    a, b = project / "runs/tiny_child/distill", project / "runs/tiny_child_again/distill"
    assert sha256_file(a / "model/model.safetensors") == sha256_file(b / "model/model.safetensors")
    assert first["manifest_sha256"] == again["manifest_sha256"]
    recorded = {
        i["name"]: (i["path"], i["manifest_sha256"]) for i in first["inputs"] if "stage" in i
    }
    assert recorded == {
        "parent": ("runs/tiny_parent/pretrain", shas["pretrain"]),
        "data": ("runs/tiny_parent/pack", shas["pack"]),
    }
    pruning = json.loads((a / "pruning.json").read_text())
    assert pruning["depth"]["kept"] == first["summary"]["kept_layers"]
    assert len(pruning["hidden"]["kept"]) == 48
    assert (a / "model/tokenizer.json").read_bytes() == (
        project / "runs/tiny_parent/pretrain/model/tokenizer.json"
    ).read_bytes()
    model = NemotronHForCausalLM.from_pretrained(a / "model")
    assert model.config.hybrid_override_pattern == "M-*M-"
    rows = [json.loads(x) for x in (a / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and all("kd_loss" in r for r in rows)
    # trace walks from the child into the parent recipe's runs
    node = trace(a / "model" / "model.safetensors")
    dirs = {i["name"]: i["node"]["dir"] for i in node["inputs"]}
    assert dirs == {"data": "runs/tiny_parent/pack", "parent": "runs/tiny_parent/pretrain"}


def test_a_killed_distill_resumes_to_the_same_bytes(world, monkeypatch) -> None:
    """In fp8 (emulated, with stochastic-rounding generators in the checkpoint), as the proxies."""
    project, shas = world
    path = _child_recipe(project, "tiny_fp8", shas)
    data = yaml.safe_load(path.read_text())
    data["pretrain"].update(precision="fp8", bf16_first_layers=1, bf16_last_layers=1)
    path.write_text(yaml.safe_dump(data))
    unbroken = project / "runs/tiny_fp8/distill"
    summary = _distill(project, "tiny_fp8", unbroken)["summary"]
    assert summary["precision"] == "fp8" and summary["precision_linears"] > 0
    out = project / "runs/tiny_fp8_killed/distill"
    real_save = distill.Resumable.maybe_save

    def save_then_die(self, done, steps, *args):
        real_save(self, done, steps, *args)
        if done == 2:
            raise KeyboardInterrupt("killed after the step-2 checkpoint")

    monkeypatch.setattr(distill.Resumable, "maybe_save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        _distill(project, "tiny_fp8", out)
    assert not (out / "manifest.json").exists()
    assert list((out.parent / ".distill.resume").glob("*/step-00000002"))
    monkeypatch.setattr(distill.Resumable, "maybe_save", real_save)
    manifest = _distill(project, "tiny_fp8", out)
    assert json.loads((out / "run_info.json").read_text())["resumed"]["step"] == 2
    assert sha256_file(out / "model/model.safetensors") == sha256_file(
        unbroken / "model/model.safetensors"
    )
    assert manifest["outputs"] == json.loads((unbroken / "manifest.json").read_text())["outputs"]


def test_a_pin_that_differs_from_the_parent_run_is_refused(world) -> None:
    project, shas = world
    _child_recipe(
        project,
        "tiny_badpin",
        shas,
        derive={"parent": {"recipe": PARENT, "stage": "pretrain", "manifest_sha256": "0" * 64}},
    )
    with pytest.raises(
        StageInputError, match=r"derive\.parent\.manifest_sha256: runs/tiny_parent/pretrain"
    ):
        _distill(project, "tiny_badpin", project / "runs/tiny_badpin/distill")
    assert not (project / "runs/tiny_badpin/distill").exists()


def test_a_missing_parent_run_and_a_bad_recipe_name_are_refused(world, tmp_path) -> None:
    project, shas = world
    with pytest.raises(RecipeError, match="derive.parent.recipe: 'nosuch': no recipe file"):
        pins({"parent": {"recipe": "nosuch"}, "data": {}}, project, "c")
    with pytest.raises(
        RecipeError, match=r"derive.parent.recipe: '\.\./tiny' is not a recipe name"
    ):
        pins({"parent": {"recipe": "../tiny"}, "data": {}}, project, "c")
    _child_recipe(
        project,
        "tiny_orphan",
        shas,
        derive={
            "parent": {
                "recipe": "default",
                "stage": "pretrain",
                "manifest_sha256": shas["pretrain"],
            }
        },
    )
    recipe = load_recipe(project / "recipes/tiny_orphan.yaml", project=project)
    inputs = {
        "parent": project / "runs/tiny_parent/pretrain",
        "data": project / "runs/tiny_parent/pack",
    }
    with pytest.raises(StageInputError, match="is not runs/default/pretrain"):
        run_stage(
            "distill",
            recipe,
            project / "runs/tiny_orphan/distill",
            inputs,
            distill.run,
            project=project,
        )
    done = _snakemake(project, "recipes/tiny_orphan.yaml")
    assert done.returncode != 0
    assert re.search(
        r"derive\.parent: runs/default/pretrain/manifest\.json does not exist; "
        r"run recipe default first: .*snakemake.*recipes/default\.yaml",
        done.stderr,
    ), done.stderr[-2000:]


def test_a_child_shape_the_parent_cannot_be_pruned_to_is_refused(world) -> None:
    project, shas = world
    _child_recipe(project, "tiny_reordered", shas, model={"hybrid_override_pattern": "M*-M-"})
    with pytest.raises(prune.PruneError, match="hybrid_override_pattern"):
        _distill(project, "tiny_reordered", project / "runs/tiny_reordered/distill")


# ------------------------------------------------------------------------------------------
# the workflow


def _snakemake(project: Path, recipe: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "-p", "--cores", "1", "--configfile", recipe],
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_registry_replaces_pretrain_and_its_ancestors_with_distill(world) -> None:
    project, _ = world
    recipe = load_recipe(project / "recipes/tiny_child.yaml", project=project)
    assert stand_ins(recipe.data) == {"pretrain": "distill"}
    assert STAGES["distill"].stands_in_for == "pretrain"
    assert {"pack", "tokenizer", "curate"} <= set(ancestors("pretrain"))


def test_the_dry_run_of_a_derived_recipe_plans_distill_and_no_curation(world) -> None:
    project, shas = world
    _child_recipe(project, "tiny_plan", shas)  # never run: every job is planned
    done = _snakemake(project, "recipes/tiny_plan.yaml")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = done.stdout.split("Job stats:", 1)[1].split("total", 1)[0]
    counts = {name: int(n) for name, n in re.findall(r"^(\w+)\s+(\d+)$", table, re.M)}
    assert counts.get("distill") == 1, counts
    assert not {"pretrain", "pack", "tokenizer", "curate", "blend", "acquire"} & set(counts)
    assert (
        "--input parent=runs/tiny_parent/pretrain --input data=runs/tiny_parent/pack" in done.stdout
    )
    assert re.search(r"-m openrecipe sft .*--input pretrain=runs/tiny_plan/distill", done.stdout)


def test_certify_counts_the_parents_pretraining_and_the_distillation(world) -> None:
    from openrecipe.lineage.certify import certify

    project, _ = world
    out = project / "runs/tiny_child/distill"
    if not out.is_dir():
        _distill(project, "tiny_child", out)
    cert = certify("source=austen", out)
    assert cert["checkpoint"]["stage"] == "distill"
    assert list(cert["training"]) == ["pretrain", "distill"]
    # the parent's pretraining: 4 steps x 2 sequences, every odd one austen
    assert cert["training"]["pretrain"]["matched_tokens"] == 4 * (SEQ + 1)
    # distillation: the same 8 sequences, plus each calibration sequence once more
    calibration = json.loads((out / "pruning.json").read_text())["calibration"]["sequences"]
    uses = list(range(8)) + calibration
    distilled = cert["training"]["distill"]
    assert distilled["tokens"] == len(uses) * (SEQ + 1)
    assert distilled["matched_tokens"] == sum(SEQ + 1 for i in uses if _source(i) == "austen")
    assert "runs/tiny_parent/pack/sidecar.jsonl" in cert["relied_on"]
    assert "runs/tiny_child/distill/pruning.json" in cert["relied_on"]
    assert not cert["absent"]


@pytest.mark.parametrize(
    ("child", "parent"),
    [("nemotron_nano_9b_v2", "nemotron_nano_12b_v2_base"), ("nemotron_h_47b", "nemotron_h_56b")],
)
def test_the_full_size_children_are_prunable_from_their_parents(child: str, parent: str) -> None:
    """The published shapes: the child's pattern is a deletion of the parent's, its widths are
    no larger and every head count is shared, so distill (and a ModelOpt plan) can derive it."""
    configs = {}
    for name in (child, parent):
        model = load_recipe(REPO / "recipes" / f"{name}.yaml", project=REPO).data["model"]
        configs[name] = nemotronh_config(model, 131072)
    prune.check_shared(configs[parent], configs[child])
    parent_pattern = configs[parent].hybrid_override_pattern
    child_pattern = configs[child].hybrid_override_pattern
    kept = prune.select_layers(parent_pattern, child_pattern, [0.0] * len(parent_pattern))
    assert "".join(parent_pattern[i] for i in kept) == child_pattern
