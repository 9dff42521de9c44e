"""Helpers to run the real Snakemake workflow in a throwaway copy of the project."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from openrecipe.registry import stages_where

REPO = Path(__file__).resolve().parents[2]
TINY = ("--configfile", "recipes/tiny.yaml")
# The stages a reference-backend recipe runs (the tiny and proxy recipes; none names a released
# checkpoint or has a dpo: section, so neither the stage standing in for pretraining, import,
# nor the optional dpo stage runs: both have an active_when switch).
# acquire_hf runs only for hf_dataset sources (the released data), which no CPU recipe names.
ALL_STAGES = set(stages_where(backend=None, active_when=None)) - {"acquire_hf"}


def copy_project(dest: Path) -> Path:
    """The workflow, schema and recipes in ``dest`` (code runs from the installed package)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "workflow", "recipes"):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=shutil.ignore_patterns("_*"))
        else:
            shutil.copy2(source, dest / name)
    return dest


def snakemake(
    project: Path, *args: str, timeout: int = 1500, env: dict[str, str] | None = None
) -> tuple[str, float]:
    """Run snakemake in ``project``; returns (combined output, wall seconds). Raises on failure.
    ``env`` adds variables to the environment (e.g. PYTHONPATH to run another copy of the code)."""
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--profile",
        "workflow/profiles/local",
        "--cores",
        "2",
        *args,
    ]
    start = time.perf_counter()
    done = subprocess.run(
        command,
        cwd=project,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    elapsed = time.perf_counter() - start
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({done.returncode}):\n{output[-6000:]}"
        )
    return output, elapsed


def job_counts(output: str) -> dict[str, int]:
    """Parse Snakemake's 'Job stats' table: {rule: count} (without 'all' and 'total')."""
    counts: dict[str, int] = {}
    if "Job stats:" not in output:
        return counts
    table = output.split("Job stats:", 1)[1]
    for line in table.splitlines()[3:]:
        match = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not match:
            break
        rule, count = match.group(1), int(match.group(2))
        if rule not in ("all", "total"):
            counts[rule] = count
    return counts


def openrecipe_cli(project: Path, *args: str, timeout: int = 1200) -> subprocess.CompletedProcess:
    """``python -m openrecipe ARGS`` in ``project``; the caller checks the return code."""
    return subprocess.run(
        [sys.executable, "-m", "openrecipe", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
