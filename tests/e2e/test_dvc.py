"""DVC round trip with a real local remote and a real git clone: a tiny run pushed with
`openrecipe push` is restored in a fresh clone by `openrecipe pull` and is then up to date for
Snakemake (0 jobs), while one changed input reruns exactly its stage and what follows. A pulled
run that fails verify, or was made with another config, is never marked up to date."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .workflow import REPO, TINY, job_counts, openrecipe_cli, snakemake

pytestmark = pytest.mark.e2e
DVC = str(Path(sys.executable).with_name("dvc"))
GIT = ["git", "-c", "user.name=openrecipe-test", "-c", "user.email=test@openrecipe.invalid"]
TINY_SOURCES = ["austen", "brown", "python_stdlib", "synthetic_math"]
TARGETS = ["runs/tiny.dvc", *(f"data/raw/{s}.dvc" for s in TINY_SOURCES)]
UP_TO_DATE = "Data and pipelines are up to date."


def dvc(project: Path, *args: str) -> str:
    done = subprocess.run([DVC, *args], cwd=project, capture_output=True, text=True)
    assert done.returncode == 0, f"dvc {' '.join(args)}:\n{done.stdout}{done.stderr}"
    return done.stdout


def git(project: Path, *args: str) -> str:
    done = subprocess.run([*GIT, *args], cwd=project, capture_output=True, text=True)
    assert done.returncode == 0, f"git {' '.join(args)}:\n{done.stdout}{done.stderr}"
    return done.stdout


def _repository(first_run: Path, dest: Path, remote: Path) -> Path:
    """``first_run`` as a git + DVC repository with the project's ignore files and raw pins."""
    shutil.copytree(first_run, dest, ignore=shutil.ignore_patterns(".snakemake"))
    for name in (".gitignore", ".dvcignore", "runs/.gitignore", "data/raw/.gitignore"):
        shutil.copy2(REPO / name, dest / name)
    for pin in (REPO / "data" / "raw").glob("*.dvc"):
        shutil.copy2(pin, dest / "data" / "raw" / pin.name)
    git(dest, "init", "-q")
    dvc(dest, "init", "-q")
    dvc(dest, "remote", "add", "-d", "local", str(remote))
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "project with a finished tiny run")
    return dest


@pytest.fixture(scope="module")
def origin(first_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Other tests may have re-run first_run with an override: bring it back to plain tiny.
    snakemake(first_run, *TINY)
    base = tmp_path_factory.mktemp("dvc")
    return _repository(first_run, base / "origin", base / "remote")


def test_pushed_run_restores_in_a_fresh_clone_up_to_date(origin: Path, tmp_path: Path) -> None:
    pushed = openrecipe_cli(origin, "push", "runs/tiny")
    assert pushed.returncode == 0, pushed.stderr
    # The tiny run acquired 4 of the 9 pinned sources, byte-identical to their committed pins:
    # `dvc add` left every pin as it was and the recipe's records are clean.
    assert git(origin, "status", "--porcelain", "data") == ""
    assert dvc(origin, "status", *TARGETS).strip() == UP_TO_DATE
    git(origin, "add", "runs/tiny.dvc")
    git(origin, "commit", "-q", "-m", "tiny run")

    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(origin), str(clone))
    assert not (clone / "runs" / "tiny").exists() and not (clone / ".snakemake").exists()
    from dvc.repo import Repo

    with Repo(str(clone)) as repo:  # what a plain `dvc pull` would pull: the run is among them
        outs = {str(Path(out.fs_path).relative_to(clone)) for out in repo.index.outs}
    assert {"runs/tiny", *(f"data/raw/{s}" for s in TINY_SOURCES)} <= outs

    # Never marked up to date: a run made with another config than the one asked for...
    override = clone / "recipes" / "overrides" / "eval_tokens.yaml"
    override.parent.mkdir(exist_ok=True)
    override.write_text("eval:\n  max_new_tokens: 40\n")
    other = openrecipe_cli(
        clone, "pull", "recipes/tiny.yaml", "--override", "recipes/overrides/eval_tokens.yaml"
    )
    assert other.returncode == 2 and "runs/tiny/evaluate/base: made with config" in other.stderr
    assert not (clone / ".snakemake" / "metadata").exists()
    # ...or one whose bytes do not match its manifests.
    summary = clone / "results" / "tiny" / "summary.md"
    summary.write_text(summary.read_text() + "edited\n")
    altered = openrecipe_cli(clone, "pull", "recipes/tiny.yaml")
    assert altered.returncode == 2 and "fails verify" in altered.stderr
    assert "summary.md" in altered.stderr
    assert not (clone / ".snakemake" / "metadata").exists()
    git(clone, "checkout", "results/tiny/summary.md")

    pulled = openrecipe_cli(clone, "pull", "recipes/tiny.yaml")
    assert pulled.returncode == 0, pulled.stderr
    assert dvc(clone, "status", *TARGETS).strip() == UP_TO_DATE
    output, _ = snakemake(clone, "-n", *TINY)
    assert "Nothing to be done" in output and job_counts(output) == {}
    assert "missing provenance/metadata" not in output

    # One changed input reruns exactly its stage and its descendants.
    output, _ = snakemake(clone, "-n", *TINY, "recipes/overrides/eval_tokens.yaml")
    assert job_counts(output) == {"evaluate": 3, "report": 1}
    (clone / "recipes" / "overrides" / "rl_lr.yaml").write_text("rl:\n  lr: 2.0e-4\n")
    output, _ = snakemake(clone, "-n", *TINY, "recipes/overrides/rl_lr.yaml")
    assert job_counts(output) == {"rl": 1, "evaluate": 1, "report": 1}


def test_push_refuses_an_altered_run(first_run: Path, tmp_path: Path) -> None:
    project = _repository(first_run, tmp_path / "project", tmp_path / "remote")
    with (project / "runs" / "tiny" / "pack" / "train.bin").open("r+b") as handle:
        byte = handle.read(1)
        handle.seek(0)
        handle.write(bytes([byte[0] ^ 0xFF]))
    refused = openrecipe_cli(project, "push", "runs/tiny")
    assert refused.returncode == 2 and "train.bin" in refused.stderr
    assert not (project / "runs" / "tiny.dvc").exists()
