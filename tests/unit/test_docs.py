"""docs/ stays true: every stage, CLI verb and module it names exists."""

from __future__ import annotations

import re
from pathlib import Path

from openrecipe.cli import build_parser
from openrecipe.registry import STAGE_MODULES

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _verbs() -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "verb")
    return set(sub.choices)


def test_every_verb_named_in_the_docs_exists() -> None:
    text = "\n".join(p.read_text(encoding="utf-8") for p in sorted(DOCS.glob("*.md")))
    named = set(re.findall(r"`openrecipe ([a-z][a-z_-]+)", text))
    assert named, "no verb found: the pattern is wrong"
    assert named <= _verbs() | set(STAGE_MODULES), named - _verbs()


def test_every_module_named_in_the_docs_exists() -> None:
    text = "\n".join(p.read_text(encoding="utf-8") for p in sorted(DOCS.glob("*.md")))
    root = Path(__file__).resolve().parents[2] / "src"
    for dotted in set(re.findall(r"openrecipe\.[a-z_.]+[a-z_]", text)):
        parts = dotted.split(".")
        # the longest prefix that is a module; the rest may be an attribute
        found = any(
            (root.joinpath(*parts[:n]).with_suffix(".py")).is_file()
            or (root.joinpath(*parts[:n]) / "__init__.py").is_file()
            for n in range(len(parts), 1, -1)
        )
        assert found, dotted


def test_every_path_in_the_layout_exists() -> None:
    text = (DOCS / "design.md").read_text(encoding="utf-8")
    layout = text.split("```", 2)[1]
    repo = DOCS.parent
    for line in layout.splitlines():
        name = line.split(" ", 1)[0].strip()
        if name and "<" not in name:
            assert (repo / name).exists(), name
