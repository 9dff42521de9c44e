"""What the SLURM profile's jobs would hand to ``sbatch``, built by the executor plugin itself.

``snakemake-executor-plugin-slurm`` (2.8.0) reads the ``gpu``/``gres`` resources (never
``gpus``), adds ``--ntasks=1`` to a job it does not see as a GPU job, and refuses ``--gres``
inside ``slurm_extra``. The Megatron launch (launch.sh) runs one ``torchrun`` per node with
one process per GPU, so the allocation must hold ``parallelism.nodes`` nodes, each with
``parallelism.gpus_per_node`` GPUs and one task. Each test below builds the sbatch line with
the plugin's own functions from the resources a real dry run printed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from slurm_submit import dry_run, job_resources, sbatch_command

from openrecipe.model.megatron_plan import compile_plan
from openrecipe.recipe import load_recipe

PROJECT = Path(__file__).resolve().parents[2]


def _flags(words: list[str]) -> dict[str, str]:
    """{flag: value} of an sbatch line, for the ``--flag=value``, ``--flag value`` (the plugin
    writes ``--mem 65536``) and ``-t value`` forms; a bare ``--flag`` maps to ""."""
    flags: dict[str, str] = {}
    for i, word in enumerate(words):
        if word.startswith("--"):
            key, equals, value = word.partition("=")
            following = words[i + 1] if i + 1 < len(words) else "-"
            flags[key] = value if equals or following.startswith("-") else following
        elif word.startswith("-") and len(word) == 2 and i + 1 < len(words):
            flags[word] = words[i + 1]
    return flags


# Two layouts: 8 GPUs on each of 8 nodes, and 4 GPUs on each of 16 (the GB200 NVFP4 recipe).
@pytest.mark.parametrize("name", ["nemotron_nano_9b_v2", "nvfp4_12b"])
def test_megatron_job_requests_the_plans_nodes_gpus_and_tasks(name: str) -> None:
    recipe = load_recipe(PROJECT / "recipes" / f"{name}.yaml", project=PROJECT).data
    plan = compile_plan(recipe)
    [(resources, threads)] = job_resources(
        dry_run(PROJECT, f"recipes/{name}.yaml"), "pretrain_megatron"
    )
    words = sbatch_command(resources, threads, "pretrain_megatron")
    flags = _flags(words)
    assert flags["--nodes"] == str(plan["nodes"]), words
    # GPUs per node (a --gpus total would let SLURM spread them unevenly over the nodes)
    assert flags.get("--gres") == f"gpu:{plan['gpus_per_node']}", words
    assert "--gpus" not in flags, words
    # one task per node: the batch step runs launch.sh, whose srun starts one torchrun per node
    assert flags.get("--ntasks-per-node") == "1", words
    assert "--ntasks" not in flags and "--ntasks-per-gpu" not in flags, words
    for phase in plan["phases"]:
        assert f"--ntasks-per-node=1 --gpus-per-node={plan['gpus_per_node']}" in phase["srun"]
    assert flags["-t"] == str(recipe["resources"]["slurm"]["pretrain_megatron"]["runtime"])
    # the node's CPUs for its torchrun's ranks, not the profile's default 8
    assert flags["--cpus-per-task"] == str(8 * plan["gpus_per_node"]), words
    assert "--exclusive" in words
    # the node's memory for those ranks (64 GiB per GPU), not the profile's 16 GB default
    assert flags["--mem"] == str(65536 * plan["gpus_per_node"]), words


def test_reference_gpu_jobs_pass_the_plugins_own_checks() -> None:
    """The reference rules the profile gives GPUs (pretrain, sft, rl, evaluate) submit: their
    GPU request is a ``gres`` resource, not ``--gres`` in ``slurm_extra`` (which the plugin
    refuses before building the call)."""
    output = dry_run(PROJECT, "recipes/tiny.yaml")
    expected = {"pretrain": 8, "sft": 8, "rl": 8, "evaluate": 1}
    for rule, gpus in expected.items():
        jobs = job_resources(output, rule)
        assert jobs, rule
        for resources, threads in jobs:
            flags = _flags(sbatch_command(resources, threads, rule))
            assert flags.get("--gres") == f"gpu:{gpus}", (rule, flags)
            assert flags.get("--mem") == str(65536 * gpus), (rule, flags)


def test_a_slurm_request_unlike_the_launch_layout_is_refused(tmp_path: Path) -> None:
    """resources.slurm.pretrain_megatron.nodes may restate parallelism.nodes, not contradict it:
    an allocation of 4 nodes for a launch of 8 would never start its ranks."""
    for name in ("Snakefile", "workflow", "recipes"):
        source = PROJECT / name
        copy = shutil.copytree if source.is_dir() else shutil.copy2
        copy(source, tmp_path / name)
    (tmp_path / "override.yaml").write_text(
        "resources:\n  slurm:\n    pretrain_megatron: {nodes: 4}\n", encoding="utf-8"
    )
    command = [sys.executable, "-m", "snakemake", "-n", "--profile", "workflow/profiles/slurm"]
    command += ["--configfile", "recipes/nemotron_nano_9b_v2.yaml", "override.yaml"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert (
        "openrecipe: error: recipe nemotron_nano_9b_v2: resources.slurm.pretrain_megatron.nodes "
        "= 4 but the Megatron launch is compiled for 8 (parallelism.nodes)"
    ) in done.stdout + done.stderr
