"""Each full-size release prints its complete SLURM job plan (dry run: no SLURM, nothing runs).

`snakemake -n --profile workflow/profiles/slurm --configfile recipes/<full>.yaml` must resolve
the recipe, build the DAG through the data stages, the Megatron plan and the pretrain_megatron
launch, with the per-rule SLURM resources the recipe sets (about 5 s per release).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from unit.slurm_submit import job_resources, sbatch_command

from openrecipe.recipe import load_recipe
from openrecipe.registry import ancestors
from openrecipe.releases import release_rows

from .workflow import REPO, copy_project, job_counts

pytestmark = pytest.mark.e2e

# Every full-size release recipe (tests/unit/test_releases.py pins the exact nine names).
FULL = [row["recipe"] for row in release_rows(REPO)]
# The stages pretraining reads, data stages all (acquire and eval_data are counted apart).
DATA_STAGES = [*ancestors("pack"), "pack"]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_project(tmp_path_factory.mktemp("slurm") / "project")


@pytest.mark.parametrize("name", FULL)
def test_slurm_dry_run_lists_the_full_job_plan(project: Path, name: str) -> None:
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "-n",
        "--profile",
        "workflow/profiles/slurm",
        "--configfile",
        f"recipes/{name}.yaml",
    ]
    done = subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    recipe = load_recipe(project / "recipes" / f"{name}.yaml", project=project).data
    expected = {"plan": 1, "pretrain_megatron": 1}
    # hf_dataset sources go to acquire_hf: one gather per source, and one file job per pinned
    # file (none yet: no full-size recipe pins its files, so each gather refuses when it runs)
    hf = [s for s in recipe["data"]["sources"] if s["kind"] == "hf_dataset"]
    if hf:
        expected["acquire_hf"] = len(hf)
    if len(recipe["data"]["sources"]) > len(hf):
        expected["acquire"] = len(recipe["data"]["sources"]) - len(hf)
    expected["megatron_data"] = 1  # the pack split into one Megatron dataset per phase
    expected.update(dict.fromkeys(DATA_STAGES, 1))
    # decontamination reads the benchmark sets the eval section names, extracted by eval_data
    if any(not t["name"].startswith("openrecipe_") for t in recipe["eval"]["tasks"]):
        expected["eval_data"] = 1
    assert job_counts(output) == expected
    # the sbatch line the executor plugin builds from the job's resources asks for the plan's
    # nodes, its GPUs on each node, one task per node and the recipe's time
    [(resources, threads)] = job_resources(output, "pretrain_megatron")
    words = sbatch_command(resources, threads, "pretrain_megatron")
    par, slurm = recipe["parallelism"], recipe["resources"]["slurm"]["pretrain_megatron"]
    for word in (
        f"--nodes={par['nodes']}",
        f"--gres=gpu:{par['gpus_per_node']}",
        "--ntasks-per-node=1",
    ):
        assert word in words, (word, words)
    assert words[words.index("-t") + 1] == str(slurm["runtime"])
    assert not any(w.startswith(("--ntasks=", "--gpus=")) for w in words), words
    assert "This was a dry-run" in output
    assert not (project / "runs" / name / "plan").exists()  # nothing ran
