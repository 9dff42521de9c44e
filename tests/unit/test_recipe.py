"""The recipe loader: extends, overrides, validation errors that name file and field, and the
per-stage view hashes that decide reruns."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from openrecipe.errors import RecipeError
from openrecipe.recipe import STAGE_VIEWS, dump_resolved, load_recipe, load_resolved


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_every_committed_recipe_loads(project: Path) -> None:
    for path in sorted((project / "recipes").glob("*.yaml")):
        recipe = load_recipe(path, project=project)
        assert recipe.name == path.stem


def test_extends_merges_and_records_origins(project: Path) -> None:
    recipe = load_recipe(project / "recipes" / "default.yaml", project=project)
    tiny = load_recipe(project / "recipes" / "tiny.yaml", project=project)
    assert recipe.get("pretrain.steps") == 300 and tiny.get("pretrain.steps") == 60
    assert recipe.get("model") == tiny.get("model")
    assert recipe.origin("pretrain.steps").startswith(str(project / "recipes" / "default.yaml"))
    assert recipe.origin("model.hidden_size").startswith(str(project / "recipes" / "tiny.yaml"))


def test_defaults_are_filled(project: Path) -> None:
    recipe = load_recipe(project / "recipes" / "tiny.yaml", project=project)
    assert recipe.get("rl.clip_low") == 0.2 and recipe.get("rl.clip_high") == 0.28
    assert recipe.get("backend") == "reference"


def test_unknown_key_names_file_line_and_field(project: Path) -> None:
    bad = write(
        project / "recipes" / "bad.yaml", "name: bad\nextends: tiny\npretrain:\n  stepz: 3\n"
    )
    with pytest.raises(RecipeError) as err:
        load_recipe(bad, project=project)
    message = str(err.value)
    assert "pretrain.stepz" in message and "unknown key" in message
    assert f"{bad}:4" in message


def test_wrong_type_names_field_and_expectation(project: Path) -> None:
    bad = write(
        project / "recipes" / "bad.yaml", "name: bad\nextends: tiny\npretrain:\n  steps: many\n"
    )
    with pytest.raises(RecipeError, match=r"pretrain\.steps: 'many' is not of type 'integer'"):
        load_recipe(bad, project=project)


def test_weights_must_sum_to_one(project: Path) -> None:
    text = (
        "name: bad\nextends: tiny\ndata:\n  phases:\n    - name: only\n      fraction: 1.0\n"
        "      weights: {brown: 0.7, austen: 0.5}\n"
    )
    bad = write(project / "recipes" / "bad.yaml", text)
    with pytest.raises(
        RecipeError, match=r"data\.phases\[0\]\.weights: sum is 1\.2, expected 1\.0"
    ):
        load_recipe(bad, project=project)


def test_weights_must_name_known_sources(project: Path) -> None:
    text = "name: bad\nextends: tiny\ndata:\n  phases:\n    - {name: only, fraction: 1.0, weights: {nope: 1.0}}\n"
    with pytest.raises(RecipeError, match="unknown source"):
        load_recipe(write(project / "recipes" / "bad.yaml", text), project=project)


def test_language_weight_keys(project: Path) -> None:
    # tiny's sources declare en and code: lang:en is drawable, lang:fr is not.
    phases = "data:\n  phases:\n    - {{name: only, fraction: 1.0, weights: {{{}}}}}\n"
    ok = write(
        project / "recipes" / "ok.yaml",
        "name: ok\nextends: tiny\n" + phases.format("python_stdlib: 0.5, 'lang:en': 0.5"),
    )
    assert load_recipe(ok, project=project).data["data"]["phases"][0]["weights"]["lang:en"] == 0.5
    bad = write(
        project / "recipes" / "bad.yaml",
        "name: bad\nextends: tiny\n" + phases.format("brown: 0.5, 'lang:fr': 0.5"),
    )
    with pytest.raises(RecipeError, match=r"weights\.lang:fr: no source declares lang 'fr'"):
        load_recipe(bad, project=project)


def test_duplicate_key_refused(project: Path) -> None:
    bad = write(project / "recipes" / "bad.yaml", "name: bad\nname: again\n")
    with pytest.raises(RecipeError, match="duplicate key"):
        load_recipe(bad, project=project)


def test_unsafe_yaml_tag_refused(project: Path) -> None:
    bad = write(
        project / "recipes" / "bad.yaml", "name: !!python/object/apply:os.system ['true']\n"
    )
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(bad, project=project)


def test_extends_cycle_refused(project: Path) -> None:
    write(project / "recipes" / "a.yaml", "name: a\nextends: b\n")
    write(project / "recipes" / "b.yaml", "name: b\nextends: a\n")
    with pytest.raises(RecipeError, match="cycle"):
        load_recipe(project / "recipes" / "a.yaml", project=project)


def test_paths_outside_project_refused(project: Path, tmp_path: Path) -> None:
    outside = write(tmp_path / "elsewhere.yaml", "name: x\n")
    with pytest.raises(RecipeError, match="outside"):
        load_recipe(outside, project=project)
    sneaky = write(project / "recipes" / "sneaky.yaml", "name: sneaky\nextends: ../../elsewhere\n")
    with pytest.raises(RecipeError, match="outside"):
        load_recipe(sneaky, project=project)


def test_override_applies_and_is_named_in_errors(project: Path) -> None:
    base = project / "recipes" / "tiny.yaml"
    good = write(project / "recipes" / "overrides" / "steps.yaml", "pretrain:\n  steps: 7\n")
    assert load_recipe(base, [good], project=project).get("pretrain.steps") == 7
    bad = write(project / "recipes" / "overrides" / "bad.yaml", "pretrain:\n  steps: -1\n")
    with pytest.raises(RecipeError) as err:
        load_recipe(base, [bad], project=project)
    assert f"{bad}:2" in str(err.value) and "pretrain.steps" in str(err.value)
    renaming = write(project / "recipes" / "overrides" / "rename.yaml", "name: other\n")
    with pytest.raises(RecipeError, match="may not rename"):
        load_recipe(base, [renaming], project=project)


def test_view_hash_ignores_formatting_and_key_order(project: Path) -> None:
    base = load_recipe(project / "recipes" / "tiny.yaml", project=project)
    data = yaml.safe_load((project / "recipes" / "tiny.yaml").read_text())
    data["model"] = dict(reversed(list(data["model"].items())))
    reordered = write(
        project / "recipes" / "tiny_reordered.yaml",
        "# a comment\n" + yaml.safe_dump(data, sort_keys=False),
    )
    other = load_recipe(reordered, project=project)
    for stage in STAGE_VIEWS:
        if stage != "report":
            assert base.view_hash(stage) == other.view_hash(stage), stage


def test_editing_one_section_changes_only_its_views(project: Path) -> None:
    base = load_recipe(project / "recipes" / "tiny.yaml", project=project)
    override = write(
        project / "recipes" / "overrides" / "eval.yaml", "eval:\n  max_new_tokens: 12\n"
    )
    edited = load_recipe(project / "recipes" / "tiny.yaml", [override], project=project)
    changed = {s for s in STAGE_VIEWS if base.view_hash(s) != edited.view_hash(s)}
    assert changed == {"evaluate"}
    weights = write(
        project / "recipes" / "overrides" / "weights.yaml",
        "data:\n  phases:\n    - {name: diversity, fraction: 0.8, weights: {python_stdlib: 0.1, brown: 0.5, austen: 0.3, synthetic_math: 0.1}}\n"
        "    - {name: quality, fraction: 0.2, weights: {python_stdlib: 0.2, brown: 0.2, austen: 0.3, synthetic_math: 0.3}}\n",
    )
    reweighted = load_recipe(project / "recipes" / "tiny.yaml", [weights], project=project)
    changed = {s for s in STAGE_VIEWS if base.view_hash(s) != reweighted.view_hash(s)}
    # the Megatron backend's stages read data.phases too (one job and one dataset per phase)
    assert changed == {"blend", "plan", "megatron_data"}


def test_acquire_view_is_per_source(project: Path) -> None:
    recipe = load_recipe(project / "recipes" / "tiny.yaml", project=project)
    view = recipe.view("acquire", "brown")
    assert [s["name"] for s in view["data.sources"]] == ["brown"]
    with pytest.raises(RecipeError, match="no source named"):
        recipe.view("acquire", "missing")


def test_resolved_recipe_loads_back_unchanged(project: Path) -> None:
    recipe = load_recipe(project / "recipes" / "default.yaml", project=project)
    resolved = write(project / "runs" / "default" / "recipe.resolved.yaml", dump_resolved(recipe))
    again = load_resolved(resolved)
    assert again.data == recipe.data
