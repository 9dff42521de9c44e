"""``openrecipe rerun``: hostile arguments, refusals that write nothing, a dry run that writes
nothing (Snakemake's own dry run included), named variants and their checks."""

from __future__ import annotations

import hashlib
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from openrecipe.errors import RecipeError
from openrecipe.lineage.change import file_text
from openrecipe.lineage.plan import planned_jobs
from openrecipe.lineage.rerun import rerun
from openrecipe.recipe import load_recipe

REPO = Path(__file__).resolve().parents[2]


def _rerun(project: Path, *args: str, dry_run: bool = True, **kw):
    """rerun() as the CLI calls it: argv is the command line after ``rerun``."""
    excludes = [a.split("=", 1)[1] for a in args if a.startswith("--exclude=")]
    weights = [a.split("=", 1)[1] for a in args if a.startswith("--weight=")]
    sets = [a.split("=", 1)[1] for a in args if a.startswith("--set=")]
    return rerun(
        project, "tiny", excludes, weights, sets, dry_run=dry_run, argv=["tiny", *args], **kw
    )


def _snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``root`` (Snakemake's own dry-run cache aside): content hash and mtime."""
    return {
        p.relative_to(root).as_posix(): (
            hashlib.sha256(p.read_bytes()).hexdigest(),
            p.stat().st_mtime_ns,
        )
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".snakemake" not in p.relative_to(root).parts
    }


@pytest.fixture
def workflow_project(project: Path) -> Path:
    """The throwaway project with the real Snakefile and rules (a dry run can plan in it)."""
    shutil.copy2(REPO / "Snakefile", project / "Snakefile")
    shutil.rmtree(project / "workflow")
    shutil.copytree(REPO / "workflow", project / "workflow")
    return project


@pytest.mark.parametrize(
    "bad", ["source=austen\nrl: {steps: 1}", "source=austen\rx", "a\x00b", "a\u202eb"]
)
def test_control_characters_in_arguments_are_refused(project: Path, bad: str) -> None:
    # The header used to be " ".join(argv): a newline started a YAML key the plan did not show.
    with pytest.raises(RecipeError, match="control character"):
        _rerun(project, f"--exclude={bad}")
    assert not (project / "recipes" / "overrides").exists()


def test_header_is_one_shell_quoted_comment_line() -> None:
    argv = ["tiny", "--set", "release.description=it's # not a key: 1", "--exclude", "source=a b"]
    text = file_text({"eval": {"batch_size": 4}}, argv)
    header, rest = text.split("\n", 1)
    assert header.startswith("# Written by: ") and "\n" not in header
    assert shlex.split(header.removeprefix("# Written by: ")) == ["openrecipe", "rerun", *argv]
    assert yaml.safe_load(text) == {"eval": {"batch_size": 4}}


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("pretrain.steps=-5", "pretrain.steps"),
        ("model.hidden_size=abc", "model.hidden_size"),
        ("eval.nosuchkey=1", "unknown key"),
        ("name=evil", "cannot be set"),
        ("pretrain.steps=.inf", "finite"),
        ("eval.batch_size=&a [1, *a]", "anchors and aliases"),
    ],
)
def test_refused_set_writes_no_override(project: Path, item: str, message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        _rerun(project, f"--set={item}", dry_run=False)
    assert not (project / "recipes" / "overrides").exists()
    assert not (project / "runs").exists()


def test_unknown_source_or_language_is_refused_listing_the_valid_ones(project: Path) -> None:
    with pytest.raises(RecipeError, match="sources: austen, brown, python_stdlib, synthetic_math"):
        _rerun(project, "--exclude=source=wikipedia")
    with pytest.raises(RecipeError, match="languages: code, en"):
        _rerun(project, "--exclude=lang=xx")
    with pytest.raises(RecipeError, match="sources: austen, brown"):
        _rerun(project, "--weight=src:wikipedia=2")
    with pytest.raises(RecipeError, match="languages: code, en"):
        _rerun(project, "--weight=lang:xx=2")
    with pytest.raises(RecipeError, match="finite"):
        _rerun(project, "--weight=src:brown=1e999")
    assert not (project / "recipes" / "overrides").exists()


@pytest.mark.parametrize("name", ["Tiny", "../x", "a b", "a.b", "", "x" * 65, "tiny"])
def test_bad_variant_names_are_refused(project: Path, name: str) -> None:
    with pytest.raises(RecipeError, match="--name"):
        _rerun(project, "--exclude=source=austen", name=name)


def test_variant_may_not_replace_another_recipe(project: Path) -> None:
    with pytest.raises(RecipeError, match="already exists and is a different recipe"):
        _rerun(project, "--exclude=source=austen", name="default")
    (project / "runs" / "mine").mkdir(parents=True)
    (project / "runs" / "mine" / "recipe.resolved.yaml").write_text(
        "# Resolved from: recipes/default.yaml\nname: mine\n"
    )
    with pytest.raises(RecipeError, match="holds a run of another recipe"):
        _rerun(project, "--exclude=source=austen", name="mine")


def test_dry_run_writes_nothing(workflow_project: Path) -> None:
    project = workflow_project
    # A run directory as a previous run left it: the dry run must not rewrite any of it.
    (project / "runs" / "tiny").mkdir(parents=True)
    (project / "runs" / "tiny" / "recipe.resolved.yaml").write_text("# older resolved copy\n")
    before = _snapshot(project)
    result = _rerun(project, "--exclude=source=austen", "--weight=src:brown=2")
    assert _snapshot(project) == before
    assert not result["written"] and result["override"].startswith("recipes/overrides/tiny-")
    assert {"blend", "pretrain", "report"} <= set(result["planned"])
    variant = _rerun(project, "--exclude=source=austen", name="tiny-no-austen")
    assert _snapshot(project) == before
    assert (
        variant["override"] == "recipes/tiny-no-austen.yaml" and variant["planned"]["report"] == 1
    )
    # Snakemake's own dry run parses the workflow without writing the resolved recipe either.
    done = subprocess.run(
        [sys.executable, "-m", "snakemake", "--profile", "workflow/profiles/local", "-n"]
        + ["--configfile", "recipes/tiny.yaml"],
        cwd=project,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert _snapshot(project) == before
    jobs = {job.out: job for job in planned_jobs(done.stdout + done.stderr)}
    curate = jobs["runs/tiny/curate"]
    assert curate.rule == "curate" and curate.inputs["raw_brown"] == "data/raw/brown"
    base = load_recipe(project / "recipes" / "tiny.yaml", project=project)
    assert curate.config_hash == base.view_hash("curate")


def test_variant_recipe_extends_the_original_and_loads_to_the_plan(workflow_project: Path) -> None:
    project = workflow_project
    result = _rerun(project, "--exclude=source=austen", dry_run=True, name="tiny-no-austen")
    assert not (project / "recipes" / "tiny-no-austen.yaml").exists()
    text = file_text(
        {"extends": "tiny", "name": "tiny-no-austen", "data": {"exclude": [{"source": "austen"}]}},
        ["tiny", "--exclude=source=austen"],
    )
    (project / "recipes" / "tiny-no-austen.yaml").write_text(text)
    variant = load_recipe(project / "recipes" / "tiny-no-austen.yaml", project=project)
    assert variant.name == "tiny-no-austen"
    assert variant.data["data"]["exclude"] == [{"source": "austen"}]
    views = {row["stage"]: row["view_changed"] for row in result["views"]}
    assert views["blend"] == ["data.exclude"] and views["report"] == ["name"]
    assert views["curate"] == [] and views["pretrain"] == []
    # The same change again (same file) is accepted; nothing runs in a dry run.
    assert _rerun(project, "--exclude=source=austen", name="tiny-no-austen")["executed"] is None


def test_dry_run_names_stages_made_by_other_code(workflow_project: Path) -> None:
    """A finished pretrain made by other code: the dry run says which module and what follows."""
    import json

    from openrecipe.codeid import stage_code_identity
    from openrecipe.lineage.rerun import format_rerun
    from openrecipe.manifest import seal

    run = workflow_project / "runs" / "tiny"
    stale = stage_code_identity("pretrain")
    stale = {**stale, "sha256": "0" * 64}
    stale["modules"] = {**stale["modules"], "openrecipe.train.pretrain": "f" * 64}
    for stage, code, inputs in (
        ("pretrain", stale, []),
        ("sft", stage_code_identity("sft"), [{"stage": "pretrain", "path": "runs/tiny/pretrain"}]),
    ):
        (run / stage).mkdir(parents=True)
        body = {"stage": stage, "part": None, "code": code, "inputs": inputs, "outputs": {}}
        manifest = seal({**body, "config_view": {}, "config_hash": "0" * 64})
        (run / stage / "manifest.json").write_text(json.dumps(manifest))
    result = _rerun(workflow_project, "--exclude=source=austen")
    text = format_rerun(result)
    assert "runs/tiny/pretrain (pretrain): module openrecipe.train.pretrain changed" in text
    assert "downstream: runs/tiny/sft" in text
