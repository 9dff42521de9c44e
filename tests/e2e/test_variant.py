"""A named variant beside the original: ``rerun tiny --name tiny-rl2 --set rl.steps=2`` shares
every stage upstream of RL by content (base and SFT evaluations included), runs only RL, its
evaluation and the report, leaves runs/tiny and results/tiny as they were, and ``diff`` compares
the two runs with a paired standard error on every score difference.

RL is the change because it is cheap (2 GRPO steps) and sits mid-graph: the evaluate stage is
shared per checkpoint (base, sft) and rerun for the one whose model changed (rl)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from .workflow import TINY, job_counts, openrecipe_cli, snakemake

pytestmark = pytest.mark.e2e

VARIANT = "tiny-rl2"


def cli(project: Path, *args: str) -> subprocess.CompletedProcess:
    return openrecipe_cli(project, *args, timeout=1200)


def _state(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every manifest under ``root``: bytes and mtime."""
    return {
        p.relative_to(root).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("manifest.json"))
    }


@pytest.fixture(scope="module")
def varied(first_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    snakemake(first_run, *TINY)  # other tests may have left evaluate/report with overrides
    dest = tmp_path_factory.mktemp("variant") / "project"
    shutil.copytree(first_run, dest, symlinks=True)
    return dest


def test_named_variant_shares_upstream_and_diffs_with_paired_errors(varied: Path) -> None:
    original = {
        "runs": _state(varied / "runs" / "tiny"),
        "results": _state(varied / "results" / "tiny"),
    }
    done = cli(varied, "rerun", "tiny", "--name", VARIANT, "--set", "rl.steps=2", "--json")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["written"] and (varied / "recipes" / f"{VARIANT}.yaml").is_file()
    # lm_eval_tasks: the variant's task directory names the variant's own run directory
    assert (
        result["executed"]
        == result["planned"]
        == {
            "rl": 1,
            "evaluate": 1,
            "lm_eval_tasks": 1,
            "report": 1,
        }
    )
    shared = {line.split(" -> ")[1] for line in result["shared"]}
    for stage in ("curate", "decontam", "blend", "tokenizer", "pack", "pretrain", "sft"):
        assert f"runs/{VARIANT}/{stage}" in shared
    assert {f"runs/{VARIANT}/evaluate/base", f"runs/{VARIANT}/evaluate/sft"} <= shared
    assert f"runs/{VARIANT}/evaluate/rl" not in shared and f"runs/{VARIANT}/rl" not in shared

    # The original is untouched: same manifests, same mtimes (a shared manifest is a copy).
    assert _state(varied / "runs" / "tiny") == original["runs"]
    assert _state(varied / "results" / "tiny") == original["results"]
    run = varied / "runs" / VARIANT
    for rel in ("pretrain", "sft", "evaluate/base"):  # content-shared: byte-identical manifests
        ours, theirs = run / rel / "manifest.json", varied / "runs" / "tiny" / rel / "manifest.json"
        assert ours.read_bytes() == theirs.read_bytes()
    assert json.loads((run / "rl" / "manifest.json").read_text())["recipe"] == VARIANT
    report = json.loads((varied / "results" / VARIANT / "manifest.json").read_text())
    assert report["recipe"] == VARIANT

    # Snakemake agrees both runs are complete (the shared stages have metadata of their own).
    for recipe in (f"recipes/{VARIANT}.yaml", "recipes/tiny.yaml"):
        output, _ = snakemake(varied, "-n", "--configfile", recipe)
        assert job_counts(output) == {}, output[-3000:]
    assert cli(varied, "verify", f"runs/{VARIANT}").returncode == 0

    diff = cli(varied, "diff", "runs/tiny", f"runs/{VARIANT}", "--json")
    assert diff.returncode == 0, diff.stderr
    body = json.loads(diff.stdout)
    differing = {s["stage"] for s in body["stages"]}
    assert {"rl", "evaluate[rl]", "report"} <= differing
    assert not {"pretrain", "sft", "evaluate[base]", "evaluate[sft]"} & differing
    rows = [r for r in body["scores"] if r["delta"] is not None]
    assert rows and all(r["paired"] is not None for r in rows)
    assert all(r["delta"] == 0 for r in rows if r["metric"].startswith(("base/", "sft/")))
    text = cli(varied, "diff", "runs/tiny", VARIANT).stdout
    assert "paired SE" in text
