"""Hostile recipes fail fast, by name: YAML aliases ("billion laughs"), ``.inf``/``.nan``,
numbers far outside any real model, and free-form ``options``. Each refusal names the file, the
line and the dotted field.

Before: a 20-line alias chain hung ``resolve`` for minutes, ``.nan``/``.inf`` and 1e18-sized
fields passed validation (tracebacks or hangs later), and ``options`` took anything."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from openrecipe.errors import RecipeError
from openrecipe.recipe import load_recipe

REPO = Path(__file__).resolve().parents[2]
BIG = 10**18


def write(project: Path, text: str) -> Path:
    path = project / "recipes" / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def refusal(project: Path, text: str) -> str:
    path = write(project, text)
    with pytest.raises(RecipeError) as err:
        load_recipe(path, project=project)
    return str(err.value)


def laughs(levels: int = 20) -> str:
    """Each anchor a list of ten aliases of the previous one: 10**20 leaves once expanded."""
    lines = ["name: bad", "extends: tiny", 'l0: &l0 ["lol"]']
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]")
    return "\n".join(lines) + "\n"


def test_billion_laughs_is_refused_fast_through_the_cli(project: Path) -> None:
    path = write(project, laughs())
    assert len(path.read_text().splitlines()) <= 22
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "openrecipe", "resolve", "recipes/bad.yaml"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"{path}:3: l0: YAML anchors and aliases are not allowed" in done.stderr
    assert "Traceback" not in done.stderr
    assert elapsed < 30


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("pretrain:\n  optimizer: &opt {lr: 0.001, min_lr: 0.0}\n", "4: pretrain.optimizer:"),
        ("model:\n  hidden_size: 64\nsft: {steps: *x}\n", "5: sft.steps:"),
        ("release:\n  unverified:\n    - a\n    - &u b\n", "6: release.unverified[1]:"),
        ("<<: {seed: 3}\nrl: {<<: *base}\n", "4: rl.<<:"),
    ],
)
def test_anchor_or_alias_anywhere_names_line_and_field(
    project: Path, text: str, where: str
) -> None:
    message = refusal(project, "name: bad\nextends: tiny\n" + text)
    assert f"bad.yaml:{where} YAML anchors and aliases are not allowed" in message


def test_deep_nesting_is_refused(project: Path) -> None:
    message = refusal(project, "name: bad\nextends: tiny\nx: " + "[" * 200 + "]" * 200 + "\n")
    assert "bad.yaml:3:" in message and "nested deeper than" in message


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", ".NaN"])
def test_non_finite_numbers_are_refused_by_line_and_field(project: Path, value: str) -> None:
    text = f"name: bad\nextends: tiny\npretrain:\n  optimizer:\n    lr: {value}\n"
    message = refusal(project, text)
    assert "bad.yaml:5: pretrain.optimizer.lr:" in message and "not a finite number" in message


def test_non_string_keys_are_refused(project: Path) -> None:
    message = refusal(project, "name: bad\nextends: tiny\neval:\n  on: 1\n")
    assert "bad.yaml:3: eval.True:" in message and "not a string" in message


SYNTHETIC = (
    "data:\n  sources:\n    - name: synthetic_math\n      kind: synthetic_math\n"
    "      version: '1'\n      license: CC0-1.0\n      lang: en\n      options: {OPTIONS}\n"
)


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        ("tokenizer:\n  vocab_size: BIG\n", "4: tokenizer.vocab_size", "greater than the maximum"),
        ("tokenizer:\n  vocab_size: 1.0e+18\n", "4: tokenizer.vocab_size", "not of type 'integer'"),
        ("model:\n  hidden_size: BIG\n", "4: model.hidden_size", "greater than the maximum"),
        ("model:\n  initializer_range: -1\n", "4: model.initializer_range", "less than or equal"),
        ("resources:\n  threads: BIG\n", "4: resources.threads", "greater than the maximum"),
        ("sft:\n  data:\n    n_train: BIG\n", "5: sft.data.n_train", "greater than the maximum"),
        ("seed: BIG\n", "3: seed", "greater than the maximum"),
        ("pretrain:\n  steps: 3.0\n", "4: pretrain.steps", "not of type 'integer'"),
        ("pretrain:\n  tokens: 1.0e+30\n", "4: pretrain.tokens", "greater than the maximum"),
        ("rl:\n  temperature: 1.0e+300\n", "4: rl.temperature", "greater than the maximum"),
        ("eval:\n  thinking_budgets: [BIG]\n", "4: eval.thinking_budgets[0]", "greater than"),
        (
            "resources:\n  slurm:\n    pretrain: {runtime: BIG}\n",
            "5: resources.slurm.pretrain.runtime",
            "greater than the maximum",
        ),
        (
            SYNTHETIC.replace("{OPTIONS}", "{n_docs: abc}"),
            "10: data.sources[0].options.n_docs",
            "not of type 'integer'",
        ),
        (
            SYNTHETIC.replace("{OPTIONS}", "{n_docs: BIG}"),
            "10: data.sources[0].options.n_docs",
            "greater than the maximum",
        ),
        (
            SYNTHETIC.replace("{OPTIONS}", "{n_docs: 5, shell: 'rm -rf /'}"),
            "10: data.sources[0].options.shell",
            "unknown key (allowed: n_docs, seed)",
        ),
    ],
)
def test_out_of_range_fields_are_refused_by_file_line_and_field(
    project: Path, text: str, where: str, what: str
) -> None:
    message = refusal(project, "name: bad\nextends: tiny\n" + text.replace("BIG", str(BIG)))
    assert f"bad.yaml:{where}: " in message and what in message, message


def test_options_of_a_kind_that_takes_none_are_refused(project: Path) -> None:
    tiny = yaml.safe_load((project / "recipes" / "tiny.yaml").read_text())
    sources = tiny["data"]["sources"]
    npm = next(i for i, s in enumerate(sources) if s["kind"] == "npm")
    sources[npm]["options"] = {"n_docs": 5}
    message = refusal(
        project, yaml.safe_dump({"name": "bad", "extends": "tiny", "data": {"sources": sources}})
    )
    assert f"data.sources[{npm}].options: " in message and "expected to be empty" in message


def _numeric_leaves(node: Any, defs: dict[str, Any], path: str) -> list[tuple[str, dict]]:
    """Every schema position that admits a number, with its (resolved) schema."""
    found = []
    if isinstance(node, dict):
        resolved = {**defs[node["$ref"].split("/")[-1]], **node} if "$ref" in node else node
        types = resolved.get("type")
        types = types if isinstance(types, list) else [types]
        if {"number", "integer"} & set(types):
            found.append((path, resolved))
        for key, value in node.items():
            if key not in ("$defs", "default", "enum", "const"):
                found += _numeric_leaves(value, defs, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _numeric_leaves(value, defs, f"{path}/{index}")
    return found


def test_every_numeric_field_of_the_schema_is_bounded_both_ways() -> None:
    schema = yaml.safe_load((REPO / "workflow/schemas/recipe.schema.yaml").read_text())
    leaves = _numeric_leaves(schema["properties"], schema["$defs"], "")
    assert len(leaves) > 100
    for path, sub in leaves:
        assert {"minimum", "exclusiveMinimum"} & set(sub), f"{path}: no lower bound"
        assert {"maximum", "exclusiveMaximum"} & set(sub), f"{path}: no upper bound"


def _objects(node: Any, path: str) -> list[tuple[str, dict]]:
    found = []
    if isinstance(node, dict):
        if node.get("type") == "object":
            found.append((path, node))
        for key, value in node.items():
            found += _objects(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _objects(value, f"{path}/{index}")
    return found


def test_no_object_of_the_schema_takes_untyped_keys() -> None:
    schema = yaml.safe_load((REPO / "workflow/schemas/recipe.schema.yaml").read_text())
    for path, sub in _objects(schema, ""):
        extra = sub.get("additionalProperties")
        assert extra is False or isinstance(extra, dict), f"{path}: free-form object"


def test_every_committed_recipe_resolves_through_the_cli(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bounds are generous enough for the full-size releases (25T tokens, 512 nodes)."""
    from openrecipe.cli import main

    monkeypatch.chdir(project)
    for path in sorted((project / "recipes").glob("*.yaml")):
        assert main(["resolve", str(path), "-o", str(project / "out.yaml")]) == 0, path
        assert load_recipe(path, project=project).name == path.stem


