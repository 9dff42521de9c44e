"""SFT -> GRPO -> DPO -> evaluation of the DPO checkpoint through the real Snakemake rules
(docs/post-training.md): a recipe extending tiny with a ``dpo:`` section and
``post_training: [sft, rl, dpo]``. It starts from the tiny run's trained base, imported as a
release (docs/import.md), so curation and pretraining do not run again; the dpo stage trains
from rl, the evaluate rule scores the dpo checkpoint, the run verifies, and certify counts the
DPO phase.

The base comes from the session's tiny run (``first_run``, minutes); set
``OPENRECIPE_E2E_BASE_MODEL`` to a finished tiny run's ``runs/tiny/pretrain/model`` to reuse
one instead."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from openrecipe.lineage.verify import verify_tree

from .workflow import copy_project, job_counts, openrecipe_cli, snakemake

pytestmark = pytest.mark.e2e
NAME = "tiny-dpo"
REVISION = "0123456789abcdef0123456789abcdef01234567"
DPO = {
    "steps": 3,
    "lr": 1.0e-4,
    "batch_size": 2,
    "beta": 0.1,
    "checkpoint_every": 1,
    "pairs": {
        "source": "rollouts",
        "prompts": 24,
        "samples": 4,
        "temperature": 1.0,
        "max_new_tokens": 48,
    },
}
JOBS = {"import", "reasoning", "eval_data", "lm_eval_tasks", "sft", "rl", "dpo", "evaluate"}


@pytest.fixture
def base_model(request: pytest.FixtureRequest) -> Path:
    given = os.environ.get("OPENRECIPE_E2E_BASE_MODEL")
    if given:
        return Path(given)
    return request.getfixturevalue("first_run") / "runs" / "tiny" / "pretrain" / "model"


def test_sft_rl_dpo_then_evaluate_dpo(base_model: Path, tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    snapshot = project / "snapshots" / "tiny-base"
    shutil.copytree(base_model, snapshot)
    pinned = openrecipe_cli(project, "import-hashes", "snapshots/tiny-base")
    assert pinned.returncode == 0, pinned.stderr
    init = {
        "repo": "example-org/tiny-base",
        "revision": REVISION,
        "snapshot": "snapshots/tiny-base",
        **yaml.safe_load(pinned.stdout),
    }
    recipe = {
        "extends": "tiny",
        "name": NAME,
        "init": init,
        "post_training": ["sft", "rl", "dpo"],
        "dpo": DPO,
    }
    (project / "recipes" / f"{NAME}.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    run = project / "runs" / NAME
    target = f"runs/{NAME}/evaluate/dpo/manifest.json"
    args = ("--configfile", f"recipes/{NAME}.yaml")

    plan, _ = snakemake(project, "-n", *args)
    assert set(job_counts(plan)) == JOBS | {"report"}, job_counts(plan)
    output, seconds = snakemake(project, target, *args)
    # the target needs everything but the lm-eval task directory (the report's)
    assert set(job_counts(output)) == JOBS - {"lm_eval_tasks"}, job_counts(output)
    assert job_counts(output)["evaluate"] == 1

    dpo = json.loads((run / "dpo" / "manifest.json").read_text())
    [policy] = [item for item in dpo["inputs"] if item["name"] == "policy"]
    assert policy["stage"] == "rl"
    assert dpo["summary"]["pairs"] >= 1 and dpo["summary"]["steps"] == DPO["steps"]
    metrics = [
        json.loads(line) for line in (run / "dpo" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [m["step"] for m in metrics] == list(range(DPO["steps"]))
    evaluated = json.loads((run / "evaluate" / "dpo" / "manifest.json").read_text())
    [model] = [item for item in evaluated["inputs"] if item["name"] == "model"]
    assert model["stage"] == "dpo"
    scores = json.loads((run / "evaluate" / "dpo" / "scores.json").read_text())
    assert "openrecipe_reasoning_heldout" in scores
    assert verify_tree(run)[0] == []

    certified = openrecipe_cli(project, "certify", "--absent", "lang=xx", f"runs/{NAME}/dpo")
    assert certified.returncode == 0, certified.stdout + certified.stderr
    assert "| dpo |" in certified.stdout and "ABSENT after the imported base" in certified.stdout

    # the rest of the run (report) still builds, and a second plan has nothing left to do
    snakemake(project, *args)
    summary = (project / "results" / NAME / "summary.md").read_text()
    assert "| dpo |" in summary and "| import |" in summary
    again, _ = snakemake(project, "-n", *args)
    assert job_counts(again) == {}, job_counts(again)
    print(f"dpo journey: {seconds:.1f} s for {sorted(job_counts(output))}")
    assert seconds < 10 * 60
