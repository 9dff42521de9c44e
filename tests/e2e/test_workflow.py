"""End to end: the tiny recipe through every stage with the real Snakemake, twice.

Checks the issue's acceptance criteria directly: every stage runs and verifies; a second
invocation does nothing; an eval-only edit reruns only evaluate + report; a blend-weight edit
reruns blend and what follows but not acquire or curate; two clean runs give identical hashes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from openrecipe.lineage.trace import raw_sources, trace
from openrecipe.lineage.verify import verify_tree

from .workflow import ALL_STAGES, TINY, copy_project, job_counts, snakemake

pytestmark = pytest.mark.e2e


def output_hashes(project: Path) -> dict[str, str]:
    """Every artifact listed in every manifest under runs/, data/ and results/: {path: sha256}."""
    hashes = {}
    for manifest_path in sorted(project.glob("**/manifest.json")):
        if any(part.startswith(".") for part in manifest_path.relative_to(project).parts):
            continue
        manifest = json.loads(manifest_path.read_text())
        stage_dir = manifest_path.parent.relative_to(project).as_posix()
        for rel, meta in manifest["outputs"].items():
            hashes[f"{stage_dir}/{rel}"] = meta["sha256"]
    return hashes


def test_every_stage_ran_and_verifies(first_run: Path) -> None:
    problems, checked = verify_tree(first_run / "runs" / "tiny")
    # every stage writes one directory under runs/tiny, except acquire (data/raw), report
    # (results/tiny) and evaluate (one per checkpoint)
    expected = len(ALL_STAGES - {"acquire", "report", "evaluate"}) + 3
    assert problems == [] and checked == expected
    assert verify_tree(first_run / "data" / "raw")[0] == []
    results = first_run / "results" / "tiny"
    for name in ("metrics.json", "loss_curve.png", "summary.md", "manifest.json"):
        assert (results / name).is_file(), name
    metrics = json.loads((results / "metrics.json").read_text())
    assert set(metrics["scores"]) == {"base", "sft", "rl"}
    for checkpoint in ("base", "sft", "rl"):  # reasoning on and off, three budgets (tiny.yaml)
        entry = metrics["reasoning"][checkpoint]
        assert entry["on"] and entry["off"] and sorted(map(int, entry["budgets"])) == [8, 16, 32]
    assert (results / "reasoning.md").is_file() and (results / "rl_curve.png").is_file()
    pretrain = [
        json.loads(line)
        for line in (first_run / "runs/tiny/pretrain/metrics.jsonl").read_text().splitlines()
    ]
    assert pretrain[-1]["loss"] < pretrain[0]["loss"], "pretraining loss did not fall"


def test_trace_of_final_score_reaches_every_raw_source(first_run: Path) -> None:
    node = trace(first_run / "results" / "tiny" / "metrics.json")
    names = {item["name"] for item in raw_sources(node)}
    assert {"brown", "austen", "python_stdlib"} <= names
    cli = subprocess.run(
        [sys.executable, "-m", "openrecipe", "trace", "results/tiny/metrics.json"],
        cwd=first_run,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "raw sources" in cli.stdout and "r-cran-janeaustenr" in cli.stdout


def test_second_invocation_does_nothing_quickly(first_run: Path) -> None:
    output, seconds = snakemake(first_run, *TINY)
    assert "Nothing to be done" in output
    assert seconds < 5, f"no-op invocation took {seconds:.1f}s"


def test_eval_edit_reruns_only_evaluation_and_report(first_run: Path) -> None:
    override = first_run / "recipes" / "overrides" / "eval_tokens.yaml"
    override.parent.mkdir(exist_ok=True)
    override.write_text("eval:\n  max_new_tokens: 40\n")
    output, _ = snakemake(
        first_run, "--configfile", "recipes/tiny.yaml", "recipes/overrides/eval_tokens.yaml"
    )
    assert job_counts(output) == {"evaluate": 3, "report": 1}


def test_blend_weight_edit_reruns_blend_onwards_only(first_run: Path) -> None:
    override = first_run / "recipes" / "overrides" / "reweight.yaml"
    override.parent.mkdir(exist_ok=True)
    override.write_text(
        "data:\n  phases:\n"
        "    - {name: diversity, fraction: 0.8, weights: {python_stdlib: 0.1, brown: 0.5, austen: 0.3, synthetic_math: 0.1}}\n"
        "    - {name: quality, fraction: 0.2, weights: {python_stdlib: 0.2, brown: 0.2, austen: 0.3, synthetic_math: 0.3}}\n"
    )
    output, _ = snakemake(
        first_run, "-n", "--configfile", "recipes/tiny.yaml", "recipes/overrides/reweight.yaml"
    )
    planned = job_counts(output)
    assert {"blend", "tokenizer", "pack", "pretrain", "sft", "rl", "evaluate", "report"} <= set(
        planned
    )
    assert not {
        "acquire",
        "curate",
        "langid",
        "fuzzy_dedup",
        "quality",
        "decontam",
        "reasoning",
    } & set(planned)


def test_two_clean_runs_give_identical_hashes(first_run: Path, tmp_path: Path) -> None:
    second = copy_project(tmp_path / "project")
    snakemake(second, *TINY)
    first_hashes = {k: v for k, v in output_hashes(first_run).items()}
    second_hashes = output_hashes(second)
    # first_run may have been re-evaluated with an override by now; compare the stages it shares.
    shared = {k for k in second_hashes if not k.startswith(("runs/tiny/evaluate", "results/"))}
    assert len(shared) > 30
    diff = {k for k in shared if first_hashes.get(k) != second_hashes[k]}
    assert diff == set()


def test_snakemake_lint_passes(first_run: Path) -> None:
    output, _ = snakemake(first_run, "--lint", *TINY)
    assert "Lints for" not in output, output
