"""The stage contract: deterministic manifests, verified inputs, atomic outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openrecipe.errors import StageInputError
from openrecipe.lineage.trace import trace
from openrecipe.lineage.verify import verify_tree
from openrecipe.manifest import read_manifest, verify_stage_dir
from openrecipe.recipe import load_recipe
from openrecipe.stage import StageContext, run_stage


def write_numbers(ctx: StageContext) -> dict:
    """A real (if small) stage body: writes seeded numbers and a derived file."""
    import torch

    values = torch.rand(8, generator=torch.Generator().manual_seed(ctx.seed)).tolist()
    (ctx.out / "values.json").write_text(json.dumps(values))
    (ctx.out / "sub").mkdir()
    (ctx.out / "sub" / "sum.txt").write_text(f"{sum(values):.6f}\n")
    return {"n": len(values)}


def consume(ctx: StageContext) -> dict:
    values = json.loads((ctx.input("upstream") / "values.json").read_text())
    (ctx.out / "max.txt").write_text(f"{max(values):.6f}\n")
    return {}


def fail(ctx: StageContext) -> dict:
    (ctx.out / "partial.bin").write_bytes(b"half")
    raise RuntimeError("killed mid-write")


@pytest.fixture
def recipe(project: Path):
    return load_recipe(project / "recipes" / "tiny.yaml", project=project)


def test_manifest_is_deterministic_and_volatile_fields_apart(project: Path, recipe) -> None:
    a = run_stage("reasoning", recipe, project / "runs" / "a", {}, write_numbers, project=project)
    b = run_stage("reasoning", recipe, project / "runs" / "b", {}, write_numbers, project=project)
    assert a == b
    assert (project / "runs" / "a" / "manifest.json").read_bytes() == (
        project / "runs" / "b" / "manifest.json"
    ).read_bytes()
    assert set(a["outputs"]) == {"values.json", "sub/sum.txt"}
    info = json.loads((project / "runs" / "a" / "run_info.json").read_text())
    assert "wall_seconds" in info and "wall_seconds" not in json.dumps(a)
    assert a["config_view"] == recipe.view("reasoning") and a["seed"] == b["seed"]


def test_tampered_input_is_refused(project: Path, recipe) -> None:
    up = project / "runs" / "up"
    run_stage("reasoning", recipe, up, {}, write_numbers, project=project)
    run_stage("sft", recipe, project / "runs" / "down", {"upstream": up}, consume, project=project)
    with (up / "values.json").open("r+b") as handle:
        first = handle.read(1)
        handle.seek(0)
        handle.write(bytes([first[0] ^ 0x01]))
    with pytest.raises(StageInputError, match=r"values\.json: sha256 .* does not match manifest"):
        run_stage(
            "sft", recipe, project / "runs" / "down2", {"upstream": up}, consume, project=project
        )
    problems, _ = verify_tree(project / "runs")
    assert any("values.json" in p for p in problems)


def test_missing_or_altered_manifest_is_refused(project: Path, recipe) -> None:
    up = project / "runs" / "up"
    run_stage("reasoning", recipe, up, {}, write_numbers, project=project)
    manifest = json.loads((up / "manifest.json").read_text())
    manifest["seed"] += 1
    (up / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StageInputError, match="manifest was altered"):
        run_stage(
            "sft", recipe, project / "runs" / "down", {"upstream": up}, consume, project=project
        )
    (up / "manifest.json").unlink()
    with pytest.raises(StageInputError, match="not a finished stage output"):
        run_stage(
            "sft", recipe, project / "runs" / "down", {"upstream": up}, consume, project=project
        )


def test_unexpected_file_is_reported(project: Path, recipe) -> None:
    up = project / "runs" / "up"
    run_stage("reasoning", recipe, up, {}, write_numbers, project=project)
    (up / "extra.txt").write_text("smuggled")
    assert any("unexpected file" in p for p in verify_stage_dir(up))


def test_failed_stage_keeps_previous_output_and_leaves_no_partial(project: Path, recipe) -> None:
    out = project / "runs" / "s"
    first = run_stage("reasoning", recipe, out, {}, write_numbers, project=project)
    with pytest.raises(RuntimeError):
        run_stage("reasoning", recipe, out, {}, fail, project=project)
    assert read_manifest(out) == first
    assert not (out / "partial.bin").exists()
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []


def test_stale_config_hash_is_refused(project: Path, recipe) -> None:
    with pytest.raises(StageInputError, match="resolved recipe is stale"):
        run_stage(
            "reasoning",
            recipe,
            project / "runs" / "x",
            {},
            write_numbers,
            project=project,
            expect_config_hash="0" * 64,
        )


def test_trace_follows_inputs_and_records_origins(project: Path, recipe) -> None:
    up = project / "runs" / "up"
    run_stage("reasoning", recipe, up, {}, write_numbers, project=project)
    run_stage("sft", recipe, project / "runs" / "down", {"upstream": up}, consume, project=project)
    node = trace(project / "runs" / "down" / "max.txt")
    assert node["stage"] == "sft" and node["artifact"]["path"] == "max.txt"
    assert node["inputs"][0]["node"]["stage"] == "reasoning"
    assert node["config_origins"]["sft.steps"].startswith("recipes/tiny.yaml:")


def test_manifest_records_the_stage_code_and_run_info_the_commit(project: Path, recipe) -> None:
    from openrecipe.codeid import stage_code_identity

    manifest = run_stage(
        "reasoning", recipe, project / "runs" / "a", {}, write_numbers, project=project
    )
    assert manifest["code"] == stage_code_identity("reasoning")
    assert "openrecipe.data.reasoning" in manifest["code"]["modules"]
    assert "git_commit" not in json.dumps(manifest)  # a commit would re-address every stage
    info = json.loads((project / "runs" / "a" / "run_info.json").read_text())
    assert set(info["git"]) == {"git_commit", "uncommitted_diff_sha256", "packages"}
