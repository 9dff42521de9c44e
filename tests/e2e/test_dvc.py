"""DVC with a real local remote: the raw snapshot and a finished run go to the remote and come
back byte-identical; `openrecipe push` refuses a run that fails verify."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from openrecipe.lineage.verify import verify_tree

pytestmark = pytest.mark.e2e
DVC = str(Path(sys.executable).with_name("dvc"))


def dvc(project: Path, *args: str) -> str:
    done = subprocess.run([DVC, *args], cwd=project, capture_output=True, text=True)
    assert done.returncode == 0, f"dvc {' '.join(args)}:\n{done.stdout}{done.stderr}"
    return done.stdout


@pytest.fixture
def dvc_project(first_run: Path, tmp_path: Path) -> Path:
    project = tmp_path / "clone"
    shutil.copytree(first_run, project, ignore=shutil.ignore_patterns(".snakemake"))
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    (project / ".gitignore").write_text("/runs/*\n!/runs/*.dvc\n")
    dvc(project, "init", "-q")
    dvc(project, "remote", "add", "-d", "local", str(tmp_path / "remote"))
    (project / ".dvcignore").write_text("**/run_info.json\n")
    return project


def test_raw_snapshot_round_trips_through_the_remote(dvc_project: Path) -> None:
    dvc(dvc_project, "add", "data")
    dvc(dvc_project, "push", "data.dvc")
    shutil.rmtree(dvc_project / "data")
    dvc(dvc_project, "pull", "data.dvc")
    problems, checked = verify_tree(dvc_project / "data" / "raw")
    assert problems == [] and checked == 4


def test_push_verb_versions_a_run_and_refuses_an_altered_one(dvc_project: Path) -> None:
    run = [sys.executable, "-m", "openrecipe", "push", "runs/tiny"]
    subprocess.run(run, cwd=dvc_project, check=True, capture_output=True)
    assert (dvc_project / "runs" / "tiny.dvc").is_file()
    shutil.rmtree(dvc_project / "runs" / "tiny")
    dvc(dvc_project, "pull", "runs/tiny.dvc")
    assert verify_tree(dvc_project / "runs" / "tiny")[0] == []
    with (dvc_project / "runs" / "tiny" / "pack" / "train.bin").open("r+b") as handle:
        byte = handle.read(1)
        handle.seek(0)
        handle.write(bytes([byte[0] ^ 0xFF]))
    refused = subprocess.run(run, cwd=dvc_project, capture_output=True, text=True)
    assert refused.returncode == 2 and "train.bin" in refused.stderr
