"""The data.exclude rule fields are defined once (openrecipe.data.exclusion) and every reader
agrees with that list: the schema, ``rerun --exclude`` and ``certify --absent``. Before, each
kept its own tuple (and this module did not exist)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from openrecipe.data import exclusion
from openrecipe.errors import LineageError, RecipeError
from openrecipe.lineage.certify import parse_selector
from openrecipe.lineage.change import parse_exclude
from openrecipe.paths import SCHEMA_RELPATH

REPO = Path(__file__).resolve().parents[2]


def test_the_schema_lists_exactly_the_rule_fields() -> None:
    schema = yaml.safe_load((REPO / SCHEMA_RELPATH).read_text(encoding="utf-8"))
    rule = schema["properties"]["data"]["properties"]["exclude"]["items"]
    assert tuple(rule["properties"]) == exclusion.FIELDS


@pytest.mark.parametrize("field", exclusion.CLI_FIELDS)
def test_rerun_accepts_each_cli_field(field: str) -> None:
    rule = parse_exclude(f"{field}=x")
    assert rule == {field: ["x"] if field == "ids" else "x"}


@pytest.mark.parametrize("field", sorted(set(exclusion.FIELDS) - set(exclusion.CLI_FIELDS)))
def test_rerun_refuses_other_fields_and_names_the_accepted(field: str) -> None:
    with pytest.raises(RecipeError, match="FIELD in \\('source', 'license', 'lang'"):
        parse_exclude(f"{field}=1")


def test_certify_selects_on_the_metadata_fields_and_ids(tmp_path: Path) -> None:
    (tmp_path / "ids.txt").write_text("a/1\n", encoding="utf-8")
    for field in exclusion.SELECTOR_FIELDS:
        value = "ids.txt" if field == "ids" else "x"
        assert parse_selector(f"{field}={value}", tmp_path)
    with pytest.raises(LineageError, match="path_glob"):
        parse_selector("path_glob=*")
    assert set(exclusion.SELECTOR_FIELDS) - {"ids"} == set(exclusion.METADATA_FIELDS)
