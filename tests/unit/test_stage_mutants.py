"""The stage contract beyond tests/unit/test_stage.py (mutation campaign, issue 21): what a
body sees (config subtrees, inputs, a derived seed, deterministic torch), what the manifest
records about where things came from, and what run_info.json holds."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from openrecipe.errors import StageInputError
from openrecipe.hashing import derive_seed
from openrecipe.recipe import load_recipe
from openrecipe.stage import StageContext, run_stage, seed_everything


@pytest.fixture
def recipe(project: Path):
    return load_recipe(project / "recipes" / "tiny.yaml", project=project)


@pytest.fixture
def torch_state():
    """seed_everything sets process-wide torch state: put it back for the other tests."""
    deterministic, threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    cublas = os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    yield
    torch.use_deterministic_algorithms(deterministic)
    torch.set_num_threads(threads)
    os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    if cublas is not None:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = cublas


def test_seed_everything_seeds_every_generator_and_makes_torch_deterministic(torch_state) -> None:
    seed = 2**32 + 77  # numpy takes the seed modulo 2**32
    torch.use_deterministic_algorithms(False)
    seed_everything(seed, 1)
    drawn = (random.random(), np.random.random(), torch.rand(1).item())
    assert drawn == (
        random.Random(seed).random(),
        np.random.RandomState(77).random_sample(),
        torch.rand(1, generator=torch.Generator().manual_seed(seed)).item(),
    )
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.get_num_threads() == 1
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    seed_everything(seed, 2)
    assert torch.get_num_threads() == 2


def test_a_body_reads_its_view_and_subtrees_and_gets_the_derived_seed(project: Path, recipe):
    seen = {}

    def body(ctx: StageContext) -> dict:
        seen["steps"] = ctx.cfg("sft.steps")
        seen["seed"] = ctx.seed
        seen["draw"] = random.random()
        with pytest.raises(KeyError) as missing:
            ctx.cfg("sft.nonexistent")
        seen["missing"] = missing.value.args[0]
        (ctx.out / "x.txt").write_text("x")
        return {}

    run_stage("sft", recipe, project / "runs" / "a", {}, body, project=project)
    seed = derive_seed(recipe.data["seed"], "sft")
    assert seen["steps"] == recipe.data["sft"]["steps"]
    assert seen["seed"] == seed and seen["draw"] == random.Random(seed).random()
    assert seen["missing"].startswith("sft.nonexistent is not in the sft stage's view [")
    assert "'sft.steps'" in seen["missing"]

    def subtree(ctx: StageContext) -> dict:
        seen["n_train"] = ctx.cfg("sft.data.n_train")
        seen["data"] = ctx.cfg("sft.data")
        with pytest.raises(KeyError):
            ctx.cfg("sft.data.nonexistent")
        (ctx.out / "x.txt").write_text("x")
        return {}

    run_stage("reasoning", recipe, project / "runs" / "b", {}, subtree, project=project)
    assert seen["n_train"] == recipe.data["sft"]["data"]["n_train"]
    assert seen["data"] == recipe.data["sft"]["data"]


def test_an_input_not_given_is_named(project: Path, recipe) -> None:
    def body(ctx: StageContext) -> dict:
        ctx.input("upstream")
        return {}

    with pytest.raises(StageInputError) as refused:
        run_stage("sft", recipe, project / "runs" / "a", {}, body, project=project)
    assert str(refused.value) == (
        "stage sft: input 'upstream' was not given (--input upstream=DIR)"
    )
    assert not (project / "runs" / "a").exists()


def test_the_manifest_records_part_inputs_and_origins_relative_to_the_project(project, recipe):
    up = project / "runs" / "up"

    def write(ctx: StageContext) -> dict:
        (ctx.out / "x.txt").write_text(ctx.part or "none")
        return {
            "n": 1,
            "run_info": {"resumed": True},
            "external_inputs": [{"name": "ext", "sha256": "0" * 64}],
        }

    first = run_stage("reasoning", recipe, up, {}, write, project=project)
    assert first["summary"] == {"n": 1}  # volatile facts and external inputs are taken out
    assert first["inputs"] == [{"name": "ext", "sha256": "0" * 64}]
    assert first["part"] is None and first["stage"] == "reasoning"
    assert first["recipe"] == recipe.name and first["schema_version"] == 1
    info = json.loads((up / "run_info.json").read_text())
    assert info["resumed"] is True
    assert info["host"] == socket.gethostname() and info["pid"] == os.getpid()
    assert 0 <= info["wall_seconds"] < 600 and info["started_utc"].endswith("+00:00")

    down = project / "runs" / "down"
    extra = [{"name": "extra", "sha256": "1" * 64}]
    second = run_stage(
        "sft", recipe, down, {"up": up}, write, project=project, part="p1", extra_inputs=extra
    )
    assert second["part"] == "p1"
    assert (down / "x.txt").read_text() == "p1"
    assert second["seed"] == derive_seed(recipe.data["seed"], "sft", "p1")
    assert second["config_view"] == recipe.view("sft", "p1")
    assert [i["name"] for i in second["inputs"]] == ["up", "extra", "ext"]
    assert second["inputs"][0]["path"] == "runs/up"  # not the absolute path of the checkout
    assert second["inputs"][0]["stage"] == "reasoning"
    origins = second["config_origins"]
    assert sorted(origins) == sorted(second["config_view"])
    assert origins["sft.steps"].startswith("recipes/tiny.yaml:")


def test_cfg_walks_a_subtree_several_levels_down(tmp_path: Path) -> None:
    ctx = StageContext(
        stage="sft",
        recipe=None,
        config={"sft.data": {"mix": {"code": {"weight": 0.25}}}},
        config_hash="0" * 64,
        seed=1,
        inputs={},
        out=tmp_path,
        project=tmp_path,
    )
    assert ctx.cfg("sft.data.mix.code.weight") == 0.25
    assert ctx.cfg("sft.data.mix") == {"code": {"weight": 0.25}}
    with pytest.raises(KeyError):
        ctx.cfg("sft.data.mix.text.weight")


def test_rerunning_a_stage_replaces_its_output_whole(project: Path, recipe) -> None:
    """A second run into the same --out swaps the new directory in and removes the old one: no
    file of the first run survives, and no .old- directory is left beside it."""
    out = project / "runs" / "tiny" / "reasoning"

    def first(ctx: StageContext) -> dict:
        (ctx.out / "first.txt").write_text("1")
        return {}

    def second(ctx: StageContext) -> dict:
        (ctx.out / "second.txt").write_text("2")
        return {}

    run_stage("reasoning", recipe, out, {}, first, project=project)
    run_stage("reasoning", recipe, out, {}, second, project=project)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "run_info.json", "second.txt"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["reasoning"]


def test_an_input_outside_the_project_keeps_its_absolute_path(
    project: Path, recipe, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Only paths inside the project are made project-relative; another path is recorded as
    it is (cutting a prefix off it would name a different directory)."""
    outside = tmp_path_factory.mktemp("elsewhere") / "up"

    def write(ctx: StageContext) -> dict:
        (ctx.out / "x.txt").write_text("x")
        return {}

    run_stage("reasoning", recipe, outside, {}, write, project=project)
    manifest = run_stage(
        "sft", recipe, project / "runs" / "down", {"up": outside}, write, project=project
    )
    assert manifest["inputs"][0]["path"] == outside.as_posix()


