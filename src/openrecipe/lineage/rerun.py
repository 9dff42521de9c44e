"""``openrecipe rerun <recipe> [--exclude ...] [--weight ...] [--set key=value]``.

The change is written as an override file, ``recipes/overrides/<recipe>-<what>-<hash>.yaml``:
the file is the record of the change (commit it with the results), and the run is the plain
workflow with it, ``snakemake --configfile recipes/<recipe>.yaml <override>``, so nothing here
decides what reruns except the workflow itself. Before running, the plan says which stages
will rerun and why, from two sides that must agree: our view hashes (``STAGE_VIEWS``: which
stages' config changed, and what each stage dir on disk last ran with) and Snakemake's dry run
(job counts per rule).

Options:
- ``--exclude source=X[,lang=Y,...]``: one more ``data.exclude`` rule (fields as in the schema);
- ``--weight src:NAME=F`` / ``--weight lang:CODE=F``: multiply that source's (or that
  language's: its sources' and its own ``lang:CODE`` weight key's) weight in every phase by F,
  then renormalise each phase to sum to 1 (the recipe requires it), so ``lang:es=2`` doubles
  Spanish relative to the rest;
- ``--set dotted.key=VALUE``: any field (VALUE parsed as YAML: numbers, lists, booleans).
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from openrecipe.errors import OpenRecipeError, RecipeError
from openrecipe.hashing import hash_obj
from openrecipe.lineage.diff import changed_keys
from openrecipe.manifest import MANIFEST_NAME, read_manifest
from openrecipe.recipe import LANG_PREFIX, STAGE_VIEWS, Recipe, load_recipe

EXCLUDE_FIELDS = ("source", "license", "lang", "path_glob", "ids")


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise RecipeError(f"--set {dotted}: {part} is not a mapping")
    node[parts[-1]] = value


def parse_exclude(text: str) -> dict[str, Any]:
    rule: dict[str, Any] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or key not in EXCLUDE_FIELDS or not value:
            raise RecipeError(
                f"--exclude {text!r}: expected FIELD=VALUE with FIELD in {EXCLUDE_FIELDS}"
            )
        rule[key] = value.split("|") if key == "ids" else value
    return rule


def reweight(base: Recipe, weights: list[str]) -> list[dict[str, Any]]:
    """``data.phases`` with the multipliers applied and each phase renormalised."""
    sources = {s["name"]: s for s in base.data["data"]["sources"]}
    phases = copy.deepcopy(base.data["data"]["phases"])
    keys = sorted({*sources, *(k for phase in phases for k in phase["weights"])})
    factors = dict.fromkeys(keys, 1.0)
    for item in weights:
        match = re.fullmatch(r"(src|lang):([^=]+)=([0-9.eE+-]+)", item)
        if not match:
            raise RecipeError(f"--weight {item!r}: expected src:NAME=F or lang:CODE=F")
        kind, name, factor = match.group(1), match.group(2), float(match.group(3))
        if kind == "src":
            chosen = [name] if name in sources else []
        else:  # sources declaring the language, and the phases' own key for it
            chosen = [s for s, spec in sources.items() if spec.get("lang") == name]
            chosen += [k for k in keys if k == f"{LANG_PREFIX}{name}"]
        if not chosen:
            raise RecipeError(f"--weight {item!r}: no source or weight key with {kind} {name!r}")
        for key in chosen:
            factors[key] *= factor
    for phase in phases:
        scaled = {s: w * factors[s] for s, w in phase["weights"].items()}
        total = sum(scaled.values())
        if total <= 0:
            raise RecipeError(f"--weight: phase {phase['name']} would have no weight left")
        phase["weights"] = {s: round(w / total, 12) for s, w in sorted(scaled.items())}
    return phases


def build_override(
    base: Recipe, excludes: list[str], weights: list[str], sets: list[str]
) -> dict[str, Any]:
    override: dict[str, Any] = {}
    if excludes:
        rules = list(base.data["data"].get("exclude", [])) + [parse_exclude(e) for e in excludes]
        _set_dotted(override, "data.exclude", rules)
    if weights:
        _set_dotted(override, "data.phases", reweight(base, weights))
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise RecipeError(f"--set {item!r}: expected dotted.key=VALUE")
        _set_dotted(override, key, yaml.safe_load(value))
    if not override:
        raise RecipeError("rerun: nothing to change (give --exclude, --weight or --set)")
    return override


def override_name(
    recipe: str, excludes: list[str], weights: list[str], sets: list[str], body: Any
) -> str:
    words = [f"exclude-{e}" for e in excludes] + [f"weight-{w}" for w in weights]
    words += [f"set-{s.partition('=')[0]}" for s in sets]
    slug = re.sub(r"[^A-Za-z0-9]+", "-", "-".join(words)).strip("-").lower()[:48]
    return f"{recipe}-{slug}-{hash_obj(body)[:8]}"


def write_override(project: Path, name: str, body: dict[str, Any], argv: list[str]) -> Path:
    path = project / "recipes" / "overrides" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "# Written by: openrecipe rerun " + " ".join(argv) + "\n"
    path.write_text(header + yaml.safe_dump(body, sort_keys=True), encoding="utf-8")
    return path


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
    """Per stage: the view keys the override changes, and whether the stage dir on disk ran
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


