"""``openrecipe releases --fidelity``: every release, every field, a status; the published data
file is checked; a recipe that drifts from a published value turns ``differs``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from test_releases import FULL

from openrecipe.cli import main
from openrecipe.fidelity import (
    DATA_FILE,
    FIELDS,
    STATUSES,
    PublishedDataError,
    fidelity,
    full_size_recipes,
    load_published,
)

PROJECT = Path(__file__).resolve().parents[2]

FULL_SIZE = set(FULL)  # the nine releases, as test_releases lists them


@pytest.fixture(scope="module")
def table() -> dict:
    return fidelity(PROJECT)


def _row(table: dict, release: str, field: str) -> dict:
    return next(r for r in table[release]["rows"] if r["field"] == field)


def test_every_release_has_every_field_with_a_status(table) -> None:
    assert set(table) == FULL_SIZE == set(full_size_recipes(PROJECT))
    for release, entry in table.items():
        assert [r["field"] for r in entry["rows"]] == list(FIELDS), release
        for row in entry["rows"]:
            assert row["status"] in STATUSES, (release, row)
            assert row["recipe"], (release, row)  # where the recipe's value comes from
            if row["status"] != "unpublished":
                assert row["source"], (release, row)
        assert sum(entry["counts"].values()) == len(FIELDS)


def test_applied_corrections_read_matched(table) -> None:
    # arXiv 2509.25149 appendix A.1: Mamba head dim 64, 160 heads (was 128 x 80)
    for field, value in (("mamba_heads", 160), ("mamba_head_dim", 64)):
        row = _row(table, "nvfp4_12b", field)
        assert (row["ours"], row["published"], row["status"]) == (value, value, "matched")
    # Nemotron 3 Nano SFT: 800 warm-up steps (was 10% of 13,000 = 1,300)
    row = _row(table, "nemotron_3_nano_30b_a3b", "sft_warmup_steps")
    assert (row["ours"], row["status"]) == (800, "matched")
    assert row["recipe"].endswith("sft_warmup_steps()")


def test_corrections_not_applied_show_as_differs_or_not_expressible(table) -> None:
    # The corrections left unapplied (they would reach committed proxy results, or the schema
    # has no field): when one is applied, its line here turns into a "matched" check.
    twelve = {f: _row(table, "nemotron_nano_12b_v2_base", f) for f in FIELDS}
    assert twelve["precision_scaling"]["status"] == "differs"
    assert twelve["precision_scaling"]["ours"].startswith("fp8 per-tensor")  # the plan's flags
    assert twelve["decay_fraction"]["status"] == "differs"
    assert (twelve["data_phases"]["ours"], twelve["data_phases"]["published"]) == (2, 3)
    assert twelve["long_context"]["status"] == "not expressible"
    for release in ("nemotron_h_47b", "nemotron_nano_9b_v2"):
        row = _row(table, release, "derivation")
        assert (row["ours"], row["status"]) == ("trained from scratch", "differs")
        assert row["published"].startswith("pruned and distilled")
    assert _row(table, "nvfp4_12b", "data_phase_fractions")["status"] == "differs"
    mtp = _row(table, "nemotron_3_super_120b_a12b", "mtp_loss_scale")
    assert (mtp["ours"], mtp["published"], mtp["status"]) == (
        "not expressible",
        0.3,
        "not expressible",
    )


def test_disputed_values_are_unverified(table) -> None:
    row = _row(table, "nemotron_h_8b", "position_embedding")
    assert row["status"] == "unverified"
    assert {row["published"], row["conflicting"]["value"]} == {"none", "rope"}
    assert _row(table, "nemotron_3_super_120b_a12b", "bf16_last_layers")["status"] == "unverified"


def _project_copy(tmp_path: Path) -> Path:
    shutil.copytree(PROJECT / "recipes", tmp_path / "recipes")
    shutil.copytree(PROJECT / "workflow" / "schemas", tmp_path / "workflow" / "schemas")
    (tmp_path / "pyproject.toml").write_text("", encoding="utf-8")
    return tmp_path


def test_a_recipe_edit_turns_a_matched_field_to_differs(tmp_path) -> None:
    project = _project_copy(tmp_path)
    path = project / "recipes" / "nvfp4_12b.yaml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("  mamba_num_heads: 160\n", "  mamba_num_heads: 128\n"), "utf-8")
    nano3 = project / "recipes" / "nemotron_3_nano_30b_a3b.yaml"
    text = nano3.read_text(encoding="utf-8")
    assert "  warmup_fraction: 0.0615385\n" in text
    nano3.write_text(text.replace("  warmup_fraction: 0.0615385\n", ""), "utf-8")
    table = fidelity(project, names=["nvfp4_12b", "nemotron_3_nano_30b_a3b"])
    row = _row(table, "nvfp4_12b", "mamba_heads")
    assert (row["ours"], row["status"]) == (128, "differs")
    row = _row(table, "nemotron_3_nano_30b_a3b", "sft_warmup_steps")
    assert (row["ours"], row["status"]) == (1300, "differs")  # the schema's default 10%


def _write(tmp_path: Path, releases: dict) -> Path:
    path = tmp_path / "published.yaml"
    path.write_text(yaml.safe_dump({"releases": releases}), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("releases", "message"),
    [
        ({"nemotron_h_9b": {}}, r"releases\.nemotron_h_9b: unknown release"),
        (
            {"nemotron_h_8b": {"hidden": {"value": 1, "source": "arXiv 2504.03624"}}},
            r"releases\.nemotron_h_8b\.hidden: unknown field",
        ),
        ({"nemotron_h_8b": {"layers": {"value": 52}}}, r"nemotron_h_8b\.layers: missing source"),
        (
            {"nemotron_h_8b": {"layers": {"value": 52, "source": "the paper"}}},
            r"nemotron_h_8b\.layers: source 'the paper'",
        ),
        (
            {"nemotron_h_8b": {"layers": {"source": "arXiv 2504.03624"}}},
            r"nemotron_h_8b\.layers: missing value",
        ),
        (
            {
                "nemotron_h_8b": {
                    "layers": {
                        "value": 52,
                        "source": "arXiv 2504.03624",
                        "conflicting": {"value": 1},
                    }
                }
            },
            r"nemotron_h_8b\.layers\.conflicting: expected value and source",
        ),
        (
            {"nemotron_h_8b": {"layers": {"value": 52, "source": "arXiv 2504.03624", "x": 1}}},
            r"nemotron_h_8b\.layers: unknown keys \['x'\]",
        ),
    ],
)
def test_published_file_is_checked(tmp_path, releases, message) -> None:
    path = _write(tmp_path, releases)
    with pytest.raises(PublishedDataError, match=message):
        load_published(path, FULL_SIZE)


def test_shipped_file_is_valid_and_names_only_full_size_releases() -> None:
    published = load_published(DATA_FILE, FULL_SIZE)
    assert set(published) == FULL_SIZE


def test_cli_bad_data_file_is_a_named_error(tmp_path, capsys, monkeypatch) -> None:
    import openrecipe.fidelity as fidelity_module

    monkeypatch.chdir(PROJECT)
    bad = _write(tmp_path, {"nemotron_h_8b": {"layers": {"value": 52}}})
    monkeypatch.setattr(fidelity_module, "DATA_FILE", bad)
    assert main(["releases", "--fidelity"]) == 2
    assert "missing source" in capsys.readouterr().err


def test_cli_prints_table_and_json(capsys, monkeypatch, table) -> None:
    monkeypatch.chdir(PROJECT)
    assert main(["releases", "--fidelity"]) == 0
    out = capsys.readouterr().out
    assert "summary (fields per status):" in out
    for release, entry in table.items():
        counts = ", ".join(f"{n} {s}" for s, n in entry["counts"].items())
        assert f"{release}  " in out and counts in out
    assert main(["releases", "--fidelity", "--json"]) == 0
    parsed = json.loads(capsys.readouterr().out)
    assert set(parsed) == FULL_SIZE
    assert parsed["nvfp4_12b"]["counts"] == table["nvfp4_12b"]["counts"]
    # the plain table is unchanged by the flag's existence
    assert main(["releases"]) == 0
    assert "summary (fields per status)" not in capsys.readouterr().out


def _locked_recipe_digest(lock: Path) -> str:
    import base64

    statement = json.loads(base64.b64decode(json.loads(lock.read_text("utf-8"))["payload"]))
    return statement["predicate"]["buildDefinition"]["externalParameters"]["resolvedRecipe"][
        "digest"
    ]["sha256"]


@pytest.mark.parametrize(
    "lock", sorted(PROJECT.glob("results/*/release.lock.json")), ids=lambda p: p.parent.name
)
def test_committed_results_still_resolve_to_their_recipe(lock: Path) -> None:
    """A correction applied to a full-size recipe must not reach a proxy that extends it: the
    committed results of every proxy (and tiny, default) were made from exactly the resolved
    recipe their signed release lock names."""
    import hashlib

    from openrecipe.recipe import dump_resolved, load_recipe

    recipe = load_recipe(PROJECT / "recipes" / f"{lock.parent.name}.yaml", project=PROJECT)
    text = dump_resolved(recipe, PROJECT)
    assert hashlib.sha256(text.encode()).hexdigest() == _locked_recipe_digest(lock)


def test_fidelity_is_in_no_stage_code_closure() -> None:
    """Editing the published values or this module never reruns a stage."""
    from openrecipe.codeid import CONTRACT_MODULES, import_closure, package_data_files
    from openrecipe.registry import STAGE_MODULES

    for stage, module in STAGE_MODULES.items():
        closure = import_closure((module, *CONTRACT_MODULES))
        assert not {"openrecipe.fidelity", "openrecipe.cli"} & set(closure), stage
        assert DATA_FILE not in package_data_files(closure), stage


def test_a_derived_recipe_says_what_it_was_pruned_and_distilled_from() -> None:
    from openrecipe.fidelity import derivation

    derive = {"parent": {"recipe": "nemotron_nano_12b_v2_base_proxy", "stage": "pretrain"}}
    assert derivation({"derive": derive}) == (
        "pruned and distilled from recipe nemotron_nano_12b_v2_base_proxy"
    )
    assert derivation({}) == "trained from scratch"
