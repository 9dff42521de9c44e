"""One release proxy end to end in CI (bench/proxies.py runs all nine): the Nemotron 3 Nano
30B-A3B proxy, a hybrid Mamba-2/attention/MoE stack with its release's precision recipe, through
every stage to a report whose scores fall inside the proxy's derived envelope."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from openrecipe.lineage.verify import verify_tree
from openrecipe.recipe import load_recipe

from .workflow import ALL_STAGES, job_counts, snakemake

pytestmark = pytest.mark.e2e
PROXY = "nemotron_3_nano_30b_a3b_proxy"


def test_a_release_proxy_runs_end_to_end_inside_its_envelope(
    first_run: Path, tmp_path: Path
) -> None:
    project = tmp_path / "project"  # raw sources are shared with the tiny run: no refetch
    shutil.copytree(first_run, project, symlinks=True)
    output, seconds = snakemake(project, "--configfile", f"recipes/{PROXY}.yaml")
    ran = set(job_counts(output))
    assert ran == ALL_STAGES - {"acquire"}, ran  # raw sources shared, not refetched
    assert verify_tree(project / "runs" / PROXY)[0] == []
    report = json.loads((project / "results" / PROXY / "manifest.json").read_text())["summary"]
    assert report["outside_envelope"] == []
    pretrain = json.loads((project / "runs" / PROXY / "pretrain" / "manifest.json").read_text())
    release = load_recipe(project / "recipes" / "nemotron_3_nano_30b_a3b.yaml", project=project)
    assert pretrain["summary"]["precision"] == release.data["pretrain"]["precision"]
    assert seconds < 20 * 60  # the budget per proxy on 2 cores
