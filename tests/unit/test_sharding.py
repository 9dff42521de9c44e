"""Scatter/gather of per-document curation stages: any shard count gathers to the bytes one job
writes, and a missing shard is refused rather than silently losing documents."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openrecipe.data.sharding import shard_input, shard_of, shard_part
from openrecipe.data.stages import fuzzy_dedup, langid, quality
from openrecipe.errors import StageInputError
from openrecipe.hashing import sha256_file
from openrecipe.registry import STAGES as REGISTRY
from openrecipe.stage import StageContext

TEXTS = {
    "en": "The river ran past the old stone mill, and the miller watched the water all day.",
    "es": "El río pasaba junto al viejo molino de piedra y el molinero miraba el agua todo el día.",
    "fr": "La rivière passait devant le vieux moulin de pierre et le meunier regardait l'eau.",
}
CONFIG = {
    "data.curation.langid": {
        "skip_langs": ["code"],
        "relabel_min_confidence": 0.5,
        "mismatch_confidence": 0.8,
        "max_chars": 2000,
    },
    "data.curation.fuzzy_dedup": {
        "num_perm": 64, "ngram": 3, "unit": "word", "threshold": 0.7, "bands": None, "seed": 1,
        "scheme": "datasketch",
    },
    "data.curation.quality": {
        "reference_sources": [], "reference_fraction": 0.3, "n_buckets": 3, "seed": 1,
    },
    "data.curation.exempt_langs": ["code"],
}  # fmt: skip
STAGES = {"langid": langid, "fuzzy_dedup": fuzzy_dedup, "quality": quality}


def _docs() -> list[dict]:
    docs = []
    for i in range(24):
        lang = ["en", "es", "fr"][i % 3]
        declared = "multi" if i % 4 == 0 else ("en" if i % 5 == 0 else lang)  # some mismatches
        docs.append({"id": f"s{i % 2}/{i:02d}", "source": f"s{i % 2}", "lang": declared,
                     "license": "cc0", "url_or_path": str(i), "text": f"{TEXTS[lang]} {i}"})  # fmt: skip
    return docs


def _run(
    root: Path, name: str, shards: int, inputs: dict[str, Path], part=None, stage="langid"
) -> Path:
    out = root / name
    out.mkdir(parents=True)
    # the stage's view, as run_stage gives it (a typed config refuses any other path)
    config = {
        path: value
        for path, value in {**CONFIG, "data.curation.shards": shards}.items()
        if path in REGISTRY[stage].view
    }
    STAGES[stage].run(StageContext(stage, None, config, "h", 0, inputs, out, root, part))
    return out


@pytest.fixture
def upstream(tmp_path: Path) -> Path:
    curate = tmp_path / "curate"
    curate.mkdir()
    (curate / "docs.jsonl").write_text(
        "".join(json.dumps(d, sort_keys=True) + "\n" for d in _docs()), encoding="utf-8"
    )
    return curate


@pytest.mark.parametrize("shards", [2, 5])
def test_gathered_shards_equal_one_job(tmp_path: Path, upstream: Path, shards: int) -> None:
    one = _run(tmp_path, "one", 1, {"docs": upstream})
    dirs = {
        shard_input(i): _run(tmp_path, f"s{i}", shards, {"docs": upstream}, shard_part(i))
        for i in range(shards)
    }
    sizes = [len((d / "docs.jsonl").read_text().splitlines()) for d in dirs.values()]
    assert sum(sizes) == len((one / "docs.jsonl").read_text().splitlines())
    gathered = _run(tmp_path, "gathered", shards, {"docs": upstream, **dirs})
    files = ["docs.jsonl", "dropped.jsonl", "quarantine.jsonl", "accounting.json"]
    assert [sha256_file(gathered / f) for f in files] == [sha256_file(one / f) for f in files]
    assert (one / "dropped.jsonl").read_text()  # the fixture really drops mismatches


@pytest.mark.parametrize(
    ("stage", "files"),
    [
        ("fuzzy_dedup", ["docs.jsonl", "dropped.jsonl", "accounting.json", "clusters.jsonl"]),
        ("quality", ["docs.jsonl", "accounting.json", "quality.json"]),
    ],
)
def test_signature_and_score_shards_gather_to_one_job(
    tmp_path: Path, upstream: Path, stage: str, files: list[str]
) -> None:
    """fuzzy_dedup shards compute MinHash signatures and quality shards perplexities; the gather
    does the all-document step (LSH clustering, quantile buckets) to the single job's bytes."""
    one = _run(tmp_path, "one", 1, {"docs": upstream}, stage=stage)
    dirs = {
        shard_input(i): _run(tmp_path, f"s{i}", 3, {"docs": upstream}, shard_part(i), stage)
        for i in range(3)
    }
    gathered = _run(tmp_path, "gathered", 3, {"docs": upstream, **dirs}, stage=stage)
    assert [sha256_file(gathered / f) for f in files] == [sha256_file(one / f) for f in files]
    if stage == "fuzzy_dedup":  # the fixture's texts repeat, so clusters really form
        assert (one / "dropped.jsonl").read_text()
    del dirs["shard_001"]
    with pytest.raises(StageInputError):
        _run(tmp_path, "partial", 3, {"docs": upstream, "shard_000": dirs["shard_000"],
                                      "shard_001": dirs["shard_002"]}, stage=stage)  # fmt: skip


def test_missing_shard_is_refused(tmp_path: Path, upstream: Path) -> None:
    dirs = {shard_input(i): _run(tmp_path, f"s{i}", 3, {"docs": upstream}, shard_part(i))
            for i in range(3)}  # fmt: skip
    with pytest.raises(StageInputError, match="shard inputs"):
        _run(tmp_path, "g1", 3, {"docs": upstream, "shard_000": dirs["shard_000"],
                                 "shard_002": dirs["shard_002"]})  # fmt: skip
    with pytest.raises(StageInputError, match="a shard is missing or stale"):
        _run(tmp_path, "g2", 3, {"docs": upstream, "shard_000": dirs["shard_000"],
                                 "shard_001": dirs["shard_001"]})  # fmt: skip


def test_shard_assignment_is_stable_and_checked(tmp_path: Path, upstream: Path) -> None:
    assert shard_of("brown/ca01", 4) == shard_of("brown/ca01", 4)
    assert {shard_of(f"doc/{i}", 4) for i in range(64)} == {0, 1, 2, 3}
    with pytest.raises(StageInputError, match="data.curation.shards is 2"):
        _run(tmp_path, "bad", 2, {"docs": upstream}, shard_part(2))
