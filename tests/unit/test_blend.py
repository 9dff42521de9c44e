"""blend: exclusion rules, independent per-source streams, token budgets."""

from __future__ import annotations

import json
import math
import random

import pytest

from openrecipe.data.blend import Phase, apply_exclusions, apportion, plan_phases, rule_matches, run
from openrecipe.errors import RecipeError
from openrecipe.stage import StageContext


def _doc(source: str, i: int, lang: str = "en", license: str = "cc0") -> dict:
    return {
        "id": f"{source}/{i:03d}",
        "source": source,
        "lang": lang,
        "license": license,
        "url_or_path": f"{source}/genre{i % 3}/{i}",
        "text": f"{source} document {i} " * 3,
    }


DOCS = (
    [_doc("a", i) for i in range(30)]
    + [_doc("b", i, lang="es") for i in range(20)]
    + [_doc("c", i, license="gpl") for i in range(25)]
)
PHASES = [
    {"name": "p1", "fraction": 0.75, "weights": {"a": 0.5, "b": 0.3, "c": 0.2}},
    {"name": "p2", "fraction": 0.25, "weights": {"a": 0.0, "b": 0.5, "c": 0.5}},
]


def _run_blend(tmp_path, name: str, exclude: list[dict], docs=DOCS) -> dict:
    curated = tmp_path / "curated"
    curated.mkdir(exist_ok=True)
    with open(curated / "docs.jsonl", "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(d, sort_keys=True) + "\n" for d in docs)
    out = tmp_path / name
    out.mkdir()
    config = {
        "seed": 7,
        "data.exclude": exclude,
        "data.phases": PHASES,
        "pretrain.steps": 10,
        "pretrain.seq_length": 15,
        "pretrain.micro_batch_size": 2,
        "pretrain.grad_accum": 3,
    }
    ctx = StageContext("blend", None, config, "h", 0, {"curated": curated}, out, tmp_path)
    summary = run(ctx)
    summary["plan"] = json.loads((out / "plan.json").read_text(encoding="utf-8"))
    summary["streams"] = {
        s: [
            json.loads(line)["id"]
            for line in (out / "streams" / f"{s}.jsonl").read_text(encoding="utf-8").splitlines()
        ]
        for s in "abc"
    }
    return summary


def test_rule_matches_all_named_fields():
    doc = _doc("a", 4)
    assert rule_matches({"source": "a"}, doc)
    assert rule_matches({"source": "a", "path_glob": "a/genre1/*"}, doc)
    assert not rule_matches({"source": "a", "lang": "es"}, doc)
    assert rule_matches({"ids": ["a/004"]}, doc) and not rule_matches({"ids": ["a/005"]}, doc)
    kept, excluded = apply_exclusions(
        [doc, _doc("c", 1, license="gpl")], [{"lang": "fr"}, {"license": "gpl"}]
    )
    assert [d["id"] for d in kept] == ["a/004"]
    assert excluded == [{"id": "c/001", "source": "c", "rule": 1}]


def test_excluding_a_source_does_not_reorder_the_others(tmp_path):
    full = _run_blend(tmp_path, "full", [])
    without_c = _run_blend(tmp_path, "without_c", [{"source": "c"}])
    assert without_c["streams"]["a"] == full["streams"]["a"]
    assert without_c["streams"]["b"] == full["streams"]["b"]
    assert without_c["streams"]["c"] == [] and without_c["excluded"] == 25
    assert full["streams"]["a"] != sorted(full["streams"]["a"])  # really shuffled
    assert sorted(full["streams"]["a"]) == [d["id"] for d in DOCS if d["source"] == "a"]
    # Dropping documents *inside* b keeps a's order as well.
    partial = _run_blend(tmp_path, "partial", [{"source": "b", "path_glob": "b/genre0/*"}])
    assert partial["streams"]["a"] == full["streams"]["a"]
    assert len(partial["streams"]["b"]) == 13


def test_plan_budgets_and_renormalisation(tmp_path):
    full = _run_blend(tmp_path, "full", [])["plan"]
    assert full["total_tokens"] == 10 * 2 * 3 * 16
    p1, p2 = full["phases"]
    assert p1["tokens"] + p2["tokens"] == 960 and p1["tokens"] == 720
    assert p1["budgets"] == {"a": 360, "b": 216, "c": 144}
    assert p2["budgets"]["a"] == 0 and p1["renormalised"] is None
    assert full["sources"]["a"]["chars"] == sum(len(d["text"]) for d in DOCS if d["source"] == "a")
    cut = _run_blend(tmp_path, "cut", [{"license": "gpl"}])["plan"]
    q1, q2 = cut["phases"]
    assert q1["budgets"] == {"a": 450, "b": 270, "c": 0}  # 0.5 : 0.3 renormalised to 5/8 : 3/8
    assert q2["budgets"] == {"a": 0, "b": 240, "c": 0}
    assert "['c']" in q1["renormalised"] and "['c']" in q2["renormalised"]


def test_phase_with_no_data_left_is_an_error():
    with pytest.raises(RecipeError, match=r"data.phases\[1\]"):
        plan_phases(tuple(Phase(**p) for p in PHASES), 100, {"a": 5, "b": 0, "c": 0})


def test_apportion_sums_exactly():
    assert apportion(10, {"x": 1, "y": 1, "z": 1}) == {"x": 4, "y": 3, "z": 3}
    assert sum(apportion(61920, {"p": 0.8, "q": 0.2}).values()) == 61920
    assert apportion(0, {"x": 1.0}) == {"x": 0}


def test_apportion_is_largest_remainder_on_random_shares():
    """Every total is split exactly: each part is the floor or the ceiling of its exact share,
    the parts add up to the total, and only the largest remainders are rounded up."""
    rng = random.Random(21)
    for _ in range(500):
        shares = {f"s{i}": rng.choice([0.0, rng.random(), rng.randint(1, 9)]) for i in range(5)}
        if sum(shares.values()) <= 0:
            continue
        total = rng.randint(0, 50)
        parts = apportion(total, shares)
        assert sum(parts.values()) == total
        exact = {k: total * v / sum(shares.values()) for k, v in shares.items()}
        assert all(math.floor(exact[k]) <= parts[k] <= math.ceil(exact[k]) for k in shares)
        up = [k for k in shares if parts[k] > math.floor(exact[k])]
        down = [k for k in shares if parts[k] == math.floor(exact[k]) < exact[k]]
        assert all(exact[u] % 1 >= exact[d] % 1 for u in up for d in down)


def test_apportion_never_overshoots_when_shares_round_up():
    # two thirds of 2 each would round to 1 + 1 + 1 = 3; the largest remainders give 1 + 1 + 0
    assert apportion(2, {"x": 1, "y": 1, "z": 1}) == {"x": 1, "y": 1, "z": 0}
    assert apportion(3, {"a": 0.6, "b": 0.4}) == {"a": 2, "b": 1}  # 1.8 -> 2, 1.2 -> 1


def test_quality_bucket_below_is_strict():
    """``quality_bucket_below: 2`` drops buckets 0 and 1 and keeps bucket 2 itself."""
    below = {"quality_bucket_below": 2}
    for bucket, dropped in ((0, True), (1, True), (2, False), (3, False)):
        doc = {**_doc("a", bucket), "quality_bucket": bucket}
        assert rule_matches(below, doc) is dropped, bucket
    kept, _ = apply_exclusions([{**_doc("a", b), "quality_bucket": b} for b in range(4)], [below])
    assert [d["quality_bucket"] for d in kept] == [2, 3]


def test_quality_bucket_rules():
    low, high, unscored = (
        {**_doc("a", 1), "quality_bucket": 0},
        {**_doc("a", 2), "quality_bucket": 3},
        {**_doc("a", 3), "quality_bucket": None},
    )
    below = {"quality_bucket_below": 2}
    assert rule_matches(below, low) and not rule_matches(below, high)
    assert not rule_matches(below, unscored) and not rule_matches(below, _doc("a", 4))
    assert rule_matches({"buckets": [3]}, high) and not rule_matches({"buckets": [3]}, low)
    assert not rule_matches({"buckets": [0], "source": "b"}, low)
    kept, excluded = apply_exclusions([low, high, unscored], [below])
    assert [d["id"] for d in kept] == ["a/002", "a/003"] and excluded[0]["id"] == "a/001"


def _run_lang_blend(tmp_path, name: str, exclude: list[dict]) -> tuple[dict, dict[str, list[str]]]:
    """Blend a multilingual source ``m`` weighted per language beside a named source ``a``."""
    docs = [
        *[_doc("a", i) for i in range(10)],
        *[_doc("m", i, lang="es") for i in range(12)],
        *[_doc("m", 100 + i, lang="fr") for i in range(6)],
        *[_doc("m", 200 + i, lang="de") for i in range(4)],  # no weight names German
        *[_doc("n", i, lang="es") for i in range(5)],
    ]
    curated = tmp_path / f"{name}-curated"
    curated.mkdir()
    with open(curated / "docs.jsonl", "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(d, sort_keys=True) + "\n" for d in docs)
    out = tmp_path / name
    out.mkdir()
    phases = [
        {"name": "p1", "fraction": 1.0, "weights": {"a": 0.5, "lang:es": 0.3, "lang:fr": 0.2}}
    ]
    config = {
        "seed": 7,
        "data.exclude": exclude,
        "data.phases": phases,
        "pretrain.steps": 10,
        "pretrain.seq_length": 15,
        "pretrain.micro_batch_size": 2,
        "pretrain.grad_accum": 1,
    }
    ctx = StageContext("blend", None, config, "h", 0, {"curated": curated}, out, tmp_path)
    run(ctx)
    plan = json.loads((out / "plan.json").read_text(encoding="utf-8"))
    streams = {
        key: [json.loads(line) for line in (out / p["stream"]).read_text().splitlines()]
        for key, p in plan["lang_streams"].items()
    }
    return plan, {k: [d["id"] for d in v] for k, v in streams.items()} | {
        f"{k}/langs": sorted({d["lang"] for d in v}) for k, v in streams.items()
    }


def test_language_weights_draw_from_unnamed_sources(tmp_path):
    plan, streams = _run_lang_blend(tmp_path, "full", [])
    # lang:es holds Spanish documents of both unnamed sources; named source a is never in it.
    assert streams["lang:es/langs"] == ["es"] and streams["lang:fr/langs"] == ["fr"]
    assert plan["lang_streams"]["lang:es"]["docs_per_source"] == {"m": 12, "n": 5}
    assert plan["lang_streams"]["lang:fr"]["docs"] == 6
    assert plan["unweighted_docs"] == {"m": 4}  # German: no weight draws it
    assert plan["phases"][0]["budgets"] == {"a": 160, "lang:es": 96, "lang:fr": 64}
    # Removing one source's documents keeps the others' order in the language stream.
    without_n, streams_without_n = _run_lang_blend(tmp_path, "without_n", [{"source": "n"}])
    assert streams_without_n["lang:es"] == [i for i in streams["lang:es"] if not i.startswith("n/")]
    assert streams["lang:es"] != sorted(streams["lang:es"])  # really mixed
