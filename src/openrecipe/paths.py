"""Where things live, and the guards every user-named path goes through.

A recipe is input from whoever wrote it; a path in it must stay inside the project (or a run
directory), never reach ``/etc`` or ``..`` out of the tree. A stage's ``--out`` is replaced
wholesale, so it is held to the stage-directory shapes of the workflow (``stage_out_dir``)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from openrecipe.errors import RecipeError

SCHEMA_RELPATH = Path("workflow/schemas/recipe.schema.yaml")


def find_project_root(start: Path | None = None) -> Path:
    """The nearest directory above ``start`` (default: cwd) holding a Snakefile and recipes/.

    Falls back to the checkout this package was installed from (editable install)."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "Snakefile").is_file() and (candidate / "recipes").is_dir():
            return candidate
    installed = Path(__file__).resolve().parents[2]
    if (installed / SCHEMA_RELPATH).is_file():
        return installed
    raise RecipeError(f"no openrecipe project (Snakefile + recipes/) above {here}")


def resolve_inside(path: str | Path, roots: list[Path], what: str) -> Path:
    """Resolve ``path`` (relative to the first root) and refuse it unless it lies in a root."""
    candidate = Path(path)
    if not candidate.is_absolute():
        candidate = roots[0] / candidate
    resolved = candidate.resolve()
    for root in roots:
        if resolved == root.resolve() or root.resolve() in resolved.parents:
            return resolved
    allowed = ", ".join(str(r) for r in roots)
    raise RecipeError(
        f"{what}: path {str(path)!r} resolves to {resolved}, outside {allowed}; refused"
    )


def run_dir(project: Path, recipe_name: str) -> Path:
    return project / "runs" / recipe_name


def results_dir(project: Path, recipe_name: str) -> Path:
    return project / "results" / recipe_name


# --------------------------------------------------------------------------------------------
# Where a stage may write: --out confinement

# One path component a stage directory may be named by: no dots (so never ".", "..", a hidden
# ".x.tmp-PID" sibling or a file name such as recipe.resolved.yaml), no separators.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
# Folders of runs/<recipe>/ that hold stage directories (or logs) rather than being one.
_CONTAINERS = ("evaluate", "logs")
_SHARDS_SUFFIX = "_shards"


def _plain(name: str) -> bool:
    return _PLAIN_NAME.fullmatch(name) is not None


def _run_layout_ok(parts: tuple[str, ...], recipe_name: str) -> bool:
    """runs/<recipe>/<stage> or runs/<recipe>/{evaluate,<stage>_shards}/<item>."""
    if len(parts) not in (3, 4) or parts[1] != recipe_name or not all(map(_plain, parts[2:])):
        return False
    container = parts[2] in _CONTAINERS or parts[2].endswith(_SHARDS_SUFFIX)
    if len(parts) == 3:
        return not container
    return container and parts[2] != "logs"


def stage_out_dir(
    out: str | Path,
    project: Path,
    *,
    stage: str,
    recipe_name: str,
    part: str | None = None,
    sources: tuple[str, ...] = (),
) -> Path:
    """The resolved ``--out`` of a stage, refused unless it is a stage directory of this run.

    A stage replaces its ``--out`` wholesale (write beside it, then rename), so ``--out .`` or
    ``--out runs`` would replace the checkout or every run. The allowed shapes are exactly the
    ones the workflow uses (workflow/rules/*.smk):

    - ``runs/<recipe>/<name>``: any stage (``<name>`` a plain name: letters, digits, ``_``, ``-``;
      not ``evaluate``, ``logs`` or ``*_shards``, which hold stage directories);
    - ``runs/<recipe>/evaluate/<checkpoint>`` and ``runs/<recipe>/<stage>_shards/<id>``;
    - ``data/raw/<source>``: the acquire stage only, ``<source>`` its ``--part`` (or a source of
      the recipe);
    - ``results/<recipe>``: the report stage only.

    ``<recipe>`` is the loaded recipe's name, so one recipe cannot overwrite another's run. The
    path may not pass through a symlink (a link could point anywhere) and may not be a file."""
    given = Path(out)
    lexical = Path(os.path.normpath(given if given.is_absolute() else project / given))
    root = project.resolve()
    resolved = lexical.resolve()

    def refuse(why: str) -> RecipeError:
        return RecipeError(
            f"--out {str(out)!r}: {why}; a stage writes only to runs/{recipe_name}/<stage>, "
            f"runs/{recipe_name}/evaluate/<checkpoint>, runs/{recipe_name}/<stage>_shards/<id>, "
            f"data/raw/<source> (acquire) or results/{recipe_name} (report)"
        )

    if resolved != root and root not in resolved.parents:
        raise refuse(f"resolves to {resolved}, outside the project {root}")
    parts = resolved.relative_to(root).parts
    if lexical not in (resolved, Path(os.path.normpath(project)).joinpath(*parts)):
        raise refuse(f"goes through a symlink (resolves to {resolved})")
    if not parts:
        ok = False
    elif parts[0] == "runs":
        ok = _run_layout_ok(parts, recipe_name)
    elif parts[:2] == ("data", "raw"):
        names = (part,) if part else sources
        ok = stage == "acquire" and len(parts) == 3 and parts[2] in names and _plain(parts[2])
    elif parts[0] == "results":
        ok = stage == "report" and parts == ("results", recipe_name)
    else:
        ok = False
    if not ok:
        shown = "/".join(parts) or "the project root"
        raise refuse(f"{shown} is not a {stage} stage directory of this run")
    if resolved.exists() and not resolved.is_dir():
        raise refuse(f"{resolved} exists and is not a directory")
    return resolved
