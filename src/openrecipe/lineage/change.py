"""What ``openrecipe rerun`` changes: its arguments checked and turned into a YAML body.

- ``--exclude FIELD=VALUE[,...]`` becomes one more ``data.exclude`` rule; a source the recipe
  does not name, or a language no source can hold, is refused with the valid ones listed
  (such a rule would change no byte and then read as a proof of absence);
- ``--weight src:NAME=F`` / ``lang:CODE=F`` rescales ``data.phases`` (each phase renormalised);
- ``--set dotted.key=VALUE`` sets one field (VALUE parsed as YAML; no anchors/aliases, finite
  numbers; ``name`` and ``extends`` belong to ``--name``).

The written file starts with the command as one shell-quoted comment line; an argument holding a
control or format character (a newline would start a YAML key of its own) is refused. Nothing
here writes; ``rerun`` validates the resolved result before anything is written.
"""

from __future__ import annotations

import copy
import math
import re
import shlex
import unicodedata
from pathlib import Path
from typing import Any

import yaml

from openrecipe.data.exclusion import CLI_FIELDS
from openrecipe.errors import RecipeError
from openrecipe.hashing import hash_obj
from openrecipe.recipe import LANG_PREFIX, MULTI_LANG, Recipe, lang_can_exist

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


# YAML 1.2's float (and JSON's number): PyYAML implements YAML 1.1, whose float needs a dot, so
# it reads ``1e-4`` as the string "1e-4"; every reader of ``--set sft.lr=1e-4`` means a number.
_YAML12_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)[eE][-+]?[0-9]+$")
_JSON_TYPES: dict[str, Any] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "null": lambda v: v is None,
}


def parse_set(item: str) -> tuple[str, Any]:
    key, sep, value = item.partition("=")
    if not sep or not _DOTTED_KEY.match(key):
        raise RecipeError(f"--set {item!r}: expected dotted.key=VALUE (key of [A-Za-z0-9_.])")
    if key.split(".")[0] in _NOT_SETTABLE:
        raise RecipeError(f"--set {item!r}: {key} cannot be set (use --name for a variant)")
    _no_aliases(item, value)
    parsed = yaml.safe_load(value)
    if isinstance(parsed, str) and _YAML12_FLOAT.match(value.strip()):
        parsed = float(value)  # unquoted 1e-4; a quoted "1e-4" stays a string
    _finite(item, parsed)
    return key, parsed


def _deref(node: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = {
            **schema["$defs"][node["$ref"].split("/")[-1]],
            **{k: v for k, v in node.items() if k != "$ref"},
        }
    return node


def field_schema(schema: dict[str, Any], dotted: str) -> dict[str, Any] | None:
    """The recipe schema of field ``dotted``; None where the schema does not say (a free-form
    mapping). A key the schema does not allow is refused with the allowed ones."""
    node = _deref(schema, schema)
    walked: list[str] = []
    for part in dotted.split("."):
        properties = node.get("properties", {})
        extra = node.get("additionalProperties")
        if part in properties:
            node = _deref(properties[part], schema)
        elif isinstance(extra, dict):
            node = _deref(extra, schema)
        elif extra is False:
            where = ".".join(walked) or "the recipe"
            raise RecipeError(
                f"--set {dotted}: unknown key {part!r} "
                f"({where} has: {', '.join(sorted(properties))})"
            )
        else:
            return None
        walked.append(part)
    return node


def check_set_type(dotted: str, value: Any, schema: dict[str, Any]) -> None:
    """Refuse a ``--set`` value whose type the schema's field does not take, naming both, before
    anything is planned (YAML reads ``yes`` as true and ``1e3`` here as a float)."""
    field = field_schema(schema, dotted)
    types = field.get("type") if field else None
    if types is None:
        return
    types = [types] if isinstance(types, str) else list(types)
    if not any(_JSON_TYPES[t](value) for t in types if t in _JSON_TYPES):
        got = "null" if value is None else type(value).__name__
        hint = "; quote it to pass a string" if "string" in types else ""
        raise RecipeError(
            f"--set {dotted}={value!r}: {dotted} takes {' or '.join(types)} "
            f"(workflow/schemas/recipe.schema.yaml), not {got}{hint}"
        )


def parse_exclude(text: str) -> dict[str, Any]:
    rule: dict[str, Any] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or key not in CLI_FIELDS or not value:
            raise RecipeError(
                f"--exclude {text!r}: expected FIELD=VALUE with FIELD in {CLI_FIELDS}"
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
    base: Recipe,
    excludes: list[str],
    weights: list[str],
    sets: list[str],
    schema: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The override body; each ``--set`` is type-checked against ``schema`` when given."""
    override: dict[str, Any] = {}
    if excludes:
        rules = list(base.data["data"].get("exclude", [])) + [parse_exclude(e) for e in excludes]
        _set_dotted(override, "data.exclude", rules)
    if weights:
        _set_dotted(override, "data.phases", reweight(base, weights))
    for item in sets:
        key, value = parse_set(item)
        if schema is not None:
            check_set_type(key, value, schema)
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
