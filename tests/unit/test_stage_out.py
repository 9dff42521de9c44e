"""A stage's ``--out`` is confined to a stage directory of its run (``paths.stage_out_dir``), and
the temporary folders a killed run leaves beside it are removed by the next run of that stage.

Before: ``--out .`` or ``--out runs`` passed ``resolve_inside`` (the project itself was an allowed
root), and the stage then renamed the whole checkout away and put its output in its place."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from openrecipe.cli import main
from openrecipe.data import acquire_hf
from openrecipe.errors import RecipeError
from openrecipe.paths import stage_out_dir
from openrecipe.recipe import load_recipe
from openrecipe.stage import StageContext, remove_leftovers, run_stage

REPO = Path(__file__).resolve().parents[2]
# A PID no live process can have (above Linux's largest pid_max, 2**22).
DEAD_PID = 2**22 + 4321


def snapshot(root: Path) -> list[tuple[str, bool, int, int]]:
    """Every entry under ``root``: path, is-dir, size and mtime (a refusal must change none)."""
    entries = []
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        entries.append((str(path.relative_to(root)), path.is_dir(), info.st_size, info.st_mtime_ns))
    return entries


@pytest.fixture
def checkout(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The test project as the working directory, with a finished-looking run and an outside
    directory that a symlink in the run points to."""
    (project / "runs" / "tiny" / "pretrain").mkdir(parents=True)
    (project / "runs" / "tiny" / "pretrain" / "model.safetensors").write_bytes(b"weights")
    (project / "results" / "tiny").mkdir(parents=True)
    (project / "results" / "tiny" / "scores.json").write_text("{}")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("not the project's")
    os.symlink(outside, project / "runs" / "tiny" / "curate")
    monkeypatch.chdir(project)
    return project


