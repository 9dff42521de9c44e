"""A named variant shares, by content, exactly the stages whose view and whole upstream are the
original's (openrecipe.lineage.share), on a hand-built stage chain."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openrecipe.lineage.plan import PlannedJob
from openrecipe.lineage.share import choose_shared, link_shared
from openrecipe.manifest import verify_stage_dir
from openrecipe.recipe import load_recipe
from openrecipe.stage import run_stage

V = "tiny-v"


def _body(name: str):
    def body(ctx) -> dict:
        (ctx.out / "sub").mkdir()
        (ctx.out / "sub" / f"{name}.json").write_text(json.dumps({"stage": name}))
        return {}

    return body


@pytest.fixture
def original(project: Path):
    """runs/tiny/{blend,pack,pretrain}, each reading the one before."""
    recipe = load_recipe(project / "recipes" / "tiny.yaml", project=project)
    run = project / "runs" / "tiny"
    previous = {}
    for stage in ("blend", "pack", "pretrain"):
        run_stage(stage, recipe, run / stage, previous, _body(stage), project=project)
        previous = {stage: run / stage}
    return recipe


def _jobs(recipe, **hashes) -> list[PlannedJob]:
    """The variant's planned jobs, with the original's view hashes unless given."""
    return [
        PlannedJob("blend", f"runs/{V}/blend", {}, hashes.get("blend", recipe.view_hash("blend"))),
        PlannedJob(
            "pack", f"runs/{V}/pack", {"blend": f"runs/{V}/blend"}, recipe.view_hash("pack")
        ),
        PlannedJob(
            "pretrain",
            f"runs/{V}/pretrain",
            {"pack": f"runs/{V}/pack"},
            hashes.get("pretrain", recipe.view_hash("pretrain")),
        ),
    ]


def test_shares_the_unchanged_upstream_and_links_it_by_content(project: Path, original) -> None:
    shared = choose_shared(project, "tiny", V, _jobs(original, pretrain="0" * 64))
    assert [s.rel for s in shared] == ["blend", "pack"]
    link_shared(project, V, shared)
    for stage in ("blend", "pack"):
        ours, theirs = project / "runs" / V / stage, project / "runs" / "tiny" / stage
        assert (ours / "manifest.json").read_bytes() == (theirs / "manifest.json").read_bytes()
        data = f"sub/{stage}.json"
        assert (ours / data).stat().st_ino == (theirs / data).stat().st_ino  # hardlinked
        # the manifest is its own file: Snakemake's touch of the variant leaves the original alone
        assert (ours / "manifest.json").stat().st_ino != (theirs / "manifest.json").stat().st_ino
        assert verify_stage_dir(ours) == []
    assert not (project / "runs" / V / "pretrain").exists()
    assert not list((project / "runs" / V).glob(".*"))  # no temporary dirs left


def test_a_changed_stage_shares_nothing_downstream(project: Path, original) -> None:
    assert choose_shared(project, "tiny", V, _jobs(original, blend="0" * 64)) == []


def test_other_inputs_or_altered_outputs_are_not_shared(project: Path, original) -> None:
    jobs = _jobs(original, pretrain="0" * 64)
    renamed = PlannedJob("pack", jobs[1].out, {"docs": f"runs/{V}/blend"}, jobs[1].config_hash)
    assert [s.rel for s in choose_shared(project, "tiny", V, [jobs[0], renamed])] == ["blend"]
    (project / "runs" / "tiny" / "blend" / "sub" / "blend.json").write_text("{}")
    assert choose_shared(project, "tiny", V, jobs) == []


def test_an_input_already_in_the_variant_counts_when_identical(project: Path, original) -> None:
    jobs = _jobs(original, pretrain="0" * 64)
    link_shared(project, V, choose_shared(project, "tiny", V, jobs[:1]))
    # blend already sits in the variant (byte-identical), pack is planned: pack is shared
    assert [s.rel for s in choose_shared(project, "tiny", V, jobs[1:])] == ["pack"]
