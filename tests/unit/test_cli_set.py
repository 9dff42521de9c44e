"""``openrecipe rerun --set``: ``sft.lr=1e-4`` is a number (YAML 1.1 read it as a string), and a
value of the wrong type for its schema field is refused by name before anything is planned."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from openrecipe.cli import main
from openrecipe.errors import RecipeError
from openrecipe.lineage.change import build_override, check_set_type, parse_set
from openrecipe.recipe import load_recipe

REPO = Path(__file__).resolve().parents[2]
SCHEMA = yaml.safe_load((REPO / "workflow/schemas/recipe.schema.yaml").read_text())


@pytest.mark.parametrize(
    ("item", "value"),
    [
        ("sft.lr=1e-4", 1e-4),
        ("sft.lr=1E-4", 1e-4),
        ("rl.lr=-2.5e-05", -2.5e-5),
        ("sft.lr=.5e-3", 5e-4),
        ("rl.lr=3.0e-4", 3e-4),  # YAML 1.1 already read this one
        ("sft.lr=0.001", 0.001),
        ("sft.steps=10", 10),
        ('release.description="1e-4"', "1e-4"),  # quoted: stays a string
        ("release.description=1e-4 steps", "1e-4 steps"),
    ],
)
def test_set_values_parse_as_yaml_1_2_numbers(item: str, value: object) -> None:
    key, parsed = parse_set(item)
    assert parsed == value and type(parsed) is type(value)
    check_set_type(key, parsed, SCHEMA)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("sft.lr=abc", r"sft\.lr takes number .*not str"),
        ('sft.lr="1e-4"', r"sft\.lr takes number .*not str"),
        ("sft.steps=1e3", r"sft\.steps takes integer .*not float"),
        ("release.description=yes", r"release\.description takes string .*not bool; quote it"),
        ("sft.lrr=1", r"unknown key 'lrr' \(sft has: batch_size, .*lr, "),
    ],
)
def test_wrong_type_is_refused_naming_the_field(item: str, message: str) -> None:
    key, parsed = parse_set(item)
    with pytest.raises(RecipeError, match=message):
        check_set_type(key, parsed, SCHEMA)


def test_set_lr_override_loads_as_a_float(project: Path) -> None:
    """The body rerun writes for ``--set sft.lr=1e-4`` validates, and the recipe holds 0.0001."""
    base = load_recipe(project / "recipes" / "tiny.yaml", project=project)
    body = build_override(base, [], [], ["sft.lr=1e-4"], SCHEMA)
    override = project / "recipes" / "overrides" / "lr.yaml"
    override.parent.mkdir(exist_ok=True)
    override.write_text(yaml.safe_dump(body))
    recipe = load_recipe(project / "recipes" / "tiny.yaml", [override], project=project)
    assert recipe.get("sft.lr") == 1e-4 and isinstance(recipe.get("sft.lr"), float)


def test_cli_refuses_a_mistyped_set_and_writes_nothing(project: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(project)
    assert main(["rerun", "tiny", "--set", "sft.lr=fast", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("openrecipe rerun: error: --set sft.lr='fast': sft.lr takes number")
    assert not (project / "recipes" / "overrides").exists()
