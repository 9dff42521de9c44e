"""What ``docs/`` names must exist: the checker behind ``tests/unit/test_docs.py``.

Every backticked token of a page (and every line of its fenced blocks) is read as what it looks
like, and checked against the thing it names:

- ``openrecipe VERB --opt ...`` (also ``python -m openrecipe``): the verb is a subcommand of the
  real argparse parser (``openrecipe.cli.build_parser``) and each ``--opt`` one of its options;
  ``--set key=VALUE`` also names a recipe field;
- a lone ``--opt``: an option of some subcommand;
- ``openrecipe.a.b``: a module (the rest may be an attribute of it);
- a dotted recipe field (``sft.lr``, ``data.sources[*].sha256``): a path of the recipe schema;
- a file path (``src/openrecipe/stage.py``, ``workflow/rules/*.smk``, ``results/<recipe>/``):
  exists in the checkout, ``<placeholder>`` standing for any one name; paths the code creates
  (``runs/``, ``data/raw/``, ``data/hf/``, ``recipes/overrides/``, ``~``) are not in a checkout and are not
  checked, except that ``runs/<recipe>/NAME`` must name a stage;
- ``NAME`` next to "stage" or in a ``->`` chain: a stage of ``registry.STAGE_MODULES``;
- an ``UPPER_CASE`` identifier: appears in the code.

A page may declare the invented names of a worked example in an HTML comment,
``<!-- docs-truth: example NAME ... -->``; tokens containing one are not checked.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from openrecipe.cli import build_parser
from openrecipe.registry import STAGE_MODULES

REPO = Path(__file__).resolve().parents[2]
PATH_ROOTS = (REPO, REPO / "src" / "openrecipe")
# Made by running the code, so never in a checkout.
GENERATED = (
    "runs/",
    "data/raw/",
    "data/hf/",
    "data/hf-snapshots/",
    "recipes/overrides/",
    ".venv/",
    ".snakemake/",
    "~",
    "$",
    "/",
)
FILE_SUFFIXES = (".py", ".yaml", ".yml", ".md", ".smk", ".json", ".dvc", ".toml", ".txt", ".pub")
PLACEHOLDER = re.compile(r"<[^<>]*>")
PATH_TOKEN = re.compile(r"^[\w.<>*-]+(/[\w.<>*-]*)+$|^[\w<>*-]+\.(dvc|toml|smk)$")
DOTTED_FIELD = re.compile(r"^[a-z_]+(\[[*0-9]+\])?(\.[a-z0-9_]+(\[[*0-9]+\])?)+$")
EXAMPLE = re.compile(r"<!--\s*docs-truth:\s*example\s+(.*?)-->", re.S)
INLINE = re.compile(r"`([^`\n]+)`")
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
NEAR_STAGE = re.compile(
    r"(?:the |a )?`([a-z_]+)` stage\b|\bstage `([a-z_]+)`|`([a-z_]+)`\s*(?:\([^)]*\)\s*)?->|->\s*`([a-z_]+)`"
)
COMMAND = re.compile(r"^((\.venv/bin/)?python -m |\.venv/bin/)?openrecipe\s")
SELF = ("docs_truth.py", "test_docs.py")  # their own examples are not the code
UPPER = re.compile(r"^[A-Z][A-Z0-9]*(_[A-Z0-9]+)+$")


def _spec(dotted: str) -> importlib.machinery.ModuleSpec | None:
    try:
        return importlib.util.find_spec(dotted)
    except ModuleNotFoundError:
        return None


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@dataclass
class Truth:
    """The real names, read once: parser, registry, schema, code text, file tree."""

    stages: set[str] = field(default_factory=lambda: set(STAGE_MODULES))

    @cached_property
    def verbs(self) -> dict[str, set[str]]:
        return {
            verb: {s for a in sub._actions for s in a.option_strings}
            for verb, sub in _subparsers(build_parser()).items()
        }

    @cached_property
    def schema(self) -> dict[str, Any]:
        text = (REPO / "workflow" / "schemas" / "recipe.schema.yaml").read_text(encoding="utf-8")
        return yaml.safe_load(text)

    @cached_property
    def code_words(self) -> set[str]:
        words: set[str] = set()
        for folder in ("src", "workflow", "tests", "bench"):
            for path in (REPO / folder).rglob("*"):
                if path.name in SELF or path.suffix not in (".py", ".smk", ".yaml"):
                    continue
                if path.is_file():
                    words |= set(re.findall(r"\b[A-Z][A-Z0-9_]+\b", path.read_text("utf-8")))
        return words

    # -- single checks: each returns a complaint, or None ------------------------------------

    def field_problem(self, dotted: str) -> str | None:
        if self._resolve(self.schema, re.split(r"\.(?![^\[]*\])", dotted)):
            return None
        return f"recipe field {dotted!r} is not in workflow/schemas/recipe.schema.yaml"

    def _deref(self, node: dict[str, Any]) -> dict[str, Any]:
        while isinstance(node, dict) and "$ref" in node:
            node = self.schema["$defs"][node["$ref"].rsplit("/", 1)[1]]
        return node

    def _resolve(self, node: Any, parts: list[str]) -> bool:
        node = self._deref(node)
        if not parts:
            return True
        if not isinstance(node, dict):
            return False
        for key in ("anyOf", "oneOf", "allOf"):
            if any(self._resolve(branch, parts) for branch in node.get(key, [])):
                return True
        head, _, index = parts[0].partition("[")
        props = node.get("properties", {})
        if PLACEHOLDER.fullmatch(head) or head == "*":
            child = node.get("additionalProperties")
        elif head in props:
            child = props[head]
        elif isinstance(node.get("additionalProperties"), dict):
            child = node["additionalProperties"]
        else:
            return False
        if index:
            child = self._deref(child).get("items")
            if child is None:
                return False
        return self._resolve(child, parts[1:])

    def module_problem(self, dotted: str) -> str | None:
        """A module, or a module and one name it defines (``openrecipe.stage.run_stage``)."""
        module, _, attr = dotted.rpartition(".")
        if _spec(dotted) is not None:
            return None
        spec = _spec(module)
        if spec is None or spec.origin is None:
            return f"module {dotted!r} does not exist"
        source = Path(spec.origin).read_text(encoding="utf-8")
        name = re.escape(attr)
        if re.search(rf"^(?:async\s+)?(?:def|class)\s+{name}\b|^{name}\s*[:=]", source, re.M):
            return None
        return f"{module} defines no {attr!r}"

    def path_problem(self, path: str) -> str | None:
        if path.startswith(GENERATED) or "://" in path:
            if path.startswith("runs/<recipe>/"):
                stage = path.split("/")[2]
                if stage and not PLACEHOLDER.search(stage) and stage not in self.stages:
                    return f"{path!r}: {stage!r} is not a stage"
            return None
        pattern = PLACEHOLDER.sub("*", path.rstrip("/"))
        for root in PATH_ROOTS:
            if any(root.glob(pattern)) if "*" in pattern else (root / pattern).exists():
                return None
        return f"path {path!r} does not exist"

    def command_problems(self, command: str) -> list[str]:
        words = command.split()
        while words and not words[0].endswith("openrecipe"):
            words.pop(0)
        if len(words) < 2:
            return []
        verb = words[1].rstrip(":,.")
        if verb == "<stage>":  # every stage verb has the same options
            verb = next(iter(self.stages))
        elif PLACEHOLDER.search(verb):
            return []
        if verb not in self.verbs:
            return [f"`openrecipe {verb}`: no such verb"]
        problems = []
        for i, word in enumerate(words[2:], start=2):
            if word.startswith("--"):
                option = word.split("=", 1)[0]
                if option not in self.verbs[verb]:
                    problems.append(f"`openrecipe {verb} {option}`: no such option")
                elif option == "--set" and i + 1 < len(words):
                    key = words[i + 1].split("=", 1)[0]
                    if problem := self.field_problem(key):
                        problems.append(f"--set: {problem}")
        return problems

    # -- a whole page --------------------------------------------------------------------------

    def token_problems(self, token: str) -> list[str]:
        token = token.strip()
        token = token.split(" # ", 1)[0]  # a shell comment in a fenced block
        if COMMAND.match(token):
            return self.command_problems(token) + self._paths_in(token)
        if token.startswith("--"):
            option = token.split()[0].split("=", 1)[0]
            if not any(option in options for options in self.verbs.values()):
                return [f"option {option!r} belongs to no openrecipe verb"]
            return []
        if token.startswith("openrecipe."):
            return [p] if (p := self.module_problem(token.split("(")[0])) else []
        if UPPER.match(token):
            return [] if token in self.code_words else [f"{token!r} does not appear in the code"]
        if DOTTED_FIELD.match(token) and not token.endswith(FILE_SUFFIXES):
            top = token.split(".")[0].split("[")[0]
            if top in self.schema["properties"]:
                return [p] if (p := self.field_problem(token)) else []
            return []
        return self._paths_in(token)

    def _paths_in(self, text: str) -> list[str]:
        problems = []
        for word in text.split():
            word = word.strip("`,;:()\"'")
            if PATH_TOKEN.match(word) and (p := self.path_problem(word)):
                problems.append(p)
        return problems

    def page_problems(self, name: str, text: str) -> list[str]:
        examples = [w for m in EXAMPLE.findall(text) for w in m.split()]
        tokens = INLINE.findall(FENCE.sub("", text))
        for block in FENCE.findall(text):
            tokens += [line for line in block.splitlines() if line.strip()]
        problems = []
        for token in tokens:
            if any(example in token for example in examples):
                continue
            problems += self.token_problems(token)
        for groups in NEAR_STAGE.findall(FENCE.sub("", text)):
            for stage in filter(None, groups):
                if stage not in self.stages and not any(e == stage for e in examples):
                    problems.append(f"stage {stage!r} is not in registry.STAGE_MODULES")
        return [f"{name}: {p}" for p in dict.fromkeys(problems)]