def test_a_resolved_recipe_with_shared_values_loads_back(project: Path) -> None:
    """The resolved copy never uses aliases (which the loader refuses), even for a value that
    occurs twice in memory."""
    from openrecipe.recipe import Recipe, dump_resolved, load_resolved

    recipe = load_recipe(project / "recipes" / "tiny.yaml", project=project)
    shared = ["x", "y"]
    data = {**recipe.data, "release": {**recipe.data["release"], "unverified": shared}}
    data["data"] = {**data["data"], "exclude": [{"ids": shared}]}
    path = project / "runs" / "tiny" / "recipe.resolved.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(dump_resolved(Recipe(data=data, files=recipe.files)), encoding="utf-8")
    assert "&id" not in path.read_text()
    assert load_resolved(path).get("data.exclude") == [{"ids": ["x", "y"]}]


def test_snakemake_dry_run_names_a_nan_without_a_traceback(tmp_path: Path) -> None:
    """Before: ``snakemake -n`` on a recipe with ``.nan`` crashed with a traceback."""
    import shutil

    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(REPO / "Snakefile", project / "Snakefile")
    for name in ("workflow", "recipes"):
        shutil.copytree(REPO / name, project / name)
    bad = write(project, "name: bad\nextends: tiny\npretrain:\n  optimizer:\n    lr: .nan\n")
    done = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--configfile", "recipes/bad.yaml"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert f"{bad}:5: pretrain.optimizer.lr: nan is not a finite number" in output
    assert "Traceback" not in output and 'File "' not in output, output
