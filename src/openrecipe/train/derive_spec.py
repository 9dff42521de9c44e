"""Where a derived recipe's parent lives, checked before anything reads it (recipe ``derive:``).

A child recipe names its parent by recipe name and pins the parent's stage outputs by manifest
hash. The name becomes a path (``runs/<recipe>/<stage>``), so it is checked twice: it must be a
plain identifier and a recipe file ``recipes/<name>.yaml`` must exist; no other string from the
recipe reaches the filesystem. Shared by the workflow (``common.smk``, which refuses a missing
or different parent run by name before the DAG is built) and the ``distill`` stage itself
(which checks the same pins again on the directories it is handed).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openrecipe.errors import RecipeError, StageInputError
from openrecipe.manifest import MANIFEST_NAME, read_manifest

_IDENT = re.compile(r"[a-z0-9][a-z0-9_]{0,63}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Pin:
    """One pinned parent stage: which recipe's which stage, and the manifest hash it must have."""

    role: str  # the distill stage's input name: parent or data
    recipe: str
    stage: str
    manifest_sha256: str

    @property
    def path(self) -> str:
        """Project-relative stage directory."""
        return f"runs/{self.recipe}/{self.stage}"

    def command(self) -> str:
        """The command that produces this stage (what a user runs when it is missing)."""
        return (
            "PYTHONPATH=$PWD/src .venv/bin/python -m snakemake --cores 1 --configfile "
            f"{shlex.quote(f'recipes/{self.recipe}.yaml')} {shlex.quote(self.path + '/' + MANIFEST_NAME)}"
            f"  (or `make run RECIPE={self.recipe}`)"
        )


def pins(derive: dict[str, Any], project: Path, child: str) -> list[Pin]:
    """The parent and data pins of a ``derive:`` section, names and hashes checked."""
    parent, data = derive.get("parent") or {}, derive.get("data") or {}
    recipe = parent.get("recipe")
    if not isinstance(recipe, str) or not _IDENT.fullmatch(recipe):
        raise RecipeError(f"derive.parent.recipe: {recipe!r} is not a recipe name")
    if recipe == child:
        raise RecipeError(
            f"derive.parent.recipe: {recipe!r} is this recipe; a model has no parent in itself"
        )
    if not (project / "recipes" / f"{recipe}.yaml").is_file():
        raise RecipeError(
            f"derive.parent.recipe: {recipe!r}: no recipe file recipes/{recipe}.yaml in {project}"
        )
    found = [
        Pin("parent", recipe, str(parent.get("stage")), str(parent.get("manifest_sha256"))),
        Pin("data", recipe, str(data.get("stage")), str(data.get("manifest_sha256"))),
    ]
    for pin, where in zip(found, ("derive.parent", "derive.data"), strict=True):
        if pin.stage not in ({"pretrain"} if pin.role == "parent" else {"pack"}):
            raise RecipeError(f"{where}.stage: {pin.stage!r} is not a stage it can read")
        if not _SHA256.fullmatch(pin.manifest_sha256):
            raise RecipeError(f"{where}.manifest_sha256: {pin.manifest_sha256!r} is not a sha256")
    return found


def check_pin(pin: Pin, stage_dir: Path) -> dict[str, Any]:
    """The manifest of ``stage_dir``, refused unless it exists and has the pinned hash."""
    where = f"derive.{pin.role}"
    if not (stage_dir / MANIFEST_NAME).is_file():
        raise StageInputError(
            f"{where}: {pin.path}/{MANIFEST_NAME} does not exist; run recipe {pin.recipe} "
            f"first: {pin.command()}"
        )
    manifest = read_manifest(stage_dir)
    if manifest.get("stage") != pin.stage or manifest.get("recipe") != pin.recipe:
        raise StageInputError(
            f"{where}: {pin.path} holds stage {manifest.get('stage')!r} of recipe "
            f"{manifest.get('recipe')!r}, not {pin.stage!r} of {pin.recipe!r}"
        )
    found = manifest["manifest_sha256"]
    if found != pin.manifest_sha256:
        raise StageInputError(
            f"{where}.manifest_sha256: {pin.path} has manifest_sha256 {found}, the recipe pins "
            f"{pin.manifest_sha256}; the parent was rerun or changed since it was pinned (pin "
            f"the new hash after checking it is the parent you mean, or restore that run)"
        )
    return manifest


def input_dirs(recipe_data: dict[str, Any], project: Path) -> dict[str, str]:
    """{distill input name: project-relative directory} of a recipe with ``derive:`` ({}
    without it)."""
    derive = recipe_data.get("derive")
    if derive is None:
        return {}
    return {pin.role: pin.path for pin in pins(derive, project, recipe_data["name"])}


def check_parent_runs(recipe_data: dict[str, Any], project: Path) -> None:
    """Refuse, by name and with the command to run, a parent run that is missing or differs
    from the pins (the workflow calls this before building the DAG)."""
    derive = recipe_data.get("derive")
    if derive is None:
        return
    for pin in pins(derive, project, recipe_data["name"]):
        check_pin(pin, project / pin.path)
