"""The sbatch line snakemake-executor-plugin-slurm would submit for a job of a dry run.

A SLURM dry run (``snakemake -n --profile workflow/profiles/slurm``) prints each job's final
resources (rule ``resources:``, then the profile's ``default-resources`` and ``set-resources``).
These helpers read them back and hand them to the plugin's own command builder
(``submit_string.get_submit_command`` plus ``utils.set_gres_string``, the two calls its
``run_job`` makes), so a test checks what would reach ``sbatch``, not what the rule meant.
"""

from __future__ import annotations

import ast
import re
import shlex
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from snakemake_executor_plugin_slurm.submit_string import get_submit_command
from snakemake_executor_plugin_slurm.utils import set_gres_string
from snakemake_executor_plugin_slurm.validation import validate_slurm_extra


class Resources(dict):
    """A job's resources as the plugin reads them: ``.get(key)`` and ``.key``."""

    def __getattr__(self, key: str):
        try:
            return self[key]
        except KeyError as exc:
            raise AttributeError(key) from exc


def dry_run(project: Path, recipe: str) -> str:
    """The output of the SLURM profile's dry run of a recipe (nothing is submitted or run)."""
    command = [sys.executable, "-m", "snakemake", "-n", "--profile", "workflow/profiles/slurm"]
    command += ["--configfile", recipe]
    done = subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    return output


def _value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def job_resources(output: str, rule: str) -> list[tuple[Resources, int]]:
    """(resources, threads) of every job of ``rule`` in a dry run's output."""
    jobs = []
    for block in re.split(r"\n(?=\[[^\n]*\]\n(?:local)?rule )", output):
        if not re.search(rf"^(?:local)?rule {re.escape(rule)}:$", block, re.M):
            continue
        line = re.search(r"^\s+resources: (.*)$", block, re.M)
        assert line, block
        resources = Resources()
        for item in line.group(1).split(", "):
            key, _, value = item.partition("=")
            resources[key] = _value(value)
        threads = re.search(r"^\s+threads: (\d+)$", block, re.M)
        jobs.append((resources, int(threads.group(1)) if threads else 1))
    return jobs


def sbatch_command(resources: Resources, threads: int, rule: str) -> list[str]:
    """The plugin's sbatch call for a job with these resources, split into words."""
    job = SimpleNamespace(resources=resources, threads=threads, name=rule)
    validate_slurm_extra(job)  # what run_job checks before building the call
    params = {
        "run_uuid": "uuid",
        "slurm_logfile": ".snakemake/slurm_logs/%j.log",
        "comment_str": f"rule_{rule}",
        "account": "",
        "partition": f"-p {resources.get('slurm_partition', 'batch')}",
        "workdir": "/work",
    }
    call = get_submit_command(job, params) + set_gres_string(job)
    return shlex.split(call)
