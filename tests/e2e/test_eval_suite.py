"""End to end: a changed task config reruns evaluation (and the report) only, never eval_data
or training; a dry run, on the shared finished tiny run."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from .workflow import job_counts, snakemake

pytestmark = pytest.mark.e2e


def test_task_config_edit_plans_evaluation_only(first_run: Path) -> None:
    recipe = yaml.safe_load((first_run / "recipes" / "tiny.yaml").read_text())
    tasks = recipe["eval"]["tasks"]
    assert any(t["name"] == "arc_easy" for t in tasks), "tiny must run one standard benchmark"
    edited = [{**t, "num_fewshot": 1} if t["name"] == "arc_easy" else t for t in tasks]
    override = first_run / "recipes" / "overrides" / "arc_fewshot.yaml"
    override.parent.mkdir(exist_ok=True)
    override.write_text(yaml.safe_dump({"eval": {"tasks": edited}}))
    output, _ = snakemake(
        first_run, "-n", "--configfile", "recipes/tiny.yaml", "recipes/overrides/arc_fewshot.yaml"
    )
    assert job_counts(output) == {"evaluate": 3, "report": 1}
