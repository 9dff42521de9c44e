"""``openrecipe trace RUN --metric [CHECKPOINT/]TASK/METRIC``: a score back to its checkpoint
and data, through manifests only; an altered score file is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openrecipe.cli import main
from openrecipe.errors import LineageError
from openrecipe.hashing import sha256_file
from openrecipe.lineage.trace_metric import parse_metric, trace_metric
from openrecipe.recipe import load_recipe
from openrecipe.stage import StageContext, run_stage

SCORES = {"arc_easy": {"acc": 0.29, "acc_stderr": 0.0456, "n": 100}}


@pytest.fixture
def run(project: Path) -> Path:
    recipe = load_recipe(project / "recipes" / "tiny.yaml", project=project)
    run = project / "runs" / "tiny"

    def eval_data(ctx: StageContext) -> dict:
        (ctx.out / "arc_easy.jsonl").write_text('{"id": "arc_easy:1"}\n')
        return {}

    def sft(ctx: StageContext) -> dict:
        (ctx.out / "model").mkdir()
        (ctx.out / "model" / "model.safetensors").write_bytes(b"weights")
        return {}

    def evaluate(ctx: StageContext) -> dict:
        (ctx.out / "scores.json").write_text(json.dumps(SCORES, sort_keys=True))
        (ctx.out / "samples_arc_easy.jsonl").write_text('{"id": "arc_easy:1", "acc": 1.0}\n')
        pinned = {"arc_easy.jsonl": sha256_file(ctx.inputs["eval_data"] / "arc_easy.jsonl")}
        return {"scores": SCORES, "dataset_sha256": {"arc_easy": pinned}}

    run_stage("eval_data", recipe, run / "eval_data", {}, eval_data, project=project)
    run_stage("sft", recipe, run / "sft", {}, sft, project=project)
    inputs = {"eval_data": run / "eval_data", "model": run / "sft"}
    run_stage(
        "evaluate", recipe, run / "evaluate" / "sft", inputs, evaluate, project=project, part="sft"
    )
    return run


def test_metric_traces_to_checkpoint_and_data(run: Path) -> None:
    (record,) = trace_metric(run, "arc_easy/acc")
    assert (record["metric"], record["value"], record["stderr"], record["n"]) == (
        "sft/arc_easy/acc",
        0.29,
        0.0456,
        100,
    )
    assert record["checkpoint"]["dir"] == "runs/tiny/sft"
    weights = record["checkpoint"]["weights"]
    assert weights == {"model/model.safetensors": sha256_file(run / "sft/model/model.safetensors")}
    (data,) = record["data"]
    assert data["read_from"] == ["runs/tiny/eval_data/arc_easy.jsonl"]
    assert data["sha256"] == sha256_file(run / "eval_data" / "arc_easy.jsonl")
    assert record["evaluate"]["samples"]["path"] == "samples_arc_easy.jsonl"
    assert {c["name"] for c in record["chain"]["inputs"]} == {"eval_data", "model"}


def test_cli_prints_the_score_and_its_chain(run: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(run.parent.parent)
    assert main(["trace", "runs/tiny", "--metric", "sft/arc_easy/acc"]) == 0
    out = capsys.readouterr().out
    assert "sft/arc_easy/acc = 0.29 ± 0.0456 (SE), n 100" in out
    assert "checkpoint  sft  runs/tiny/sft" in out
    assert "<- runs/tiny/eval_data/arc_easy.jsonl" in out


def test_altered_scores_file_is_refused(run: Path) -> None:
    (run / "evaluate" / "sft" / "scores.json").write_text(json.dumps({"arc_easy": {"acc": 0.9}}))
    with pytest.raises(LineageError, match="scores.json: missing or does not match"):
        trace_metric(run, "arc_easy/acc")


def test_unknown_metric_and_checkpoint_are_named(run: Path, capsys) -> None:
    with pytest.raises(LineageError, match="scored: arc_easy/acc$"):
        trace_metric(run, "arc_easy/f1")
    with pytest.raises(LineageError, match="checkpoints: sft"):
        trace_metric(run, "rl/arc_easy/acc")
    assert main(["trace", str(run), "--metric", "../x"]) == 2
    assert "expected [CHECKPOINT/]TASK/METRIC" in capsys.readouterr().err


def test_parse_metric() -> None:
    assert parse_metric("arc_easy/acc") == (None, "arc_easy", "acc")
    assert parse_metric("sft/arc_easy/acc_norm") == ("sft", "arc_easy", "acc_norm")
