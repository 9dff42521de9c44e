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

Options:
- ``--exclude source=X[,lang=Y,...]``: one more ``data.exclude`` rule (fields as in the schema;
  a source the recipe does not name, or a language no source can hold, is refused);
- ``--weight src:NAME=F`` / ``--weight lang:CODE=F``: multiply that source's (or that
  language's: its sources' and its own ``lang:CODE`` weight key's) weight in every phase by F,
  then renormalise each phase to sum to 1 (the recipe requires it), so ``lang:es=2`` doubles
  Spanish relative to the rest;
- ``--set dotted.key=VALUE``: any field (VALUE parsed as YAML: numbers, lists, booleans).

The command line is recorded in the written file's first line as one shell-quoted comment;
arguments holding control or format characters (a newline could start a YAML key) are refused.
"""

from __future__ import annotations

import copy
import math
import os
import re
import shlex
import unicodedata
from pathlib import Path
from typing import Any

import yaml

from openrecipe.errors import OpenRecipeError, RecipeError
from openrecipe.hashing import hash_obj
from openrecipe.lineage.diff import changed_keys
from openrecipe.lineage.plan import dry_run as plan_dry_run
from openrecipe.lineage.plan import job_counts, run_snakemake, scratch_project
from openrecipe.lineage.share import choose_shared, link_shared, record_metadata
from openrecipe.manifest import MANIFEST_NAME, read_manifest
from openrecipe.recipe import (
    LANG_PREFIX,
    MULTI_LANG,
    STAGE_VIEWS,
    Recipe,
    lang_can_exist,
    load_recipe,
)

__all__ = ["build_override", "format_rerun", "job_counts", "rerun", "reweight", "view_changes"]

EXCLUDE_FIELDS = ("source", "license", "lang", "path_glob", "ids")
VARIANT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_DOTTED_KEY = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")
_NOT_SETTABLE = ("name", "extends")


def check_arguments(args: list[str]) -> None:
    """Refuse control and format characters (newline, NUL, bidi overrides...) in any argument:
    they could break out of the comment line that records the command."""
    for arg in args:
        bad = [c for c in arg if unicodedata.category(c)[0] == "C"]
        if bad:
            raise RecipeError(
                f"rerun: argument {arg!r} holds control character(s) "
                f"{', '.join(f'U+{ord(c):04X}' for c in bad)}; refused"
            )


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise RecipeError(f"--set {dotted}: {part} is not a mapping")
    node[parts[-1]] = value


def _no_aliases(item: str, value: str) -> None:
    """A YAML alias in one CLI value can expand exponentially when hashed: refuse it."""
    try:
        events = list(yaml.parse(value, Loader=yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise RecipeError(f"--set {item!r}: VALUE is not valid YAML: {exc}") from exc
    if any(isinstance(e, yaml.AliasEvent) or getattr(e, "anchor", None) for e in events):
        raise RecipeError(f"--set {item!r}: YAML anchors and aliases are not accepted")


def _finite(item: str, value: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise RecipeError(f"--set {item!r}: {value} is not a finite number")
    for child in (
        value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    ):
        _finite(item, child)


def parse_set(item: str) -> tuple[str, Any]:
    key, sep, value = item.partition("=")
    if not sep or not _DOTTED_KEY.match(key):
        raise RecipeError(f"--set {item!r}: expected dotted.key=VALUE (key of [A-Za-z0-9_.])")
    if key.split(".")[0] in _NOT_SETTABLE:
        raise RecipeError(f"--set {item!r}: {key} cannot be set (use --name for a variant)")
    _no_aliases(item, value)
    parsed = yaml.safe_load(value)
    _finite(item, parsed)
    return key, parsed


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


def _languages(sources: list[dict[str, Any]]) -> list[str]:
    return sorted({s["lang"] for s in sources})


def check_excludes(rules: list[dict[str, Any]], recipe: Recipe) -> None:
    """Refuse a rule that can match nothing because its source or language does not exist:
    excluding it would change no byte and then read as a proof of absence."""
    sources = recipe.data["data"]["sources"]
    names = sorted(s["name"] for s in sources)
    for rule in rules:
        if "source" in rule and rule["source"] not in names:
            raise RecipeError(
                f"--exclude source={rule['source']}: the recipe has no such source; "
                f"sources: {', '.join(names)}"
            )
        if "lang" in rule and not lang_can_exist(rule["lang"], sources):
            raise RecipeError(
                f"--exclude lang={rule['lang']}: no source declares that language or "
                f"'{MULTI_LANG}'; languages: {', '.join(_languages(sources))}"
            )


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
        kind, name = match.group(1), match.group(2)
        try:
            factor = float(match.group(3))
        except ValueError as exc:
            raise RecipeError(f"--weight {item!r}: {match.group(3)!r} is not a number") from exc
        if not math.isfinite(factor) or factor < 0:
            raise RecipeError(f"--weight {item!r}: the factor must be finite and >= 0")
        if kind == "src":
            chosen = [name] if name in sources else []
            valid = f"sources: {', '.join(sorted(sources))}"
        else:  # sources declaring the language, and the phases' own key for it
            chosen = [s for s, spec in sources.items() if spec.get("lang") == name]
            chosen += [k for k in keys if k == f"{LANG_PREFIX}{name}"]
            langs = {s["lang"] for s in sources.values()} - {MULTI_LANG}
            langs |= {k.removeprefix(LANG_PREFIX) for k in keys if k.startswith(LANG_PREFIX)}
            valid = f"languages: {', '.join(sorted(langs))}"
        if not chosen:
            raise RecipeError(
                f"--weight {item!r}: no source or weight key with {kind} {name!r}; {valid}"
            )
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
        key, value = parse_set(item)
        _set_dotted(override, key, value)
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


def file_text(body: dict[str, Any], argv: list[str]) -> str:
    """The written file: one comment line with the shell-quoted command, then the YAML."""
    check_arguments(argv)
    header = "# Written by: " + shlex.join(["openrecipe", "rerun", *argv])
    return header + "\n" + yaml.safe_dump(body, sort_keys=False, allow_unicode=False)


def check_variant_name(project: Path, base: Recipe, name: str, text: str, rel: str) -> None:
    """A variant name is a plain run name, not the original's, and not another recipe's."""
    if not VARIANT_NAME.match(name):
        raise RecipeError(
            f"--name {name!r}: expected lowercase letters, digits, '_' or '-' "
            "(at most 64, starting with a letter or digit)"
        )
    if name == base.name:
        raise RecipeError(
            f"--name {name}: that is the recipe's own name (omit --name to rerun in place)"
        )
    path = project / rel
    if path.exists() and path.read_text(encoding="utf-8") != text:
        raise RecipeError(
            f"--name {name}: {rel} already exists and is a different recipe; "
            "choose another name (or delete that file)"
        )
    resolved = project / "runs" / name / "recipe.resolved.yaml"
    if resolved.is_file():
        first = resolved.read_text(encoding="utf-8").split("\n", 1)[0]
        if rel not in first.removeprefix("# Resolved from: ").split(", "):
            raise RecipeError(
                f"--name {name}: runs/{name} holds a run of another recipe ({first}); "
                "choose another name"
            )


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
) -> dict[str, Any]:
    """Validate and plan the change in a scratch copy; unless ``dry_run``, write it, link the
    stages a variant shares with its original, and run the workflow."""
    check_arguments([recipe_ref, *excludes, *weights, *sets, *([name] if name else []), *argv])
    project = project.resolve()
    base_path = (project / _recipe_path(recipe_ref)).resolve()
    base = load_recipe(base_path, project=project)
    base_rel = base_path.relative_to(project).as_posix()
    body = build_override(base, excludes, weights, sets)
    args = {"excludes": excludes, "weights": weights, "sets": sets}
    rel, content = _written_file(project, base, base_path, body, name, args)
    text = file_text(content, argv)
    if name is not None:
        check_variant_name(project, base, name, text, rel)
    configfiles = [rel] if name else [base_rel, rel]
    with scratch_project(project, {rel: text}) as root:
        new = _load_in(root, base_rel, rel, name is not None)
        check_excludes([parse_exclude(e) for e in excludes], new)
        plan = plan_dry_run(root, configfiles)
    shared = choose_shared(project, base.name, name, plan.jobs) if name else []
    if shared:  # the variant's plan once the shared stages sit in runs/<variant>
        links = {name: {item.rel: item.source for item in shared}}
        with scratch_project(project, {rel: text}, links) as root:
            plan = plan_dry_run(root, configfiles)
    views = view_changes(project, base, new)
    shared_parts: dict[str, list[str]] = {}
    for item in shared:  # "pack", "evaluate/base", "langid_shards/000"
        stage, _, part = item.rel.partition("/")
        shared_parts.setdefault(stage.removesuffix("_shards"), []).append(part)
    for row in views:
        parts = shared_parts.get(row["stage"])
        if parts is not None:
            named = ", ".join(p for p in parts if p)
            row["on_disk"] = f"shared from runs/{base.name}" + (f" ({named})" if named else "")
    result: dict[str, Any] = {
        "override": rel,
        "variant": name,
        "written": False,
        "views": views,
        "shared": [f"runs/{base.name}/{s.rel} -> runs/{name}/{s.rel}" for s in shared],
        "planned": plan.counts,
        "executed": None,
    }
    if dry_run:
        return result
    write_atomic(project / rel, text)
    result["written"] = True
    if (
        load_recipe(
            project / configfiles[0], [project / p for p in configfiles[1:]], project=project
        ).data
        != new.data
    ):
        raise OpenRecipeError(f"{rel}: loads differently from the planned recipe; not run")
    link_shared(project, str(name), shared)
    record_metadata(project, configfiles, shared)
    code, output = run_snakemake(project, configfiles)
    if code != 0:
        raise OpenRecipeError(f"snakemake failed:\n{output[-4000:]}")
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
