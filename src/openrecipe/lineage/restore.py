"""Restore a pushed run in a fresh clone and make it up to date for Snakemake, soundly.

After ``dvc pull`` the bytes are right but Snakemake would rerun most of the run: DVC checks
files out in no particular order (a stage's manifest can be older than its inputs' manifests,
so the mtime trigger fires and cascades), and a fresh clone has no ``.snakemake/metadata``
(so Snakemake could not even see a later params or code change). Shipping ``.snakemake/``
would not do: its records name the interpreter path of the machine that ran (a param here).

So ``pull`` does, in order, and stops with a named error at the first failure:
1. ``dvc pull`` of exactly the recipe's records (``runs/<name>.dvc`` and its raw-source pins);
2. ``verify`` of the run and its upstream raw sources: every byte matches its manifest;
3. every stage manifest was made by this recipe (config hash = the checkout's view hash) and
   by this checkout's code (no code drift): what Snakemake would otherwise rerun;
4. only then ``snakemake --touch``: it sets mtimes in job order and writes the metadata records
   (params, code, input set) for the checkout, so a later change reruns exactly its descendants.
Nothing unverified, or made by another recipe or code, is ever marked up to date.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from openrecipe.errors import OpenRecipeError
from openrecipe.lineage.code_drift import made_by_other_code
from openrecipe.lineage.dvcstore import RAW, recipe_targets, run_dvc
from openrecipe.lineage.verify import verify_roots
from openrecipe.manifest import MANIFEST_NAME
from openrecipe.paths import resolve_inside, results_dir, run_dir
from openrecipe.recipe import Recipe, load_recipe


@dataclass(frozen=True)
class Restored:
    """What ``pull`` restored: the run directory, the DVC targets and the stages checked."""

    run_dir: Path
    targets: list[str]
    stages: int


def config_mismatches(recipe: Recipe, project: Path, roots: list[Path]) -> list[str]:
    """One line per stage manifest under ``roots`` whose config hash is not the one ``recipe``
    gives its stage view: outputs of another recipe (or override) that must not be marked
    current. Hidden directories (temporaries, resume state) are not stages."""
    lines = []
    for root in roots:
        for path in sorted(root.rglob(MANIFEST_NAME)) if root.is_dir() else []:
            rel = path.parent.relative_to(project)
            if any(part.startswith(".") for part in rel.parts):
                continue
            try:
                manifest = json.loads(path.read_text(encoding="utf-8"))
                stage, part = manifest["stage"], manifest.get("part")
                expected = recipe.view_hash(stage, part)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                lines.append(f"{rel}: no config view to compare ({type(exc).__name__}: {exc})")
                continue
            if manifest.get("config_hash") != expected:
                lines.append(
                    f"{rel}: made with config {manifest.get('config_hash')}, "
                    f"recipe {recipe.name!r} gives {stage} {expected}"
                )
    return lines


def touch_command(recipe_path: Path, overrides: list[Path]) -> list[str]:
    """Snakemake's own ``--touch`` for the recipe: mtimes in job order plus metadata records."""
    return [
        sys.executable,
        "-m",
        "snakemake",
        "--profile",
        "workflow/profiles/local",
        "--cores",
        "1",
        "--touch",
        "--forceall",  # every job, so every output gets a metadata record (not only stale ones)
        "--configfile",
        str(recipe_path),
        *(str(p) for p in overrides),
    ]


def _refuse(what: str, lines: list[str]) -> OpenRecipeError:
    return OpenRecipeError(
        f"pull: {what}; the run is restored but NOT marked up to date "
        "(snakemake will rerun what differs):\n  " + "\n  ".join(lines)
    )


def restore_run(
    project: Path, recipe: str, overrides: list[str], remote: str | None = None
) -> Restored:
    """Pull the recipe's run and raw sources, verify them, then mark them up to date."""
    recipe_path = resolve_inside(recipe, [project], "pull recipe")
    override_paths = [resolve_inside(p, [project], "pull override") for p in overrides]
    loaded = load_recipe(recipe_path, override_paths, project=project)
    sources = sorted(s["name"] for s in loaded.data["data"]["sources"])
    targets = recipe_targets(loaded.name, sources)
    absent = [t for t in targets if not (project / t).is_file()]
    if absent:
        raise OpenRecipeError(
            f"pull {loaded.name}: no DVC record {', '.join(absent)} in this checkout "
            f"(`openrecipe push runs/{loaded.name}` writes them; commit them with git)"
        )
    print(run_dvc(project, "pull", *targets, *(["-r", remote] if remote else [])).strip())

    run, results = run_dir(project, loaded.name), results_dir(project, loaded.name)
    roots = [run, *([results] if results.is_dir() else [])]
    verified = verify_roots(roots)
    if verified.problems:
        raise _refuse("the pulled run fails verify", verified.problems)
    raw = [project / RAW / s for s in sources]
    drift = made_by_other_code(project, [*roots, *raw])
    if drift:
        raise _refuse("stages made by other code than this checkout's", drift)
    mismatched = config_mismatches(loaded, project, [*roots, *raw])
    if mismatched:
        raise _refuse(f"stages made by another recipe than {recipe}", mismatched)

    done = subprocess.run(
        touch_command(recipe_path, override_paths), cwd=project, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise OpenRecipeError(
            f"pull: snakemake --touch failed:\n{(done.stdout + done.stderr)[-4000:]}"
        )
    return Restored(run, targets, verified.checked + len(verified.upstream))