def job_counts(output: str) -> dict[str, int]:
    """Snakemake's 'Job stats' table as {rule: count} (without 'all' and 'total')."""
    counts: dict[str, int] = {}
    if "Job stats:" not in output:
        return counts
    for line in output.split("Job stats:", 1)[1].splitlines()[3:]:
        match = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not match:
            break
        if match.group(1) not in ("all", "total"):
            counts[match.group(1)] = int(match.group(2))
    return counts


def snakemake(project: Path, configfiles: list[Path], *, dry_run: bool) -> tuple[int, str]:
    command = [sys.executable, "-m", "snakemake", "--profile", "workflow/profiles/local"]
    command += ["-n"] if dry_run else []
    command += ["--configfile", *(str(p) for p in configfiles)]
    done = subprocess.run(command, cwd=project, capture_output=True, text=True)
    return done.returncode, done.stdout + done.stderr


def rerun(
    project: Path,
    recipe_ref: str,
    excludes: list[str],
    weights: list[str],
    sets: list[str],
    *,
    dry_run: bool,
    argv: list[str],
) -> dict[str, Any]:
    recipe_path = (
        Path(recipe_ref)
        if recipe_ref.endswith((".yaml", ".yml"))
        else Path("recipes") / f"{recipe_ref}.yaml"
    )
    base = load_recipe(recipe_path, project=project)
    body = build_override(base, excludes, weights, sets)
    name = override_name(base.name, excludes, weights, sets, body)
    override = write_override(project, name, body, argv)
    rel_override = override.relative_to(project)
    new = load_recipe(recipe_path, [rel_override], project=project)
    configfiles = [recipe_path, rel_override]
    code, output = snakemake(project, configfiles, dry_run=True)
    if code != 0:
        raise OpenRecipeError(f"snakemake dry run failed:\n{output[-4000:]}")
    result: dict[str, Any] = {
        "override": rel_override.as_posix(),
        "views": view_changes(project, base, new),
        "planned": job_counts(output),
        "executed": None,
    }
    if not dry_run:
        code, output = snakemake(project, configfiles, dry_run=False)
        if code != 0:
            raise OpenRecipeError(f"snakemake failed:\n{output[-4000:]}")
        result["executed"] = job_counts(output)
    return result


def format_rerun(result: dict[str, Any]) -> str:
    lines = [f"override written: {result['override']}", "stage views (ours):"]
    for row in result["views"]:
        why = ("changed " + ", ".join(row["view_changed"])) if row["view_changed"] else "unchanged"
        lines.append(f"  {row['stage']:<24} view {why}; on disk: {row['on_disk']}")
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
        lines.append("dry run: nothing executed")
    return "\n".join(lines)
