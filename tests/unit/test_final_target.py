"""`make run` on a fresh clone: the committed report exists, the run does not, and the
workflow must still plan the whole run and then the report (it once planned nothing)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_a_committed_report_without_its_run_plans_the_run_and_the_report(tmp_path: Path) -> None:
    project = tmp_path / "clone"
    project.mkdir()
    for name in ("Snakefile", "workflow", "recipes", "pyproject.toml"):
        source = REPO / name
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, project / name)
    shutil.copytree(REPO / "results" / "tiny", project / "results" / "tiny")
    assert (project / "results/tiny/manifest.json").is_file()
    assert not (project / "runs").exists()

    done = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", "recipes/tiny.yaml"],
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Job stats:" in done.stdout, done.stdout[-3000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", done.stdout.split("Job stats:", 1)[1], re.M))
    for stage in ("pretrain", "sft", "rl", "report"):
        assert counts.get(stage) == "1", (stage, counts)
