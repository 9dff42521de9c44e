"""Load, merge, validate and hash recipes.

One way in: YAML (safe loader, duplicate keys refused) -> ``extends:`` chain -> override files ->
JSON Schema validation with defaults filled -> cross-field checks. Every error names the file and
the dotted field. Each stage sees only its *view* (a fixed list of dotted paths, its ``view`` in
``openrecipe.registry``), and the hash of that view is what decides whether the stage reruns.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from openrecipe.errors import RecipeError
from openrecipe.hashing import hash_obj
from openrecipe.paths import SCHEMA_RELPATH, find_project_root, resolve_inside
from openrecipe.registry import STAGES

# The config each stage depends on (its view, in openrecipe.registry). Editing anything outside a
# stage's view never reruns it. (Snakemake receives the view as the rule's params; the stage
# recomputes it and refuses to run if the two disagree.)
STAGE_VIEWS: dict[str, tuple[str, ...]] = {name: stage.view for name, stage in STAGES.items()}


@dataclass(frozen=True)
class Recipe:
    """A resolved, validated recipe. ``data`` is treated as read-only."""

    data: dict[str, Any]
    files: tuple[Path, ...]
    origins: dict[str, str] = field(default_factory=dict)  # dotted path -> "file:line"

    @property
    def name(self) -> str:
        return self.data["name"]

    def get(self, dotted: str) -> Any:
        return get_dotted(self.data, dotted)

    def view(self, stage: str, part: str | None = None) -> dict[str, Any]:
        return stage_view(self.data, stage, part)

    def view_hash(self, stage: str, part: str | None = None) -> str:
        return hash_obj(self.view(stage, part))

    def origin(self, dotted: str) -> str:
        """The file and line a field came from (the most specific recorded ancestor)."""
        parts = dotted.split(".")
        while parts:
            key = ".".join(parts)
            if key in self.origins:
                return self.origins[key]
            parts.pop()
        return str(self.files[-1]) if self.files else "<recipe>"


def get_dotted(data: dict[str, Any], dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def stage_view(data: dict[str, Any], stage: str, part: str | None = None) -> dict[str, Any]:
    """The config a stage depends on. ``part`` narrows per-item stages: acquisition of one source
    sees only that source's entry, so editing one source refetches only that one."""
    if stage not in STAGES:
        raise RecipeError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    view = {path: copy.deepcopy(get_dotted(data, path)) for path in STAGES[stage].view}
    if stage == "acquire" and part is not None:
        chosen = [s for s in view["data.sources"] if s["name"] == part]
        if not chosen:
            raise RecipeError(f"data.sources: no source named {part!r}")
        view = {"data.sources": chosen}
    return view


# --------------------------------------------------------------------------------------------
# YAML reading with line numbers and duplicate-key refusal


# A recipe is a few KB of hand-written YAML; these bounds make a hostile one fail fast.
MAX_RECIPE_BYTES = 1 << 20
MAX_DEPTH = 32


def _read_yaml(path: Path) -> tuple[dict[str, Any], dict[str, int]]:
    try:
        if path.stat().st_size > MAX_RECIPE_BYTES:
            raise RecipeError(
                f"{path}: {path.stat().st_size} bytes, over the {MAX_RECIPE_BYTES}-byte limit "
                "of a recipe"
            )
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{path}: cannot read recipe: {exc}") from exc
    try:
        _refuse_anchors(text, path)  # before anything expands an alias
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError(
            f"{path}: a recipe must be a mapping at top level, found {type(data).__name__}"
        )
    lines: dict[str, int] = {}
    _walk_nodes(node, "", path, lines)
    _refuse_odd_values(data, "", path, lines)
    return data, lines


def _event_path(stack: list[list[Any]]) -> str:
    dotted = ""
    for kind, key, _ in stack:
        if kind == "seq":
            dotted += f"[{key}]"
        elif key is not None:
            dotted = f"{dotted}.{key}" if dotted else str(key)
    return dotted or "<top>"