@pytest.mark.parametrize(
    "out",
    [
        ".",
        "runs",
        "runs/x",
        "runs/tiny",
        "runs/default/curate",  # another recipe's run
        "runs/tiny/evaluate",  # holds stage dirs, is not one
        "runs/tiny/logs",
        "runs/tiny/curate/../../..",
        "runs/tiny/curate",  # a symlink pointing outside the project
        "runs/tiny/.curate.tmp-1",
        "runs/tiny/recipe.resolved.yaml",
        "results/tiny",  # only the report stage writes results/
        "data/raw/brown",  # only acquire writes data/raw/
        "data",
        "src",
        "/tmp/x",
        "../x",
    ],
)
def test_out_outside_a_stage_directory_is_refused_and_nothing_is_touched(
    checkout: Path, out: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(checkout.parent)
    code = main(["curate", "--recipe", "recipes/tiny.yaml", "--out", out])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("openrecipe curate: error: --out ") and out in err
    assert "Traceback" not in err
    assert snapshot(checkout.parent) == before


def test_out_through_a_symlinked_parent_is_refused(project: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (project / "runs").mkdir()
    os.symlink(outside, project / "runs" / "tiny")
    with pytest.raises(RecipeError, match="outside the project"):
        stage_out_dir("runs/tiny/curate", project, stage="curate", recipe_name="tiny")
    (project / "runs" / "tiny").unlink()
    (project / "runs" / "real").mkdir()
    os.symlink(project / "runs" / "real", project / "runs" / "tiny")
    with pytest.raises(RecipeError, match="symlink"):
        stage_out_dir("runs/tiny/curate", project, stage="curate", recipe_name="tiny")


@pytest.mark.parametrize(
    ("stage", "out", "part"),
    [
        ("curate", "runs/tiny/curate", None),
        ("langid", "runs/tiny/langid_shards/001", "shard-001"),
        ("evaluate", "runs/tiny/evaluate/base", "base"),
        ("pretrain", "runs/tiny/bf16-killed", None),
        ("acquire", "data/raw/brown", "brown"),
        ("report", "results/tiny", None),
    ],
)
def test_stage_directories_of_the_run_are_accepted(
    project: Path, stage: str, out: str, part: str | None
) -> None:
    resolved = stage_out_dir(out, project, stage=stage, recipe_name="tiny", part=part)
    assert resolved == project.resolve() / out
    absolute = stage_out_dir(project / out, project, stage=stage, recipe_name="tiny", part=part)
    assert absolute == resolved


def test_acquire_writes_only_its_own_source(project: Path) -> None:
    with pytest.raises(RecipeError, match="not a acquire stage directory"):
        stage_out_dir("data/raw/austen", project, stage="acquire", recipe_name="tiny", part="brown")


def _dry_run_stage_calls(project: Path, recipe: str) -> list[tuple[str, str, str | None, str]]:
    """(stage, --out, --part, --recipe) of every stage command a forced dry run would execute."""
    command = [sys.executable, "-m", "snakemake", "-n", "-p", "--forceall"]
    done = subprocess.run(
        [*command, "--configfile", f"recipes/{recipe}.yaml"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    calls = []
    for line in (done.stdout + done.stderr).splitlines():
        found = re.search(r"-m openrecipe (\w+) --recipe (\S+) (.*?)--out (\S+)", line)
        if found:
            part = re.search(r"--part (\S+)", found.group(3))
            calls.append((found.group(1), found.group(4), part and part.group(1), found.group(2)))
    return calls


@pytest.mark.parametrize("recipe", ["default", "nemotron_h_8b"])
def test_every_out_the_workflow_passes_is_accepted(tmp_path: Path, recipe: str) -> None:
    """The allowed shapes are derived from the rules: every ``--out`` of a forced dry run
    (sharded curation, three evaluated checkpoints, acquire, report; the plan stage of a
    full-size recipe) must pass the guard unchanged."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("Snakefile", "workflow", "recipes"):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, project / name)
        else:
            shutil.copy(source, project / name)
    calls = _dry_run_stage_calls(project, recipe)
    stages = {stage for stage, *_ in calls}
    # a full-size recipe's sources are released datasets: acquire_hf, not acquire
    expected = {"acquire_hf", "plan"} if recipe != "default" else {"langid", "evaluate", "report"}
    assert expected <= stages, stages
    # A dry run writes no resolved copy (the workflow's onstart does, and a dry run skips it):
    # the stages would read the recipe the copy is resolved from.
    loaded = load_recipe(project / "recipes" / f"{recipe}.yaml", project=project)
    for stage, out, part, recipe_path in calls:
        assert recipe_path.endswith("recipe.resolved.yaml") or recipe_path.startswith(
            "runs/.acquire/"
        ), recipe_path
        if stage == "acquire_hf":  # its own guard (acquire_hf.prepare): exactly its job's dir
            assert out == acquire_hf.out_dir(part), (out, part)
            continue
        sources = tuple(s["name"] for s in loaded.data["data"]["sources"])
        resolved = stage_out_dir(
            out, project, stage=stage, recipe_name=loaded.name, part=part, sources=sources
        )
        assert resolved == project.resolve() / out


def _write(ctx: StageContext) -> dict:
    assert ctx.out.parent == ctx.project / "runs" / "tiny"  # the temporary dir is in the run
    (ctx.out / "a.txt").write_text("a")
    return {}


def test_leftovers_of_a_killed_run_are_removed_by_the_next_run(project: Path) -> None:
    run = project / "runs" / "tiny"
    run.mkdir(parents=True)
    for name in (f".reasoning.tmp-{DEAD_PID}", f".reasoning.old-{DEAD_PID + 1}"):
        (run / name).mkdir()
        (run / name / "half.bin").write_bytes(b"half")
    kept = [".reasoning.resume", f".curate.tmp-{DEAD_PID}", f".reasoning.tmp-{os.getppid()}"]
    for name in kept:
        (run / name).mkdir()
    recipe = load_recipe(project / "recipes" / "tiny.yaml", project=project)
    run_stage("reasoning", recipe, run / "reasoning", {}, _write, project=project)
    hidden = sorted(p.name for p in run.iterdir() if p.name.startswith("."))
    # the resume folder, another stage's leftover and a live process's folder stay
    assert hidden == sorted(kept)
    assert (run / "reasoning" / "a.txt").read_text() == "a"


def test_remove_leftovers_unlinks_a_planted_symlink_without_following_it(tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.mkdir()
    (target / "file").write_text("x")
    os.symlink(target, tmp_path / f".stage.tmp-{DEAD_PID}")
    assert remove_leftovers(tmp_path / "stage") == [f".stage.tmp-{DEAD_PID}"]
    assert (target / "file").read_text() == "x"


def test_run_stage_refuses_to_replace_the_project(project: Path) -> None:
    recipe = load_recipe(project / "recipes" / "tiny.yaml", project=project)
    for out in (project, project.parent):
        with pytest.raises(RecipeError, match="holds the project"):
            run_stage("reasoning", recipe, out, {}, _write, project=project)
    assert (project / "Snakefile").is_file()
