"""The stage contract beyond tests/unit/test_stage.py (mutation campaign, issue 21): what a
body sees (config subtrees, inputs, a derived seed, deterministic torch), what the manifest
records about where things came from, and what run_info.json holds."""

from __future__ import annotations

import json
import os
import random
import socket
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
