"""``openrecipe releases`` shows each release's parameter count (computed from its model section)
and names its unverified fields, not only how many there are."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from openrecipe.cli import main
from openrecipe.model.build import nemotronh_config
from openrecipe.model.params import parameter_counts
from openrecipe.recipe import load_recipe
from openrecipe.releases import human_count

REPO = Path(__file__).resolve().parents[2]


def _counts(name: str) -> dict[str, int]:
    recipe = load_recipe(REPO / "recipes" / f"{name}.yaml", project=REPO).data
    return parameter_counts(nemotronh_config(recipe["model"], recipe["tokenizer"]["vocab_size"]))


def test_table_shows_parameter_counts_and_unverified_names(capsys, monkeypatch) -> None:
    monkeypatch.chdir(REPO)
    assert main(["releases"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("nemotron")}
    dense, moe = _counts("nemotron_h_8b"), _counts("nemotron_3_nano_30b_a3b")
    assert f"  {human_count(dense['total'])}  " in rows["nemotron_h_8b"]
    assert human_count(dense["total"]) == "8.1B"
    moe_cell = f"{human_count(moe['total'])} ({human_count(moe['active'])} active)"
    assert moe_cell == "31.6B (3.58B active)" and moe_cell in rows["nemotron_3_nano_30b_a3b"]
    proxy = _counts("nemotron_h_8b_proxy")
    assert f"  {human_count(proxy['total'])}  " in rows["nemotron_h_8b"]
    recipe = load_recipe(REPO / "recipes" / "nemotron_h_8b.yaml", project=REPO).data
    names = recipe["release"]["unverified"]
    assert f"  nemotron_h_8b: {', '.join(names)}" in out.splitlines()


def test_json_carries_counts_and_field_names(capsys, monkeypatch) -> None:
    monkeypatch.chdir(REPO)
    assert main(["releases", "--json"]) == 0
    rows = {r["recipe"]: r for r in json.loads(capsys.readouterr().out)}
    row = rows["nemotron_3_ultra_550b_a55b"]
    counts = _counts("nemotron_3_ultra_550b_a55b")
    assert row["params"] == {"total": counts["total"], "active": counts["active"]}
    assert row["unverified"] == len(row["unverified_fields"]) > 0


def test_human_count() -> None:
    assert [human_count(n) for n in (999, 1_000, 568_784, 8_100_852_736, 549_308_968_960)] == [
        "999",
        "1K",
        "569K",
        "8.1B",
        "549B",
    ]


def test_a_reader_that_stops_early_gets_no_traceback() -> None:
    """`openrecipe releases --fidelity | head -1`: the closed pipe ends the command quietly."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "openrecipe", "releases", "--fidelity"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.readline()
    process.stdout.close()  # the reader goes away after one line
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == 141, stderr
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr
