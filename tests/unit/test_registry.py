"""The stage registry is the one list of stages, and adding a stage touches only its own files.

``test_the_stage_list_is_written_once`` greps the code for a literal list of stage names: on the
code before the registry (stage lists in cli/recipe views, common.smk, card.py, report.py,
certify.py, the e2e helpers) it fails. ``test_a_new_stage_needs_its_module_entry_and_schema``
adds a toy stage to a copy of the package and shows the CLI, the recipe view and the Snakemake
DAG pick it up (on the code before, the copy's entry was a name -> module map the rules never read).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest
import yaml

from openrecipe.cli import build_parser
from openrecipe.codeid import stage_code_identity
from openrecipe.paths import SCHEMA_RELPATH
from openrecipe.recipe import load_recipe
from openrecipe.registry import STAGES, ancestors, checkpoint_stages, stages_where

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "src" / "openrecipe"

# Tokens that may separate the items of a literal list, tuple, set, dict or argument list.
_SEPARATORS = {",", ":", "(", ")", "[", "]", "{", "}", "*"}
_SKIPPED = {tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT}


def stage_name_runs(text: str, names: set[str]) -> list[list[str]]:
    """Runs of 3+ string literals naming stages, separated only by punctuation and newlines."""
    runs: list[list[str]] = []
    run: list[str] = []

    def close() -> None:
        if len(run) >= 3:
            runs.append(list(run))
        run.clear()

    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type == tokenize.STRING:
            value = token.string.strip("\"'")
            if token.string[:1] in "\"'" and value in names:
                run.append(value)
                continue
            close()
        elif token.type in _SKIPPED or (token.type == tokenize.OP and token.string in _SEPARATORS):
            continue
        else:
            close()
    close()
    return runs


def _code_files() -> list[Path]:
    files = [REPO / "Snakefile"]
    for top in ("src", "workflow", "bench", "tests"):
        files += sorted((REPO / top).rglob("*.py")) + sorted((REPO / top).rglob("*.smk"))
    return [f for f in files if f != PACKAGE / "registry.py"]


def test_the_scanner_finds_a_stage_list() -> None:
    names = set(STAGES)
    assert stage_name_runs('X = ["curate", "langid",\n  "quality"]', names) == [
        ["curate", "langid", "quality"]
    ]
    assert stage_name_runs('{"base": "pretrain", "sft": "sft", "rl": "rl"}', names)
    assert not stage_name_runs('f("curate", x, "langid", "quality")', names)


def test_the_stage_list_is_written_once() -> None:
    """Outside registry.py, code derives stage lists from it. Library, workflow and bench code
    may not spell out even three stage names in a row; tests may name the stages they expect
    to rerun, but not the whole pipeline (more than half of the stages)."""
    names = set(STAGES)
    found = []
    for path in _code_files():
        limit = len(names) // 2 if path.is_relative_to(REPO / "tests") else 2
        for run in stage_name_runs(path.read_text(encoding="utf-8"), names):
            if len(run) > limit:
                found.append(f"{path.relative_to(REPO)}: {run}")
    assert not found, "stage lists outside openrecipe/registry.py:\n" + "\n".join(found)


def test_every_entry_is_wired() -> None:
    schema = yaml.safe_load((REPO / SCHEMA_RELPATH).read_text(encoding="utf-8"))
    sections = set(schema["properties"])
    for name, entry in STAGES.items():
        assert entry.name == name
        module = PACKAGE.parent.joinpath(*entry.module.split("."))
        assert module.with_suffix(".py").is_file() or (module / "__init__.py").is_file(), name
        assert set(entry.upstream) <= set(STAGES), name
        assert {path.split(".")[0] for path in entry.view} <= sections, name
    # registry order is the chain order: every stage comes after the stages it reads
    order = list(STAGES)
    assert all(order.index(u) < order.index(s.name) for s in STAGES.values() for u in s.upstream)
    assert ancestors("pack")[-1] == "tokenizer" and "curate" in ancestors("pack")
    assert list(checkpoint_stages()) == ["base", "sft", "rl", "dpo"]
    assert stages_where(scatter=True) == ["langid", "fuzzy_dedup", "quality", "decontam"]
    # The report reads its inputs named eval_<checkpoint> as evaluations, so no stage it reads
    # may be named like one (a stage called eval_tasks once became a checkpoint "tasks").
    assert not [s for s in stages_where(reported=True) if s.startswith("eval_")]


def test_the_cli_has_a_verb_per_stage() -> None:
    verbs = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert set(STAGES) <= set(verbs)


def test_an_unknown_stage_view_names_the_known_ones() -> None:
    recipe = load_recipe(REPO / "recipes" / "tiny.yaml", project=REPO)
    with pytest.raises(Exception, match="unknown stage 'nope'; stages: acquire, curate"):
        recipe.view("nope")


# ------------------------------------------------------------------------------------------
# Adding a stage: its module, its registry entry, its schema section. Nothing else.

TOY_MODULE = '''"""A toy stage: counts the documents of its input and writes a greeting."""

from __future__ import annotations

from openrecipe.stage import StageContext


def run(ctx: StageContext) -> dict[str, object]:
    docs = ctx.inputs.get("docs")
    count = sum(1 for _ in open(docs / "docs.jsonl", encoding="utf-8")) if docs else 0
    (ctx.out / "toy.txt").write_text(f"{ctx.cfg('toy.greeting')} {count}\\n", encoding="utf-8")
    return {"docs": count}
'''

TOY_ENTRY = """        Stage(
            "toy",
            "openrecipe.data.toy",
            view=("toy", "data.curation.shards"),
            inputs={"docs": "curate"},
            scatter=True,
        ),
