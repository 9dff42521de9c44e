"""The curation stages after curate (langid, fuzzy_dedup, quality, decontam) and curate's
quarantine of malformed documents: accounting, decisions, and that malformed input changes
nothing but the quarantine."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import pytest

from openrecipe.data import curate as curate_stage
from openrecipe.data.accounting import Ledger
from openrecipe.data.minhash_lsh import MinHashParams
from openrecipe.data.repetition import default_config
from openrecipe.data.stages import decontam, fuzzy_dedup, langid, quality
from openrecipe.stage import StageContext

LANGID = langid.LangidParams(
    mismatch_confidence=0.8, relabel_min_confidence=0.5, max_chars=2000, skip_langs=("code",)
)
FUZZY = MinHashParams(num_perm=64, ngram=3, unit="word", threshold=0.7, bands=None, seed=1)
QUALITY = quality.QualityParams(
    reference_sources=("ref",), reference_fraction=0.5, n_buckets=3, seed=1
)
EN = (
    "The committee met on Tuesday to discuss the budget for the new library, and after a long "
    "debate the members agreed to postpone the decision until the spring meeting."
)
ES = (
    "El comité se reunió el martes para discutir el presupuesto de la nueva biblioteca, y tras "
    "un largo debate los miembros acordaron aplazar la decisión hasta la reunión de primavera."
)
FR = (
    "Le comité s'est réuni mardi pour discuter du budget de la nouvelle bibliothèque et, après "
    "un long débat, les membres ont décidé de reporter la décision à la réunion du printemps."
)


def _doc(i: str, text: str, source: str = "s", lang: str = "en") -> dict:
    return {"id": f"{source}/{i}", "source": source, "lang": lang, "license": "cc0",
            "url_or_path": f"p/{i}", "text": text}  # fmt: skip


def _balanced(ledger: Ledger) -> None:
    for step in ledger.report()["steps"].values():
        for c in [*step["sources"].values(), step["total"]]:
            assert c["in"] == c["kept"] + c["dropped_total"] + c["quarantined"]


def test_langid_drops_confident_mismatch_and_relabels_multi():
    docs = [
        _doc("en", EN),
        _doc("fr", FR),
        _doc("code", "def f(x):\n    return x", lang="code"),
        _doc("es", ES, source="m", lang="multi"),
    ]
    kept, ledger = langid.label(docs, LANGID)
    assert [d["id"] for d in kept] == ["s/en", "s/code", "m/es"]
    assert ledger.dropped[0]["id"] == "s/fr" and ledger.dropped[0]["detected"] == "fr"
    assert kept[2]["lang"] == "es" and kept[2]["lang_declared"] == "multi"
    assert kept[1]["lang"] == "code" and kept[0]["lang_detected"] == "en"
    _balanced(ledger)
    strict = langid.label(docs, replace(LANGID, mismatch_confidence=1.0))[0]
    assert len(strict) == 4  # below the threshold the declaration wins


def test_fuzzy_dedup_keeps_first_of_cluster():
    near = EN + " Thanks."
    docs = [_doc("1", EN), _doc("2", ES), _doc("3", near, source="t")]
    kept, ledger, clusters = fuzzy_dedup.dedup(docs, FUZZY)
    assert [d["id"] for d in kept] == ["s/1", "s/2"]
    assert clusters == [["s/1", "t/3"]]
    assert ledger.dropped == [
        {"id": "t/3", "source": "t", "reason": "near_duplicate", "step": "fuzzy_dedup",
         "duplicate_of": "s/1"}
    ]  # fmt: skip
    assert ledger.report()["steps"]["fuzzy_dedup"]["sources"]["t"]["kept"] == 0
    _balanced(ledger)


def test_quality_buckets_reference_and_unscored():
    rng = random.Random(0)
    words = EN.lower().replace(",", "").replace(".", "").split()
    ref = [_doc(str(i), " ".join(rng.sample(words, 20)) + ".", source="ref") for i in range(20)]
    other = [
        _doc("close", EN, source="web"),
        _doc("far", "zq xv kk " * 20, source="web"),
        _doc("py", "import os\nprint(os.sep)", source="web", lang="code"),
    ]
    docs, report = quality.bucketize(ref + other, QUALITY, ("code",))
    by_id = {d["id"]: d for d in docs}
    assert [d["id"] for d in docs] == [d["id"] for d in ref + other]  # order kept, none dropped
    refs = [d for d in docs if d["quality_reference"]]
    assert refs and all(d["quality_bucket"] == 2 and d["quality_logppl"] is None for d in refs)
    assert by_id["web/close"]["quality_logppl"] < by_id["web/far"]["quality_logppl"]
    scored = [d for d in docs if d["quality_logppl"] is not None]
    worst = max(scored, key=lambda d: d["quality_logppl"])
    best = min(scored, key=lambda d: d["quality_logppl"])
    assert worst["id"] == "web/far" and worst["quality_bucket"] == 0
    assert best["quality_bucket"] == 2  # equal-count quantiles span all buckets
    assert by_id["web/py"]["quality_bucket"] is None
    assert report["reference_docs"] == len(refs) and len(report["edges_quality"]) == 2


def test_decontam_lists_matched_items(tmp_path: Path):
    reasoning = tmp_path / "reasoning"
    reasoning.mkdir()
    item = {"id": "h1", "question": "Pia has 9 coins. Pia buys 8 more coins. How many coins does "
            "Pia have now?", "thinking": "9+8=17.", "answer": "17"}  # fmt: skip
    (reasoning / "heldout.jsonl").write_text(json.dumps(item) + "\n", encoding="utf-8")
    leaked = "Homework. pia has 9 coins; pia buys 8 more coins. How many coins does Pia have now?"
    docs = [_doc("clean", EN), _doc("leak", leaked)]
    sets = decontam.eval_items({"docs": tmp_path, "reasoning": reasoning})
    kept, ledger, matches, report = decontam.decontaminate_docs(
        docs, sets, decontam.DecontamParams(ngram=13, min_words=8)
    )
    assert [d["id"] for d in kept] == ["s/clean"]
    assert matches == [{"id": "s/leak", "source": "s", "eval_items": ["reasoning:h1"]}]
    assert report["reasoning"]["matched"] == {"reasoning:h1": ["s/leak"]}
    _balanced(ledger)


# ----------------------------------------------------------------------------------------------
# 1,000 malformed documents mixed into a source are quarantined with reasons; nothing else changes.

CURATE_CFG = {
    "max_docs_per_source": 0, "normalization": "NFC", "min_chars": 50, "max_chars": 5000,
    "min_words": 8, "max_mean_word_length": 15, "max_symbol_ratio": 0.2, "min_alpha_ratio": 0.3,
    "exempt_langs": ["code"], "repetition": default_config(),
}  # fmt: skip


def _malformed(i: int) -> tuple[bytes, str]:
    """One malformed line of ten kinds, and the reason curate must give."""
    kind = i % 10
    good = _doc(f"bad{i}", EN)
    if kind == 0:
        return b'{"id": "x\xff\xfe"}', "invalid_utf8"
    if kind == 1:
        return b'{"id": "s/broken' + str(i).encode(), "invalid_json"
    if kind == 2:
        return b"[1, 2, 3]", "not_an_object"
    if kind == 3:
        return json.dumps({k: v for k, v in good.items() if k != "license"}).encode(), (
            "missing_fields"
        )
    if kind == 4:
        return json.dumps({**good, "text": 42}).encode(), "field_not_string"
    if kind == 5:
        return json.dumps({**good, "text": "broken \ud800 markup"}).encode(), "lone_surrogate"
    if kind == 6:
        return json.dumps({**good, "text": " \n\t "}).encode(), "empty_text"
    if kind == 7:
        return json.dumps({**good, "text": "<p>" * 3000}).encode(), "too_long"
    if kind == 8:
        return json.dumps({**good, "source": "other"}).encode(), "source_mismatch"
    return json.dumps({**good, "id": "s/0"}).encode(), "duplicate_id"


def _curate_dir(tmp_path: Path, name: str, lines: list[bytes]) -> Path:
    raw = tmp_path / f"raw_{name}"
    raw.mkdir()
    (raw / "docs.jsonl").write_bytes(b"".join(line + b"\n" for line in lines))
    out = tmp_path / f"out_{name}"
    out.mkdir()
    config = {f"data.curation.{k}": v for k, v in CURATE_CFG.items()}
    ctx = StageContext("curate", None, config, "h", 0, {"raw_s": raw}, out, tmp_path)
    curate_stage.run(ctx)
    return out


def test_malformed_documents_are_quarantined_and_change_nothing_else(tmp_path: Path):
    rng = random.Random(3)
    clean = [
        json.dumps(_doc(str(i), f"{EN} Item {i} of the minutes, {rng.random():.6f}.")).encode()
        for i in range(300)
    ]
    clean.append(json.dumps(_doc("dup", clean and json.loads(clean[5])["text"])).encode())
    bad = [_malformed(i) for i in range(1000)]
    mixed = list(clean)
    for line, _ in bad:  # scattered through the source, clean order kept
        mixed.insert(rng.randrange(len(mixed) + 1), line)
    base = _curate_dir(tmp_path, "clean", clean)
    dirty = _curate_dir(tmp_path, "mixed", mixed)
    for name in ("docs.jsonl", "dropped.jsonl"):
        assert (dirty / name).read_bytes() == (base / name).read_bytes(), name
    quarantine = [json.loads(x) for x in (dirty / "quarantine.jsonl").read_text().splitlines()]
    assert (base / "quarantine.jsonl").read_text() == ""
    assert len(quarantine) == 1000
    want = sorted(reason for _, reason in bad)
    assert sorted(q["reason"] for q in quarantine) == want
    assert all(q["input"] == "raw_s" and q["line"] >= 1 and q["excerpt"] for q in quarantine)
    accounting = json.loads((dirty / "accounting.json").read_text())
    clean_acc = json.loads((base / "accounting.json").read_text())
    validate = accounting["steps"]["validate"]["total"]
    assert validate["in"] == 1301 and validate["quarantined"] == 1000
    assert validate["kept"] == clean_acc["steps"]["validate"]["total"]["kept"] == 301
    for step in curate_stage.STEPS[1:]:  # every later step saw exactly the same documents
        assert accounting["steps"][step] == clean_acc["steps"][step]
    assert accounting["profile_out"] == clean_acc["profile_out"]


@pytest.mark.parametrize("stage", [langid, fuzzy_dedup, quality, decontam])
def test_stage_modules_expose_run(stage):
    assert callable(stage.run) and stage.STEP


def test_decontam_reads_one_benchmark_set_of_eval_data(tmp_path: Path):
    eval_data = tmp_path / "eval_data"
    eval_data.mkdir()
    record = {"openrecipe_id": "arc_easy:7", "question": "Which gas do plants take in from the "
              "air to make their food during photosynthesis?", "choices": ["oxygen", "carbon dioxide"]}  # fmt: skip
    (eval_data / "arc_easy.jsonl").write_text(json.dumps(record) + "\n", encoding="utf-8")
    sets = decontam.eval_items({"docs": tmp_path, "eval_data.arc_easy": eval_data})
    leaked = _doc("leak", "Quiz: which gas do plants take in from the air to make their food?")
    kept, _, matches, report = decontam.decontaminate_docs(
        [_doc("clean", EN), leaked], sets, decontam.DecontamParams(ngram=13, min_words=8)
    )
    assert [d["id"] for d in kept] == ["s/clean"]
    assert report["eval_data.arc_easy"]["matched"] == {"eval_data.arc_easy:arc_easy:7": ["s/leak"]}


def test_card_accounting_check_catches_any_imbalance(tmp_path: Path):
    from openrecipe.data.accounting import profile, write_outputs
    from openrecipe.data.card import check_accounting, data_card, load_accounting

    docs = [_doc("1", EN), _doc("2", EN + " Thanks."), _doc("3", ES, source="t", lang="es")]
    dirs = {}
    for stage, (kept, ledger) in {
        "langid": langid.label(docs, LANGID),
        "fuzzy_dedup": fuzzy_dedup.dedup(docs, FUZZY)[:2],
    }.items():
        dirs[stage] = tmp_path / stage
        dirs[stage].mkdir()
        write_outputs(dirs[stage], kept, ledger, profile(docs))
    assert check_accounting(load_accounting({"langid": dirs["langid"]})) == []
    card, figures = data_card("t", {"langid": dirs["langid"]})
    assert "| langid | langid | **all** | 3 | 3 | 0 |" in card
    # langid kept all three and fuzzy_dedup read all three: consistent until tampered with.
    acc_path = dirs["fuzzy_dedup"] / "accounting.json"
    acc = json.loads(acc_path.read_text())
    acc["steps"]["fuzzy_dedup"]["sources"]["s"]["kept"] += 1
    acc_path.write_text(json.dumps(acc))
    problems = check_accounting(load_accounting(dirs))
    assert any("fuzzy_dedup/fuzzy_dedup/s" in p for p in problems)
    assert any("profile_out of s" in p for p in problems)
