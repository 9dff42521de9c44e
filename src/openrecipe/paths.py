"""Where things live, and the one guard every recipe-named path goes through.

A recipe is input from whoever wrote it; a path in it must stay inside the project (or a run
directory), never reach ``/etc`` or ``..`` out of the tree."""

from __future__ import annotations

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