"""


def _add_toy_stage(tmp: Path) -> tuple[Path, Path]:
    """A copy of the package and the project with the toy stage added; returns (src, project).
    Writes exactly three files: the module, the registry entry, the schema section."""
    src = tmp / "src"
    shutil.copytree(PACKAGE, src / "openrecipe", ignore=shutil.ignore_patterns("__pycache__"))
    project = tmp / "project"
    project.mkdir()
    for name in ("Snakefile", "workflow", "recipes", "pyproject.toml"):
        source = REPO / name
        copy = shutil.copytree if source.is_dir() else shutil.copy2
        copy(source, project / name)
    (src / "openrecipe" / "data" / "toy.py").write_text(TOY_MODULE, encoding="utf-8")
    registry = src / "openrecipe" / "registry.py"
    text = registry.read_text(encoding="utf-8")
    closing = "    )\n}\n"
    assert text.count(closing) == 1
    registry.write_text(text.replace(closing, TOY_ENTRY + closing), encoding="utf-8")
    schema_path = project / SCHEMA_RELPATH
    schema = schema_path.read_text(encoding="utf-8")
    section = (
        "  toy:\n    type: object\n    additionalProperties: false\n    default: {}\n"
        "    properties:\n      greeting: {type: string, default: hello, maxLength: 32}\n"
    )
    schema_path.write_text(schema.replace("\nproperties:\n", "\nproperties:\n" + section, 1))
    return src, project


def _run(project: Path, src: Path, *args: str, timeout: int = 300) -> str:
    env = {**os.environ, "PYTHONPATH": str(src)}
    done = subprocess.run(
        [sys.executable, *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def test_a_new_stage_needs_its_module_entry_and_schema(tmp_path: Path) -> None:
    src, project = _add_toy_stage(tmp_path)
    originals = {src: REPO / "src", project: REPO}
    changed = {
        path.relative_to(tmp_path).as_posix()
        for copy, original in originals.items()
        for path in copy.rglob("*")
        if path.is_file()
        and not (
            (original / path.relative_to(copy)).is_file()
            and path.read_bytes() == (original / path.relative_to(copy)).read_bytes()
        )
    }
    assert changed == {
        "src/openrecipe/data/toy.py",
        "src/openrecipe/registry.py",
        "project/workflow/schemas/recipe.schema.yaml",
    }

    # The other stages' code identities are untouched: the registry wires, it does not compute.
    for name in ("curate", "blend", "report"):
        copied = stage_code_identity(name, src / "openrecipe")["sha256"]
        assert copied == stage_code_identity(name)["sha256"], name

    # The CLI has the verb, and it runs the stage (here without its optional input).
    assert "toy" in _run(project, src, "-m", "openrecipe", "toy", "--help")
    _run(
        project,
        src,
        "-m",
        "openrecipe",
        "toy",
        "--recipe",
        "recipes/tiny.yaml",
        "--out",
        "runs/tiny/toy",
    )
    assert (project / "runs/tiny/toy/toy.txt").read_text(encoding="utf-8") == "hello 0\n"
    assert json.loads((project / "runs/tiny/toy/manifest.json").read_text())["stage"] == "toy"

    # The recipe has the view (schema default filled, the override reaches it).
    override = project / "recipes" / "toy_greeting.yaml"
    override.write_text("toy:\n  greeting: hi\n", encoding="utf-8")
    view = _run(
        project,
        src,
        "-c",
        "import json; from openrecipe.recipe import load_recipe;"
        "r = load_recipe('recipes/default.yaml', ['recipes/toy_greeting.yaml']);"
        "print(json.dumps(r.view('toy'), sort_keys=True))",
    )
    assert json.loads(view.strip().splitlines()[-1]) == {
        "data.curation.shards": 2,
        "toy": {"greeting": "hi"},
    }

    # The workflow has its rules: a scatter over the recipe's two shards, then the gather,
    # each reading the upstream stage the entry names.
    plan = _run(
        project,
        src,
        "-m",
        "snakemake",
        "-n",
        "-p",
        "--cores",
        "1",
        "--configfile",
        "recipes/default.yaml",
        "recipes/toy_greeting.yaml",
        "--",
        "runs/default/toy/manifest.json",
    )
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", plan.split("Job stats:", 1)[1], re.M))
    assert counts["toy_shard"] == "2" and counts["toy"] == "1" and counts["curate"] == "1"
    assert "-m openrecipe toy --recipe runs/default/recipe.resolved.yaml" in plan
    assert "--part shard-001 --input docs=runs/default/curate --out" in plan
    assert "--input docs=runs/default/curate --input shard_000=runs/default/toy_shards/000" in plan


def test_a_stand_in_runs_only_where_its_switch_is_set_and_two_for_one_stage_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dataclasses import replace

    from openrecipe import registry

    assert registry.stand_ins({"name": "x"}) == {}
    assert registry.stand_ins({"init": None}) == {}  # null is absent, as YAML's `init:` alone
    assert registry.stand_ins({"init": {"repo": "r"}}) == {"pretrain": "import"}
    # A second stand-in for pretrain behind a nested switch: either alone runs, both refuse.
    rival = replace(STAGES["import"], name="rival", active_when="graft.parent")
    monkeypatch.setitem(registry.STAGES, "rival", rival)
    assert registry.stand_ins({"graft": {"parent": "p"}}) == {"pretrain": "rival"}
    assert registry.stand_ins({"graft": {"other": 1}}) == {}
    with pytest.raises(ValueError, match=r"init:.*graft\.parent:.*stage pretrain"):
        registry.stand_ins({"init": {"repo": "r"}, "graft": {"parent": "p"}})
    # the real second stand-in: distill, switched on by derive:
    assert registry.stand_ins({"derive": {"parent": {}}}) == {"pretrain": "distill"}
    with pytest.raises(ValueError, match=r"init:.*derive:.*stage pretrain"):
        registry.stand_ins({"init": {"repo": "r"}, "derive": {"parent": {}}})
    assert registry.stand_in_stages() == ["import", "distill", "tokenizer_import", "rival"]
    assert registry.stand_ins({"tokenizer": {"pretrained": {"repo": "r"}}}) == {
        "tokenizer": "tokenizer_import"
    }
