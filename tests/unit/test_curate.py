"""curate: quarantine, cap, normalisation, dedup, heuristics and conservation accounting."""

from __future__ import annotations

import json

import pytest

from openrecipe.data.curate import STEPS, curate, curate_config, normalize_text, quality_reason
from openrecipe.data.repetition import default_config

CFG = {
    "max_docs_per_source": 0,
    "normalization": "NFC",
    "min_chars": 20,
    "max_chars": 400,
    "min_words": 5,
    "max_mean_word_length": 15,
    "max_symbol_ratio": 0.2,
    "min_alpha_ratio": 0.3,
    "exempt_langs": ["code"],
    # off for these short fixtures (test_repetition.py tests the published thresholds)
    "repetition": {k: None for k in default_config() if k != "exempt_sources"}
    | {"exempt_sources": []},
}
PROSE = "The quick brown fox jumps over the lazy dog again and again."


def _doc(i: str, text: str = PROSE, source: str = "a", lang: str = "en") -> dict:
    return {
        "id": f"{source}/{i}",
        "source": source,
        "lang": lang,
        "license": "x",
        "url_or_path": f"p/{i}",
        "text": text,
    }


def _write(path, items) -> None:
    with open(path, "wb") as handle:
        for item in items:
            raw = item if isinstance(item, bytes) else json.dumps(item, ensure_ascii=False).encode()
            handle.write(raw + b"\n")


def test_quarantine_reasons(tmp_path):
    missing = _doc("m")
    del missing["lang"]
    _write(
        tmp_path / "a.jsonl",
        [
            _doc("1"),
            b"{not json",
            b'{"id": "\xff"}',
            missing,
            _doc("e", "   "),
            _doc("l", "word " * 100),
            b'{"id": "a/s", "source": "a", "lang": "en", "license": "x", '
            b'"url_or_path": "p", "text": "bad \\ud800 surrogate"}',
            _doc("1", PROSE + " dup id"),
            _doc("w", source="b"),
        ],
    )
    kept, ledger, _ = curate([("a", tmp_path / "a.jsonl")], curate_config(CFG))
    reasons = [q["reason"] for q in ledger.quarantine]
    assert reasons == [
        "invalid_json",
        "invalid_utf8",
        "missing_fields",
        "empty_text",
        "too_long",
        "lone_surrogate",
        "duplicate_id",
        "source_mismatch",
    ]
    assert [q["line"] for q in ledger.quarantine] == [2, 3, 4, 5, 6, 7, 8, 9]
    assert [d["id"] for d in kept] == ["a/1"]
    # The input profile keeps the labels a quarantined line states (the oversized document is
    # English), and counts unparseable lines under "?".
    _, _, profile_in = curate([("a", tmp_path / "a.jsonl")], curate_config(CFG))
    langs: dict[str, int] = {}
    for row in profile_in:
        langs[row["lang"]] = langs.get(row["lang"], 0) + row["docs"]
    assert langs == {"en": 6, "?": 3}


def test_cap_dedup_filter_and_conservation(tmp_path):
    _write(
        tmp_path / "a.jsonl",
        [
            _doc("1"),
            _doc("2", PROSE + "\r\n"),
            _doc("3", "short"),
            _doc("4", PROSE + " More words here."),
            _doc("5"),
        ],
    )
    _write(
        tmp_path / "b.jsonl",
        [_doc("1", PROSE, source="b"), _doc("2", "x = [1, 2]  # ok!!", source="b", lang="code")],
    )
    cfg = {**CFG, "max_docs_per_source": 4, "min_chars": 10}
    kept, ledger, _ = curate(
        [("a", tmp_path / "a.jsonl"), ("b", tmp_path / "b.jsonl")], curate_config(cfg)
    )
    dropped = {(d["id"], d["step"], d["reason"]) for d in ledger.dropped}
    assert dropped == {
        ("a/5", "source_cap", "over_source_cap"),
        ("a/2", "dedup", "exact_duplicate"),  # same text once \r\n is normalised
        ("b/1", "dedup", "exact_duplicate"),  # first occurrence (source a) wins
        ("a/3", "filter", "too_short"),
    }
    assert [d["id"] for d in kept] == ["a/1", "a/4", "b/2"]  # code exempt from prose filters
    report = ledger.report()
    for step in STEPS:
        for counts in [*report["steps"][step]["sources"].values(), report["steps"][step]["total"]]:
            assert counts["in"] == counts["kept"] + counts["dropped_total"] + counts["quarantined"]
    assert report["steps"]["validate"]["total"]["in"] == 7
    assert report["steps"]["filter"]["sources"]["a"]["kept"] == 2


def test_normalize_text():
    raw = "Cafe\u0301 \x07ok  \r\nline\t \rend\x00\n\n"
    assert normalize_text(raw, "NFC") == "Café ok\nline\nend"
    assert normalize_text("ﬁne", "NFKC") == "fine"
    assert normalize_text("ﬁne", "NFC") == "ﬁne"


@pytest.mark.parametrize(
    ("text", "lang", "reason"),
    [
        ("a b c d e f g h i j k l m n o p q r s t", "en", None),
        ("tiny", "en", "too_short"),
        ("abcdefghij klmnopqrst uvwxyzabcd", "en", "too_few_words"),
        ("a " * 5 + "x" * 200, "en", "long_words"),
        ("a b c d e f ## ## ## ## ## ## ## ##", "en", "symbol_ratio"),
        ("1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 a", "en", "low_alpha"),
        ("{} [] () ;; :: ## {} [] () ;; :: ##", "code", None),
    ],
)
def test_quality_reason(text, lang, reason):
    cfg = {**CFG, "min_chars": 10, "min_words": 5, "max_mean_word_length": 10}
    assert quality_reason(text, lang, curate_config(cfg)) == reason
