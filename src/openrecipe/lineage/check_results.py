"""``openrecipe check-results <recipe>``: remake a committed result from scratch and compare it,
hash by hash, with its committed signed lock.

Committed ``results/<recipe>/`` are evidence only if the commit they sit in remakes them. This
runs the recipe in a scratch copy of the project (the workflow, the recipes and the pinned raw
sources; nothing from ``runs/`` or ``results/``), then checks the scratch run against the
committed ``results/<recipe>/release.lock.json`` with ``reproduce --check``'s own code: the
signature must verify against the project's release signers (``keys/allowed_signers``) and
every locked artifact hash must match (verdict ``exact``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from openrecipe.errors import LineageError
from openrecipe.lineage.attestation import load_trust
from openrecipe.lineage.lock import LOCK_NAME, check_lock
from openrecipe.recipe import load_recipe

RELEASE_SIGNERS = Path("keys") / "allowed_signers"
COPIED = ("Snakefile", "workflow", "recipes", "keys")


def scratch_project(project: Path, dest: Path) -> Path:
    """The workflow, recipes and signers in ``dest``, and the pinned raw sources (acquire's
    outputs, checked against their manifests by every consumer) copied in."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        source = project / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=shutil.ignore_patterns("_*"))
        elif source.is_file():
            shutil.copy2(source, dest / name)
    raw = project / "data" / "raw"
    if raw.is_dir():
        shutil.copytree(raw, dest / "data" / "raw")
    return dest


def run_recipe(project: Path, recipe_file: str, *, cores: int = 2) -> None:
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--profile",
        "workflow/profiles/local",
        "--cores",
        str(cores),
        "--configfile",
        recipe_file,
    ]
    done = subprocess.run(command, cwd=project, capture_output=True, text=True)
    if done.returncode != 0:
        output = (done.stdout + done.stderr)[-4000:]
        raise LineageError(f"snakemake --configfile {recipe_file} failed in {project}:\n{output}")


def check_results(project: Path, recipe_ref: str, *, keep: Path | None = None) -> dict[str, Any]:
    """Remake ``recipe_ref`` in a scratch project and check it against the committed lock."""
    recipe_file = f"recipes/{recipe_ref}.yaml" if "/" not in recipe_ref else recipe_ref
    name = load_recipe(project / recipe_file, project=project).name
    lock = project / "results" / name / LOCK_NAME
    signers = project / RELEASE_SIGNERS
    if not lock.is_file():
        raise LineageError(f"{lock}: no committed lock to check results/{name}/ against")
    if not signers.is_file():
        raise LineageError(f"{signers}: missing; it names the keys that sign committed results")
    trust = load_trust([], signers, signers)
    with tempfile.TemporaryDirectory(prefix=f"check-{name}-") as tmp:
        scratch = scratch_project(project, Path(keep) if keep else Path(tmp) / "project")
        run_recipe(scratch, recipe_file)
        shutil.copy2(lock, scratch / "results" / name / LOCK_NAME)
        return check_lock(scratch / "results" / name / LOCK_NAME, trust)