def test_leftovers_of_dead_runs_are_removed_and_those_of_live_ones_kept(tmp_path: Path) -> None:
    """Beside --out, a .tmp-/.old- folder of this process or of a PID that cannot be alive (dead,
    or past any PID) is removed; one of a live process (the parent here) or of another stage
    stays."""
    from openrecipe.stage import remove_leftovers

    # the live process is a child of the test's own (never a process the test did not start:
    # a mutated liveness probe may signal it)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        dead, huge = 2**22 + 4321, 2**70
        gone = [f".stage.tmp-{os.getpid()}", f".stage.tmp-{dead}", f".stage.old-{huge}"]
        kept = [f".stage.old-{live.pid}", f".other.tmp-{dead}", ".stage.tmp-x", "stage"]
        for name in gone + kept:
            (tmp_path / name).mkdir()
        (tmp_path / f".stage.old-{dead + 1}").write_text("a file, not a folder")
        gone.append(f".stage.old-{dead + 1}")
        assert sorted(remove_leftovers(tmp_path / "stage")) == sorted(gone)
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)
        # probing a PID for life (signal 0) never signals the process itself
        with pytest.raises(subprocess.TimeoutExpired):
            live.wait(timeout=1)
    finally:
        live.kill()
        live.wait()
    assert remove_leftovers(tmp_path / "missing" / "stage") == []