def _refuse_anchors(text: str, path: Path) -> None:
    """Refuse YAML anchors and aliases (and nesting deeper than ``MAX_DEPTH``), naming the line
    and field. Runs on the parser's event stream, which is linear in the text: a 20-line chain
    of aliases each doubling the last ("billion laughs") expands to 2**20 nodes only once
    something walks the composed graph, and nothing does before this check."""
    stack: list[list[Any]] = []  # per open collection: [kind, current key or index, expect key]

    def done() -> None:  # a node finished: a mapping alternates between key and value
        if stack and stack[-1][0] == "map":
            stack[-1][2] = not stack[-1][2]

    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            stack.pop()
            done()
            continue
        if not isinstance(event, yaml.NodeEvent):
            continue
        if stack and stack[-1][0] == "seq":
            stack[-1][1] += 1
        elif stack and stack[-1][2]:
            stack[-1][1] = event.value if isinstance(event, yaml.ScalarEvent) else "?"
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent) or event.anchor is not None:
            mark = f"*{event.anchor}" if isinstance(event, yaml.AliasEvent) else f"&{event.anchor}"
            raise RecipeError(
                f"{path}:{line}: {_event_path(stack)}: YAML anchors and aliases are not allowed "
                f"in a recipe (found {mark}); write the value out, or use extends:"
            )
        if isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
            kind = "map" if isinstance(event, yaml.MappingStartEvent) else "seq"
            stack.append([kind, None if kind == "map" else -1, True])
            if len(stack) > MAX_DEPTH:
                raise RecipeError(
                    f"{path}:{line}: {_event_path(stack)}: nested deeper than {MAX_DEPTH} levels"
                )
        else:
            done()


def _refuse_odd_values(node: Any, prefix: str, path: Path, lines: dict[str, int]) -> None:
    """Refuse what YAML can say but a recipe never means: ``.inf``/``.nan`` (no schema bound
    catches NaN: every comparison with it is false) and non-string keys (``on:`` is True)."""

    def fail(dotted: str, message: str) -> None:
        line = lines.get(dotted) or lines.get(prefix, 0)
        raise RecipeError(f"{path}:{line}: {dotted or '<top>'}: {message}")

    if isinstance(node, float) and not math.isfinite(node):
        fail(prefix, f"{node} is not a finite number")
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else ()
    )
    for key, value in items:
        if isinstance(node, dict):
            dotted = f"{prefix}.{key}" if prefix else str(key)
            if not isinstance(key, str):
                fail(dotted, f"key {key!r} is a {type(key).__name__}, not a string; quote it")
        else:
            dotted = f"{prefix}[{key}]"
        _refuse_odd_values(value, dotted, path, lines)


