"""``openrecipe rerun <recipe> [--name VARIANT] [--exclude ...] [--weight ...] [--set key=value]``.

The change is written as a file, and the run is the plain workflow with it, so nothing here
decides what reruns except the workflow itself:

- in place (no ``--name``): an override file, ``recipes/overrides/<recipe>-<what>-<hash>.yaml``,
  run as ``snakemake --configfile recipes/<recipe>.yaml <override>``; ``runs/<recipe>`` and
  ``results/<recipe>`` are updated;
- as a named variant (``--name tiny-no-austen``): a recipe ``recipes/<variant>.yaml`` that
  ``extends:`` the original, sets its ``name`` and the change, run as
  ``snakemake --configfile recipes/<variant>.yaml``. Its outputs go to ``runs/<variant>`` and
  ``results/<variant>``, beside the original's; every stage the variant would compute exactly
  as the original did is linked from the original instead (``openrecipe.lineage.share``).

Before anything is written the whole resolved recipe is loaded and validated (in a scratch copy
of the project, ``openrecipe.lineage.plan``) and Snakemake plans it there: a refused change or a
``--dry-run`` leaves the project untouched (no override, no resolved recipe, no link). The plan
says which stages will rerun and why, from two sides that must agree: our view hashes
(``STAGE_VIEWS``: which stages' config changed, and what each stage dir on disk last ran with)
and Snakemake's dry run (job counts per rule).

What the options mean and how they are checked: ``openrecipe.lineage.change``.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any, TextIO

import yaml

from openrecipe.errors import OpenRecipeError, RecipeError
from openrecipe.lineage.change import (
    VARIANT_NAME,
    build_override,
    check_arguments,
    check_excludes,
    check_variant_name,
    file_text,
    override_name,
    parse_exclude,
    reweight,
)
from openrecipe.lineage.code_drift import explain as explain_code_drift
from openrecipe.lineage.diff import changed_keys
from openrecipe.lineage.plan import Plan, job_counts, scratch_project, snakemake_command
from openrecipe.lineage.plan import dry_run as plan_dry_run
from openrecipe.lineage.share import Shared, choose_shared, link_shared, record_metadata
from openrecipe.manifest import MANIFEST_NAME, read_manifest
from openrecipe.paths import SCHEMA_RELPATH
from openrecipe.recipe import STAGE_VIEWS, Recipe, load_recipe

__all__ = ["build_override", "format_rerun", "job_counts", "rerun", "reweight", "view_changes"]


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _stage_keys(recipe: Recipe) -> list[tuple[str, str | None]]:
    keys: list[tuple[str, str | None]] = []
    for stage in STAGE_VIEWS:
        if stage == "acquire":
            keys += [("acquire", s["name"]) for s in recipe.data["data"]["sources"]]
        else:
            keys.append((stage, None))
    return keys


def _stage_dir(project: Path, recipe: Recipe, stage: str, part: str | None) -> Path:
    if stage == "acquire":
        return project / "data" / "raw" / str(part)
    if stage == "report":
        return project / "results" / recipe.name
    return project / "runs" / recipe.name / stage


def view_changes(project: Path, base: Recipe, new: Recipe) -> list[dict[str, Any]]:
    """Per stage: the view keys the change touches, and whether the stage dir on disk ran
    with the new view (``on_disk``: "current", "stale" or "missing")."""
    rows = []
    for stage, part in _stage_keys(new):
        changed = changed_keys(base.view(stage, part), new.view(stage, part))
        stage_dir = _stage_dir(project, new, stage, part)
        on_disk = "missing"
        if (stage_dir / MANIFEST_NAME).is_file() and stage != "evaluate":
            ran = read_manifest(stage_dir)["config_hash"]
            on_disk = "current" if ran == new.view_hash(stage, part) else "stale"
        rows.append(
            {
                "stage": stage + (f"[{part}]" if part else ""),
                "view_changed": [c["key"] for c in changed],
                "on_disk": on_disk if stage != "evaluate" else "per checkpoint",
            }
        )
    return rows


def _recipe_path(recipe_ref: str) -> Path:
    if recipe_ref.endswith((".yaml", ".yml")):
        return Path(recipe_ref)
    if not VARIANT_NAME.match(recipe_ref):
        raise RecipeError(f"rerun: recipe {recipe_ref!r} is not a recipe name or .yaml path")
    return Path("recipes") / f"{recipe_ref}.yaml"


def _written_file(
    project: Path,
    base: Recipe,
    base_path: Path,
    body: dict[str, Any],
    name: str | None,
    args: dict[str, list[str]],
) -> tuple[str, dict[str, Any]]:
    """(project-relative path, YAML body) of the override or variant recipe to write."""
    if name is None:
        stem = override_name(base.name, args["excludes"], args["weights"], args["sets"], body)
        return f"recipes/overrides/{stem}.yaml", body
    recipes = project / "recipes"
    extends = os.path.relpath(base_path, recipes) if base_path.parent != recipes else base_path.stem
    return f"recipes/{name}.yaml", {"extends": extends, "name": name, **body}


def _load_in(root: Path, base_rel: str, rel: str, variant: bool) -> Recipe:
    """Load what the workflow will load, in the scratch copy; errors name project paths."""
    try:
        if variant:
            return load_recipe(root / rel, project=root)
        return load_recipe(root / base_rel, [root / rel], project=root)
    except RecipeError as exc:
        text = str(exc).replace(str(root) + "/", "").replace(str(root.resolve()) + "/", "")
        raise RecipeError(f"{text}\n(rerun: nothing was written)") from None


def _plan(
    project: Path,
    base: Recipe,
    base_rel: str,
    rel: str,
    text: str,
    excludes: list[str],
    name: str | None,
) -> tuple[Recipe, Plan, list[Shared]]:
    """Load and plan the change in a scratch copy: (recipe, Snakemake's plan, shared stages).
    A variant is planned twice: to find what it can share, then with those stages in place."""
    configfiles = [rel] if name else [base_rel, rel]
    with scratch_project(project, {rel: text}) as root:
        new = _load_in(root, base_rel, rel, name is not None)
        check_excludes([parse_exclude(e) for e in excludes], new)
        plan = plan_dry_run(root, configfiles)
    shared = choose_shared(project, base.name, name, plan.jobs) if name else []
    if shared:
        links = {str(name): {item.rel: item.source for item in shared}}
        with scratch_project(project, {rel: text}, links) as root:
            plan = plan_dry_run(root, configfiles)
    return new, plan, shared


def _mark_shared(views: list[dict[str, Any]], shared: list[Shared], original: str) -> None:
    parts: dict[str, list[str]] = {}
    for item in shared:  # "pack", "evaluate/base", "langid_shards/000"
        stage, _, part = item.rel.partition("/")
        parts.setdefault(stage.removesuffix("_shards"), []).append(part)
    for row in views:
        if row["stage"] in parts:
            named = ", ".join(p for p in parts[row["stage"]] if p)
            row["on_disk"] = f"shared from runs/{original}" + (f" ({named})" if named else "")


def stream_snakemake(cwd: Path, configfiles: list[str], sink: TextIO | None) -> tuple[int, str]:
    """Run the workflow, copying each line of Snakemake's output (and its jobs') to ``sink`` as
    it comes, so a run of hours shows its progress; returns (exit code, the whole output)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # Snakemake's own prints, unbuffered in a pipe
    lines: list[str] = []
    with subprocess.Popen(
        snakemake_command(configfiles),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        env=env,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if sink is not None:
                sink.write(line)
                sink.flush()
    return proc.returncode, "".join(lines)


def rerun(
    project: Path,
    recipe_ref: str,
    excludes: list[str],
    weights: list[str],
    sets: list[str],
    *,
    dry_run: bool,
    argv: list[str],
    name: str | None = None,
    progress: TextIO | None = None,
) -> dict[str, Any]:
    """Validate and plan the change in a scratch copy; unless ``dry_run``, write it, link the
    stages a variant shares with its original, and run the workflow (its output streamed to
    ``progress`` line by line)."""
    check_arguments([recipe_ref, *excludes, *weights, *sets, *([name] if name else []), *argv])
    project = project.resolve()
    base_path = (project / _recipe_path(recipe_ref)).resolve()
    base = load_recipe(base_path, project=project)
    base_rel = base_path.relative_to(project).as_posix()
    schema = yaml.safe_load((project / SCHEMA_RELPATH).read_text(encoding="utf-8"))
    body = build_override(base, excludes, weights, sets, schema)
    args = {"excludes": excludes, "weights": weights, "sets": sets}
    rel, content = _written_file(project, base, base_path, body, name, args)
    text = file_text(content, argv)
    if name is not None:
        check_variant_name(project, base, name, text, rel)
    configfiles = [rel] if name else [base_rel, rel]
    new, plan, shared = _plan(project, base, base_rel, rel, text, excludes, name)
    views = view_changes(project, base, new)
    _mark_shared(views, shared, base.name)
    result: dict[str, Any] = {
        "override": rel,
        "variant": name,
        "written": False,
        "views": views,
        "shared": [f"runs/{base.name}/{s.rel} -> runs/{name}/{s.rel}" for s in shared],
        "planned": plan.counts,
        # Stages Snakemake reruns because the code changed (its plan only says "params
        # changed"): which module, file or package, and what is downstream.
        "code_changes": explain_code_drift(
            project, [project / "runs" / base.name, project / "results" / base.name]
        ),
        "executed": None,
    }
    if dry_run:
        return result
    write_atomic(project / rel, text)
    result["written"] = True
    files = [project / p for p in configfiles]
    if load_recipe(files[0], files[1:], project=project).data != new.data:
        raise OpenRecipeError(f"{rel}: loads differently from the planned recipe; not run")
    link_shared(project, str(name), shared)
    record_metadata(project, configfiles, shared)
    code, output = stream_snakemake(project, configfiles, progress)
    if code != 0:
        shown = "" if progress is not None else f":\n{output[-4000:]}"  # else already shown
        raise OpenRecipeError(f"snakemake failed (exit {code}){shown}")
    result["executed"] = job_counts(output)
    return result


def format_rerun(result: dict[str, Any]) -> str:
    verb = "written" if result["written"] else "to write (dry run: not written)"
    lines = [
        f"{'variant recipe' if result['variant'] else 'override'} {verb}: {result['override']}"
    ]
    lines.append("stage views (ours):")
    for row in result["views"]:
        why = ("changed " + ", ".join(row["view_changed"])) if row["view_changed"] else "unchanged"
        lines.append(f"  {row['stage']:<24} view {why}; on disk: {row['on_disk']}")
    if result["variant"]:
        lines.append(f"shared with the original by content: {len(result['shared'])} stage dir(s)")
        lines += [f"  {line}" for line in result["shared"]]
    lines += result.get("code_changes", [])
    planned = result["planned"]
    lines.append(
        f"snakemake plan: {sum(planned.values())} job(s) "
        + ", ".join(f"{rule} x{n}" for rule, n in sorted(planned.items()))
    )
    if result["executed"] is not None:
        executed = result["executed"]
        lines.append(
            f"executed: {sum(executed.values())} job(s) "
            + ", ".join(f"{rule} x{n}" for rule, n in sorted(executed.items()))
        )
    else:
        lines.append("dry run: nothing written, nothing executed")
    return "\n".join(lines)
