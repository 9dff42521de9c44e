"""Start from a released checkpoint, end to end (docs/import.md): the tiny run's trained base,
laid out as ``hf download --local-dir`` writes a release, pinned with ``openrecipe
import-hashes``, imported by a recipe that runs post-training, evaluation and the report
only; trace, certify and lock then treat the release as a raw input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from openrecipe.lineage.verify import verify_tree

from .workflow import copy_project, job_counts, openrecipe_cli, snakemake

pytestmark = pytest.mark.e2e
NAME = "tiny-imported"
REVISION = "0123456789abcdef0123456789abcdef01234567"
POST_TRAINING = {"import", "reasoning", "eval_data", "lm_eval_tasks", "sft", "rl", "evaluate"}


def test_a_recipe_starting_from_a_release_runs_post_training_only(
    first_run: Path, tmp_path: Path
) -> None:
    project = copy_project(tmp_path / "project")
    snapshot = project / "snapshots" / "tiny-base"  # the "release": the tiny run's base
    shutil.copytree(first_run / "runs" / "tiny" / "pretrain" / "model", snapshot)
    (snapshot / ".cache" / "huggingface").mkdir(parents=True)  # what hf download leaves
    pinned = openrecipe_cli(project, "import-hashes", "snapshots/tiny-base")
    assert pinned.returncode == 0, pinned.stderr
    init = {
        "repo": "example-org/tiny-base",
        "revision": REVISION,
        "snapshot": "snapshots/tiny-base",
        **yaml.safe_load(pinned.stdout),
    }
    recipe = {"extends": "tiny", "name": NAME, "init": init}
    (project / "recipes" / f"{NAME}.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    args = ("--configfile", f"recipes/{NAME}.yaml")

    plan, _ = snakemake(project, "-n", *args)
    assert set(job_counts(plan)) == POST_TRAINING | {"report"}, job_counts(plan)
    output, seconds = snakemake(project, *args)
    assert set(job_counts(output)) == POST_TRAINING | {"report"}
    run = project / "runs" / NAME
    assert verify_tree(run)[0] == []
    sft = json.loads((run / "sft" / "manifest.json").read_text())
    [base] = [item for item in sft["inputs"] if item["name"] == "pretrain"]
    assert base["stage"] == "import"
    summary = (project / "results" / NAME / "summary.md").read_text()
    assert "| import |" in summary and not (project / "results" / NAME / "data_card.md").exists()

    traced = openrecipe_cli(project, "trace", f"runs/{NAME}/rl/model/model.safetensors")
    assert traced.returncode == 0, traced.stderr
    assert f"example-org/tiny-base: hf_model revision {REVISION}" in traced.stdout
    certified = openrecipe_cli(project, "certify", "--absent", "source=brown", f"runs/{NAME}/rl")
    assert certified.returncode == 0, certified.stdout + certified.stderr
    assert "ABSENT after the imported base" in certified.stdout
    assert "NOT CERTIFIED" in certified.stdout
    print(f"import journey: {seconds:.1f} s for {sorted(job_counts(output))}")
    assert seconds < 10 * 60