def test_out_may_not_be_the_project_a_parent_of_it_or_the_root(project: Path, recipe) -> None:
    from openrecipe.errors import RecipeError

    def write(ctx: StageContext) -> dict:
        (ctx.out / "x.txt").write_text("x")
        return {}

    for out in (project, project.parent, Path("/")):
        with pytest.raises(RecipeError) as refused:
            run_stage("reasoning", recipe, out, {}, write, project=project)
        assert str(refused.value) == (
            f"--out {out}: would replace {out.resolve()}, which holds the project; refused"
        )
    assert (project / "Snakefile").is_file()


def test_a_per_item_stage_sees_and_hashes_only_its_item(project: Path, recipe) -> None:
    """acquire --part brown sees only brown's source entry, and its config hash is that of
    this narrowed view: the workflow's expected hash for the part passes, the whole stage's
    hash is refused as stale (naming both 12-digit prefixes)."""
    seen = {}

    def body(ctx: StageContext) -> dict:
        seen["config"] = ctx.config
        (ctx.out / "x.txt").write_text("x")
        return {}

    narrowed = recipe.view_hash("acquire", "brown")
    assert narrowed != recipe.view_hash("acquire")
    out = project / "runs" / "acq"
    manifest = run_stage(
        "acquire", recipe, out, {}, body, project=project, part="brown", expect_config_hash=narrowed
    )
    assert [s["name"] for s in seen["config"]["data.sources"]] == ["brown"]
    assert manifest["config_hash"] == narrowed
    whole = recipe.view_hash("acquire")
    with pytest.raises(StageInputError) as stale:
        run_stage(
            "acquire",
            recipe,
            out,
            {},
            body,
            project=project,
            part="brown",
            expect_config_hash=whole,
        )
    assert str(stale.value) == (
        f"stage acquire: config view hash {narrowed[:12]}… differs from the workflow's "
        f"{whole[:12]}…; the resolved recipe is stale, rerun snakemake"
    )


def test_a_body_runs_with_the_recipes_threads_recipe_and_config_hash(
    project: Path, recipe, torch_state
) -> None:
    """The body runs with torch set to the recipe's thread count (tiny: 1, not the fallback
    2) and sees the recipe and the hash of its own view (resume keys are built from it)."""
    seen = {}

    def body(ctx: StageContext) -> dict:
        seen["threads"] = torch.get_num_threads()
        seen["recipe"] = ctx.recipe
        seen["config_hash"] = ctx.config_hash
        seen["project"] = ctx.project
        (ctx.out / "x.txt").write_text("x")
        return {}

    assert recipe.get("resources.threads") == 1
    torch.set_num_threads(2)
    manifest = run_stage("sft", recipe, project / "runs" / "a", {}, body, project=project)
    assert seen["threads"] == 1
    assert seen["recipe"] is recipe and seen["project"] == project
    assert seen["config_hash"] == manifest["config_hash"] == recipe.view_hash("sft")


def test_a_failing_body_raises_its_own_error_even_if_its_folder_is_gone(project, recipe):
    """The cleanup of a failed body never hides the body's error (here the body removed its
    temporary folder itself before failing)."""
    import shutil

    def body(ctx: StageContext) -> dict:
        shutil.rmtree(ctx.out)
        raise RuntimeError("the body's own error")

    with pytest.raises(RuntimeError, match="the body's own error"):
        run_stage("sft", recipe, project / "runs" / "a", {}, body, project=project)
    assert not (project / "runs" / "a").exists()