def _walk_nodes(node: Any, prefix: str, path: Path, lines: dict[str, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            dotted = f"{prefix}.{key}" if prefix else key
            if key in seen:
                raise RecipeError(f"{path}:{key_node.start_mark.line + 1}: {dotted}: duplicate key")
            seen.add(key)
            lines[dotted] = key_node.start_mark.line + 1
            _walk_nodes(value_node, dotted, path, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            dotted = f"{prefix}[{index}]"
            lines[dotted] = item.start_mark.line + 1
            _walk_nodes(item, dotted, path, lines)


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """Mappings merge key by key; lists and scalars in ``top`` replace those in ``base``."""
    merged = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _claim_origins(origins: dict[str, str], lines: dict[str, int], path: Path) -> None:
    """Fields set by a later file take that file as origin (descendants included)."""
    for dotted, line in lines.items():
        for stale in [
            k for k in origins if k.startswith(dotted + ".") or k.startswith(dotted + "[")
        ]:
            del origins[stale]
        origins[dotted] = f"{path}:{line}"


# --------------------------------------------------------------------------------------------
# Loading


def _recipe_file(ref: str, project: Path, referrer: Path | None) -> Path:
    name = ref if ref.endswith((".yaml", ".yml")) else f"{ref}.yaml"
    base = referrer.parent if referrer is not None else project
    candidate = base / name
    if not candidate.exists() and referrer is not None:
        candidate = project / "recipes" / name
    where = f"{referrer}: extends" if referrer else "recipe"
    resolved = resolve_inside(candidate, [project], where)
    if not resolved.is_file():
        raise RecipeError(f"{where}: recipe {ref!r} not found (looked for {resolved})")
    return resolved


def _load_chain(
    path: Path, project: Path, seen: tuple[Path, ...]
) -> tuple[dict, dict[str, str], list[Path]]:
    if path in seen:
        chain = " -> ".join(str(p) for p in (*seen, path))
        raise RecipeError(f"{path}: extends: cycle ({chain})")
    data, lines = _read_yaml(path)
    parent_ref = data.pop("extends", None)
    if parent_ref is None:
        origins: dict[str, str] = {}
        _claim_origins(origins, lines, path)
        return data, origins, [path]
    if not isinstance(parent_ref, str):
        raise RecipeError(
            f"{path}:{lines.get('extends', 0)}: extends: expected a recipe name, found {parent_ref!r}"
        )
    parent_path = _recipe_file(parent_ref, project, path)
    parent, origins, files = _load_chain(parent_path, project, (*seen, path))
    lines.pop("extends", None)
    _claim_origins(origins, lines, path)
    return _deep_merge(parent, data), origins, [*files, path]


def load_recipe(
    path: str | Path,
    overrides: list[str | Path] | tuple[str | Path, ...] = (),
    project: Path | None = None,
) -> Recipe:
    """Resolve ``path`` (+ override files, applied in order), validate, fill defaults."""
    project = project or find_project_root()
    recipe_path = resolve_inside(path, [project], "recipe")
    if not recipe_path.is_file():
        raise RecipeError(f"recipe {path}: file not found")
    data, origins, files = _load_chain(recipe_path, project, ())
    sidecar = _origins_path(recipe_path)
    if sidecar.is_file() and not overrides:
        # A resolved recipe: report fields at the lines of the files they came from.
        origins = json.loads(sidecar.read_text(encoding="utf-8"))
    for override in overrides:
        override_path = resolve_inside(override, [project], "override")
        odata, olines = _read_yaml(override_path)
        if "extends" in odata:
            raise RecipeError(f"{override_path}: extends: not allowed in an override file")
        if "name" in odata:
            raise RecipeError(f"{override_path}: name: an override may not rename the run")
        data = _deep_merge(data, odata)
        _claim_origins(origins, olines, override_path)
        files.append(override_path)
    recipe = Recipe(data=data, files=tuple(files), origins=origins)
    validate(recipe, project)
    return recipe


def _origins_path(resolved: Path) -> Path:
    return resolved.with_name(resolved.stem + ".origins.json")


def write_resolved(recipe: Recipe, target: Path, project: Path) -> bool:
    """Write the resolved recipe and its origins sidecar; only when they change (returns True)."""
    prefix = str(project.resolve()) + "/"
    origins = {k: v.removeprefix(prefix) for k, v in sorted(recipe.origins.items())}
    texts = {
        target: dump_resolved(recipe, project),
        _origins_path(target): json.dumps(origins, indent=1) + "\n",
    }
    changed = False
    for path, text in texts.items():
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
        changed = True
    return changed


def load_resolved(path: str | Path) -> Recipe:
    """Load a resolved recipe written by ``write_resolved`` (no extends, defaults present)."""
    path = Path(path)
    data, lines = _read_yaml(path)
    origins: dict[str, str] = {}
    _claim_origins(origins, lines, path)
    recipe = Recipe(data=data, files=(path,), origins=origins)
    validate(recipe, find_project_root(path.parent))
    return recipe


def dump_resolved(recipe: Recipe, project: Path | None = None) -> str:
    prefix = str(project.resolve()) + "/" if project else ""
    header = (
        "# Resolved from: " + ", ".join(str(p).removeprefix(prefix) for p in recipe.files) + "\n"
    )
    return header + yaml.dump(
        recipe.data, Dumper=_NoAliasDumper, sort_keys=True, allow_unicode=True
    )


class _NoAliasDumper(yaml.SafeDumper):
    """Writes a value that occurs twice in full both times: the loader refuses aliases, so a
    resolved recipe must never contain one (PyYAML emits ``&id001`` for shared objects)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


# --------------------------------------------------------------------------------------------
# Validation


@cache
def _schema(project: Path) -> dict[str, Any]:
    schema_path = project / SCHEMA_RELPATH
    with open(schema_path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def _dotted(path: Any) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<top>"


def _fill_defaults(schema: dict[str, Any], node: Any, root: dict[str, Any]) -> None:
    """Insert schema ``default`` values for absent properties, recursively."""
    if "$ref" in schema:
        schema = root["$defs"][schema["$ref"].split("/")[-1]]
    if isinstance(node, dict):
        for key, sub in schema.get("properties", {}).items():
            if key not in node and "default" in sub:
                node[key] = copy.deepcopy(sub["default"])
            if key in node:
                _fill_defaults(sub, node[key], root)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key, value in node.items():
                if key not in schema.get("properties", {}):
                    _fill_defaults(extra, value, root)
    elif isinstance(node, list) and isinstance(schema.get("items"), dict):
        for item in node:
            _fill_defaults(schema["items"], item, root)


def _pattern(validator: Any, pattern: str, instance: Any, schema: dict[str, Any]) -> Any:
    """``pattern`` with JSON Schema's (ECMA-262) ``$``: the end of the string. Python's ``$``
    also matches before a final newline, so ``"1.2.3\\n"`` would pass ``^[0-9.]+$``."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    if validator.is_type(instance, "string") and not re.search(pattern, instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


# JSON Schema counts 1.0e+18 as an integer; a recipe's counts must be written as integers (a float
# that passes would reach range() or a tensor shape).
_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    validators={"pattern": _pattern},
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _checker, value: isinstance(value, int) and not isinstance(value, bool)
    ),
)


def _message(error: jsonschema.ValidationError) -> str:
    """jsonschema's message, except that a failed ``pattern`` says what the pattern means (the
    schema's ``description`` of it) rather than printing the regular expression."""
    if error.validator == "pattern" and "description" in error.schema:
        return f"{error.instance!r} is not {error.schema['description']}"
    return error.message


def validate(recipe: Recipe, project: Path) -> None:
    schema = _schema(project)
    validator = _Validator(schema)
    errors = sorted(
        validator.iter_errors(recipe.data), key=lambda e: list(map(str, e.absolute_path))
    )
    if errors:
        lines = []
        for error in errors[:10]:
            dotted = _dotted(error.absolute_path)
            if error.validator == "additionalProperties":
                extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
                dotted = ".".join(p for p in (dotted if dotted != "<top>" else "", extra[0]) if p)
                message = f"unknown key (allowed: {', '.join(sorted(error.schema.get('properties', {})))})"
            else:
                message = _message(error)
            lines.append(f"{recipe.origin(dotted)}: {dotted}: {message}")
        raise RecipeError("invalid recipe:\n  " + "\n  ".join(lines))
    _fill_defaults(schema, recipe.data, schema)
    _check_cross_fields(recipe)


LANG_PREFIX = "lang:"  # a blend weight keyed by language: data.phases[*].weights["lang:es"]
MULTI_LANG = "multi"  # a source of many languages; langid labels each document


def lang_can_exist(lang: str, sources: list[dict[str, Any]]) -> bool:
    """Whether any source could hold documents in ``lang`` (declares it, or is multilingual)."""
    return any(s["lang"] in (lang, MULTI_LANG) for s in sources)


def _fail(recipe: Recipe, dotted: str, message: str) -> None:
    raise RecipeError(f"{recipe.origin(dotted)}: {dotted}: {message}")


def _check_cross_fields(recipe: Recipe) -> None:
    data = recipe.data
    source_names = [s["name"] for s in data["data"]["sources"]]
    if len(set(source_names)) != len(source_names):
        _fail(recipe, "data.sources", f"duplicate source names in {source_names}")
    for index, source in enumerate(data["data"]["sources"]):
        if source["kind"] in ("debian", "npm", "pypi") and "package" not in source:
            _fail(recipe, f"data.sources[{index}].package", f"required for kind {source['kind']!r}")
        if source["kind"] == "hf_dataset":
            for key in ("dataset", "revision"):
                if key not in source:
                    _fail(recipe, f"data.sources[{index}].{key}", "required for kind 'hf_dataset'")
        elif source["kind"] != "synthetic_math" and "sha256" not in source:
            _fail(
                recipe,
                f"data.sources[{index}].sha256",
                "required: every fetched source is pinned by hash",
            )
    total_fraction = 0.0
    for index, phase in enumerate(data["data"]["phases"]):
        where = f"data.phases[{index}].weights"
        lang_keys = sorted(k for k in phase["weights"] if k.startswith(LANG_PREFIX))
        unknown = sorted(set(phase["weights"]) - set(source_names) - set(lang_keys))
        if unknown:
            _fail(
                recipe,
                where,
                f"unknown source(s) {unknown}; keys are sources {source_names} or "
                f"'{LANG_PREFIX}<code>'",
            )
        for key in lang_keys:
            lang = key.removeprefix(LANG_PREFIX)
            if not lang_can_exist(lang, data["data"]["sources"]):
                _fail(
                    recipe,
                    f"{where}.{key}",
                    f"no source declares lang {lang!r} or 'multi', so no document can have it",
                )
        weight_sum = sum(phase["weights"].values())
        if not math.isclose(weight_sum, 1.0, abs_tol=1e-6):
            _fail(recipe, where, f"sum is {weight_sum:g}, expected 1.0")
        total_fraction += phase["fraction"]
    if not math.isclose(total_fraction, 1.0, abs_tol=1e-6):
        _fail(recipe, "data.phases", f"fractions sum to {total_fraction:g}, expected 1.0")
    model = data["model"]
    if model["num_attention_heads"] % model["num_key_value_heads"]:
        _fail(recipe, "model.num_key_value_heads", "must divide model.num_attention_heads")
    if "E" in model["hybrid_override_pattern"] and "n_routed_experts" not in model:
        _fail(recipe, "model.n_routed_experts", "required when the pattern has MoE ('E') layers")
    if "E" in model["hybrid_override_pattern"]:
        for key in ("moe_intermediate_size", "moe_shared_expert_intermediate_size"):
            if model.get(key, 0) % 4:
                # transformers' grouped_mm experts need 16-byte row strides (fp32: 4 elements).
                _fail(recipe, f"model.{key}", f"{model[key]} is not a multiple of 4")
    pretrain = data["pretrain"]
    n_layers = len(model["hybrid_override_pattern"])
    if pretrain["bf16_first_layers"] + pretrain["bf16_last_layers"] > n_layers:
        _fail(recipe, "pretrain.bf16_last_layers", f"first + last exceed the {n_layers} layers")
    schedule = pretrain["schedule"]
    if schedule["warmup_fraction"] + schedule["decay_fraction"] > 1:
        _fail(recipe, "pretrain.schedule", "warmup_fraction + decay_fraction exceed 1")
    if pretrain["optimizer"]["min_lr"] > pretrain["optimizer"]["lr"]:
        _fail(recipe, "pretrain.optimizer.min_lr", "greater than lr")
    if data["rl"]["clip_low"] >= 1:
        _fail(recipe, "rl.clip_low", "must be below 1 (ratio lower bound is 1 - clip_low)")
