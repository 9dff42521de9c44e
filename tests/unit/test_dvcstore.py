"""DVC records and the pull checks: where .dvc files live so DVC sees them, which raw sources a
run needs, and when a pulled run may (not) be marked up to date. Real DVC, real recipes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from openrecipe.errors import OpenRecipeError
from openrecipe.lineage.dvcstore import raw_source_dirs, recipe_targets
from openrecipe.lineage.restore import config_mismatches, restore_run, touch_command
from openrecipe.recipe import load_recipe

REPO = Path(__file__).resolve().parents[2]
DVC = str(Path(sys.executable).with_name("dvc"))


def _manifest(directory: Path, **fields: object) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "manifest.json"
    path.write_text(json.dumps(fields), encoding="utf-8")
    return path


def _layout_repo(tmp_path: Path) -> Path:
    """A git + DVC repository with the project's ignore files and one run and one raw source."""
    root = tmp_path / "repo"
    for name in (".gitignore", ".dvcignore", "runs/.gitignore", "data/raw/.gitignore"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, root / name)
    (root / "runs" / "tiny" / "pack").mkdir(parents=True)
    (root / "runs" / "tiny" / "pack" / "train.bin").write_bytes(b"\x00\x01")
    (root / "runs" / "tiny" / "pack" / "run_info.json").write_text("{}")
    (root / "data" / "raw" / "brown").mkdir(parents=True)
    (root / "data" / "raw" / "brown" / "docs.jsonl").write_text("{}\n")
    (root / "data" / "raw" / "brown" / "run_info.json").write_text('{"host": "x"}')
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    for args in (["init", "-q"], ["add", "-q", "runs/tiny", "data/raw/brown"]):
        subprocess.run([DVC, *args], cwd=root, check=True, capture_output=True)
    return root


def test_dvc_sees_run_records_and_per_source_pins(tmp_path: Path) -> None:
    # DVC skips directories git ignores when it collects .dvc files; the root /runs/* pattern
    # hid runs/<r>.dvc from a plain `dvc pull`. With directory-only ignores it sees both.
    from dvc.repo import Repo

    root = _layout_repo(tmp_path)
    with Repo(str(root)) as repo:
        outs = sorted(str(Path(out.fs_path).relative_to(root)) for out in repo.index.outs)
    assert outs == ["data/raw/brown", "runs/tiny"]
    tracked = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "runs/tiny.dvc" in tracked and "data/raw/brown.dvc" in tracked
    assert "runs/tiny/" not in tracked and "data/raw/brown/" not in tracked
    # A raw pin leaves out the volatile run_info.json; a run's record keeps its own.
    pins = {p: (root / p).read_text() for p in ("runs/tiny.dvc", "data/raw/brown.dvc")}
    assert "nfiles: 1" in pins["data/raw/brown.dvc"] and "nfiles: 2" in pins["runs/tiny.dvc"]


def test_every_reference_recipe_source_has_a_committed_pin() -> None:
    pins = {p.stem for p in (REPO / "data" / "raw").glob("*.dvc")}
    for path in sorted((REPO / "recipes").glob("*.yaml")):
        recipe = load_recipe(path, project=REPO)
        if recipe.data["backend"] == "reference":
            sources = {s["name"] for s in recipe.data["data"]["sources"]}
            assert sources <= pins, f"{path.name}: no pin for {sorted(sources - pins)}"
    for pin in (REPO / "data" / "raw").glob("*.dvc"):
        assert f"path: {pin.stem}\n" in pin.read_text(), pin
    assert not (REPO / "data.dvc").exists()


def test_raw_source_dirs_are_the_raw_inputs_the_manifests_name(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "tiny"
    raw = [{"path": "data/raw/brown"}, {"path": "data/raw/austen"}]
    _manifest(run / "curate", stage="curate", inputs=raw)
    _manifest(run / "langid", stage="langid", inputs=[{"path": "runs/tiny/curate"}])
    _manifest(run / "odd", stage="x", inputs=[{"path": "data/raw/.."}, {"path": "data/raw"}])
    assert raw_source_dirs(run) == ["data/raw/austen", "data/raw/brown"]
    (run / "pack").mkdir()
    (run / "pack" / "manifest.json").write_text("{not json")
    with pytest.raises(OpenRecipeError, match="pack/manifest.json: unreadable manifest"):
        raw_source_dirs(run)


def test_recipe_targets_are_the_run_record_and_one_pin_per_source() -> None:
    assert recipe_targets("tiny", ["austen", "brown"]) == [
        "runs/tiny.dvc",
        "data/raw/austen.dvc",
        "data/raw/brown.dvc",
    ]


def test_config_mismatches_name_each_stage_made_with_another_view(tmp_path: Path) -> None:
    recipe = load_recipe(REPO / "recipes" / "tiny.yaml", project=REPO)
    run = tmp_path / "runs" / "tiny"
    _manifest(run / "rl", stage="rl", part=None, config_hash=recipe.view_hash("rl"))
    _manifest(
        run / "evaluate" / "sft",
        stage="evaluate",
        part="sft",
        config_hash=recipe.view_hash("evaluate", "sft"),
    )
    _manifest(run / ".rl.tmp-1", stage="rl", config_hash="stale")  # a temporary: not a stage
    assert config_mismatches(recipe, tmp_path, [run]) == []
    _manifest(run / "sft", stage="sft", part=None, config_hash="0" * 64)
    _manifest(run / "toy", part=None, config_hash="0" * 64)
    lines = config_mismatches(recipe, tmp_path, [run, tmp_path / "absent"])
    assert len(lines) == 2
    assert lines[0].startswith("runs/tiny/sft: made with config 0000") and "'tiny'" in lines[0]
    assert lines[1].startswith("runs/tiny/toy: no config view to compare (KeyError")


def test_touch_command_touches_every_job_of_the_recipe_in_order() -> None:
    command = touch_command(Path("recipes/tiny.yaml"), [Path("recipes/overrides/x.yaml")])
    assert command[:3] == [sys.executable, "-m", "snakemake"]
    assert "--touch" in command and "--forceall" in command
    assert command[-3:] == ["--configfile", "recipes/tiny.yaml", "recipes/overrides/x.yaml"]


def test_pull_without_a_record_names_it_and_touches_nothing(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    for name in ("Snakefile", "workflow", "recipes"):
        source = REPO / name
        copy = shutil.copytree if source.is_dir() else shutil.copy2
        copy(source, project / name)
    with pytest.raises(OpenRecipeError, match=r"no DVC record runs/tiny\.dvc, data/raw/austen"):
        restore_run(project, "recipes/tiny.yaml", [])
    assert not (project / ".snakemake").exists()
    with pytest.raises(OpenRecipeError, match="outside"):
        restore_run(project, "../elsewhere.yaml", [])
