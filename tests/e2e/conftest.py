"""One real run of the tiny recipe, shared by every end-to-end test (it takes minutes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .workflow import ALL_STAGES, TINY, copy_project, job_counts, snakemake


@pytest.fixture(scope="session")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = copy_project(tmp_path_factory.mktemp("run_a") / "project")
    output, _ = snakemake(project, *TINY)
    assert set(job_counts(output)) == ALL_STAGES
    return project
