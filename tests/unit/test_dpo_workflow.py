"""The optional dpo stage in the Snakemake plan (dry runs, no job executed): a recipe without a
``dpo:`` section has no dpo job, one with it trains dpo from the step before it in
``post_training`` and can evaluate the dpo checkpoint; a sequence the stages cannot run, or an
``eval.checkpoints`` this version's evaluate stage would refuse, stops the plan by name."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
NAME = "tiny-dpo"
DPO = {
    "steps": 2,
    "lr": 1.0e-4,
    "batch_size": 2,
    "beta": 0.1,
    "pairs": {
        "source": "rollouts",
        "prompts": 8,
        "samples": 4,
        "temperature": 1.0,
        "max_new_tokens": 32,
    },
}


def _project(tmp_path: Path, **fields: object) -> Path:
    project = tmp_path / "clone"
    project.mkdir()
    for name in ("Snakefile", "workflow", "recipes", "pyproject.toml"):
        source = REPO / name
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, project / name)
    recipe = {"extends": "tiny", "name": NAME, **fields}
    (project / "recipes" / f"{NAME}.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    return project


def _dry_run(project: Path, recipe: str, *targets: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *targets, "-n", "-p", "--cores", "1"]
        + ["--configfile", recipe],
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
        capture_output=True,
        text=True,
        timeout=300,
    )


def _job_counts(stdout: str) -> dict[str, int]:
    table = stdout.split("Job stats:", 1)[1].split("total", 1)[0]
    return {name: int(n) for name, n in re.findall(r"^(\w+)\s+(\d+)$", table, re.M)}


def test_a_recipe_without_dpo_plans_no_dpo_job(tmp_path: Path) -> None:
    project = _project(tmp_path, dpo=DPO, post_training=["sft", "rl", "dpo"])
    plain = _dry_run(project, "recipes/tiny.yaml")
    assert plain.returncode == 0, plain.stderr[-3000:]
    counts = _job_counts(plain.stdout)
    assert "dpo" not in counts and {"sft", "rl", "evaluate"} <= set(counts)
    assert "openrecipe dpo" not in plain.stdout and "runs/tiny/dpo" not in plain.stdout
    [report] = [line for line in plain.stdout.splitlines() if " -m openrecipe report " in line]
    assert "--input rl=runs/tiny/rl" in report and "--input dpo=" not in report

    planned = _dry_run(project, f"recipes/{NAME}.yaml")
    assert planned.returncode == 0, planned.stderr[-3000:]
    assert _job_counts(planned.stdout)["dpo"] == 1
    assert _job_counts(planned.stdout)["evaluate"] == 3  # eval.checkpoints: base, sft, rl
    [command] = [line for line in planned.stdout.splitlines() if " -m openrecipe dpo " in line]
    assert f"--input policy=runs/{NAME}/rl" in command
    assert f"--input reasoning=runs/{NAME}/reasoning" in command
    # the report reads the dpo stage (its summary row and loss curve)
    [report] = [line for line in planned.stdout.splitlines() if " -m openrecipe report " in line]
    assert f"--input dpo=runs/{NAME}/dpo" in report

    # the dpo checkpoint is evaluated by the evaluate rule when it is the target
    target = f"runs/{NAME}/evaluate/dpo/manifest.json"
    evaluated = _dry_run(project, f"recipes/{NAME}.yaml", target)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert f"--part dpo --input model=runs/{NAME}/dpo" in evaluated.stdout


def test_sequences_the_stages_cannot_run_are_refused_by_name(tmp_path: Path) -> None:
    project = _project(tmp_path, dpo=DPO, post_training=["sft", "dpo", "rl"])
    refused = _dry_run(project, f"recipes/{NAME}.yaml")
    assert refused.returncode != 0
    assert "post_training: ['sft', 'dpo', 'rl'] cannot run in this order" in refused.stderr

    recipe = project / "recipes" / f"{NAME}.yaml"
    data = yaml.safe_load(recipe.read_text())
    data["post_training"] = ["sft", "rl"]
    recipe.write_text(yaml.safe_dump(data))
    refused = _dry_run(project, f"recipes/{NAME}.yaml")
    assert refused.returncode != 0 and "leaves out dpo" in refused.stderr

    data["post_training"] = ["sft", "rl", "dpo"]
    data["eval"] = {"checkpoints": ["base", "sft", "rl", "dpo"]}
    recipe.write_text(yaml.safe_dump(data))
    refused = _dry_run(project, f"recipes/{NAME}.yaml")
    assert refused.returncode != 0
    assert "eval.checkpoints[3]: 'dpo' is not accepted by this version's evaluate" in refused.stderr

    del data["dpo"], data["post_training"]
    data["post_training"] = ["sft", "rl", "rlhf"]
    recipe.write_text(yaml.safe_dump(data))
    refused = _dry_run(project, f"recipes/{NAME}.yaml")
    assert (
        refused.returncode != 0 and "post_training" in refused.stderr and "rlhf" in refused.stderr
    )
