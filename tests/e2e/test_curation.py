"""End to end, on the shared tiny run: the curation chain's accounting reconciles exactly at
every step, and excluding a source reruns only what follows the exclusion and leaves zero
tokens of that source in the packed dataset (read from the sidecar)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from openrecipe.data.card import CURATION_STAGES, check_accounting, load_accounting

from .workflow import job_counts, snakemake

pytestmark = pytest.mark.e2e


def test_accounting_reconciles_at_every_step(first_run: Path) -> None:
    run = first_run / "runs" / "tiny"
    chain = load_accounting({stage: run / stage for stage in CURATION_STAGES})
    assert [stage for stage, _ in chain] == list(CURATION_STAGES)
    assert check_accounting(chain) == []
    raw_lines = sum(
        len((first_run / "data" / "raw" / s / "docs.jsonl").read_bytes().splitlines())
        for s in ("austen", "brown", "python_stdlib", "synthetic_math")
    )
    assert chain[0][1]["steps"]["validate"]["total"]["in"] == raw_lines
    for stage, acc in chain:  # the ledger matches the files actually written
        last = acc["steps"][acc["order"][-1]]["total"]
        kept = (run / stage / "docs.jsonl").read_text(encoding="utf-8").splitlines()
        dropped = (run / stage / "dropped.jsonl").read_text(encoding="utf-8").splitlines()
        quarantined = (run / stage / "quarantine.jsonl").read_text(encoding="utf-8").splitlines()
        assert len(kept) == last["kept"], stage
        total_dropped = sum(acc["steps"][s]["total"]["dropped_total"] for s in acc["order"])
        assert len(dropped) == total_dropped, stage
        assert len(quarantined) == sum(
            acc["steps"][s]["total"]["quarantined"] for s in acc["order"]
        )
    plan = json.loads((run / "blend" / "plan.json").read_text(encoding="utf-8"))
    decontam_kept = chain[-1][1]["steps"]["decontam"]["sources"]
    for source, entry in plan["sources"].items():
        assert entry["docs"] + entry["excluded_docs"] == decontam_kept[source]["kept"], source
    card = (first_run / "results" / "tiny" / "data_card.md").read_text(encoding="utf-8")
    assert "| decontam | decontam | **all** |" in card
    assert (first_run / "results" / "tiny" / "blend.png").stat().st_size > 1000


def test_excluding_a_source_reruns_only_downstream_and_packs_zero_tokens(
    first_run: Path, tmp_path: Path
) -> None:
    project = tmp_path / "project"  # a copy, so the shared run stays as the other tests expect
    shutil.copytree(first_run, project, symlinks=True)
    override = project / "recipes" / "overrides" / "no_brown.yaml"
    override.parent.mkdir(exist_ok=True)
    override.write_text("data:\n  exclude:\n    - {source: brown}\n", encoding="utf-8")
    args = ("--configfile", "recipes/tiny.yaml", "recipes/overrides/no_brown.yaml")
    planned = job_counts(snakemake(project, "-n", *args)[0])
    assert {"blend", "tokenizer", "pack", "pretrain", "sft", "rl", "report"} <= set(planned)
    assert not {"acquire", "reasoning", *CURATION_STAGES} & set(planned), planned
    # Run the data part for real (seconds), then read the packed dataset's sidecar.
    done = job_counts(snakemake(project, "runs/tiny/pack/manifest.json", *args)[0])
    assert done == {"blend": 1, "tokenizer": 1, "pack": 1}
    pack = project / "runs" / "tiny" / "pack"
    tokens: dict[str, int] = {}
    for line in (pack / "sidecar.jsonl").read_text(encoding="utf-8").splitlines():
        for _doc, source, _start, n in json.loads(line)["segments"]:
            tokens[source] = tokens.get(source, 0) + n
    assert "brown" not in tokens and sum(tokens.values()) > 0
    shares = json.loads((pack / "shares.json").read_text(encoding="utf-8"))
    assert shares["sources"].get("brown", {}).get("tokens", 0) == 0


def test_sharded_curation_gathers_to_identical_outputs(first_run: Path, tmp_path: Path) -> None:
    """``data.curation.shards: 3`` scatters every curation stage after curate over three jobs;
    each gathered stage output is byte-identical to the single job's."""
    project = tmp_path / "project"
    shutil.copytree(first_run, project, symlinks=True)
    override = project / "recipes" / "overrides" / "shards.yaml"
    override.parent.mkdir(exist_ok=True)
    override.write_text("data:\n  curation:\n    shards: 3\n", encoding="utf-8")
    args = ("--configfile", "recipes/tiny.yaml", "recipes/overrides/shards.yaml")
    done = job_counts(snakemake(project, "runs/tiny/decontam/manifest.json", *args)[0])
    sharded = ("langid", "fuzzy_dedup", "quality", "decontam")
    assert done == {**{f"{s}_shard": 3 for s in sharded}, **dict.fromkeys(sharded, 1)}
    for stage in sharded:
        one = json.loads((first_run / "runs/tiny" / stage / "manifest.json").read_text())
        three = json.loads((project / "runs/tiny" / stage / "manifest.json").read_text())
        assert three["outputs"] == one["outputs"], stage
        shard_inputs = [i["name"] for i in three["inputs"] if i["name"].startswith("shard_")]
        assert shard_inputs == ["shard_000", "shard_001", "shard_002"]
        work = [
            json.loads((project / f"runs/tiny/{stage}_shards/{i:03d}/manifest.json").read_text())
            for i in range(3)
        ]
        counts = [m["summary"].get("in", m["summary"].get("signatures")) for m in work]
        if stage == "quality":  # reference and code documents are not scored
            counts = [m["summary"]["scored"] for m in work]
        else:  # the shards partition the stage's input
            assert sum(counts) == one["summary"]["in"], stage
        assert all(n > 0 for n in counts), (stage, counts)  # every shard did real work
