"""Gopher's repetition rules and the bidi policy: hostile documents that used to survive curate
are dropped (or stripped) and counted, real prose is not, the fast implementation agrees with a
plain one written from the rules' definitions, and the thresholds are recipe fields.

datatrove is not installed in this environment, so the decisions are checked against
``_reference_reason`` below (the rules as Rae et al. 2021 and datatrove's
``GopherRepetitionFilter`` state them, on strings, with no optimisation) rather than against
datatrove itself."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from pathlib import Path

import pytest

from openrecipe.data.accounting import write_outputs
from openrecipe.data.card import data_card
from openrecipe.data.curate import CurateConfig, curate, curate_config, normalize_text, strip_bidi
from openrecipe.data.repetition import (
    DUP_NGRAMS,
    TOP_NGRAMS,
    RepetitionRules,
    default_config,
    repetition_reason,
    words,
)
from openrecipe.errors import RecipeError
from openrecipe.recipe import load_recipe

PROJECT = Path(__file__).resolve().parents[2]
FIXTURE = PROJECT / "tests" / "fixtures" / "real_docs.jsonl"
BUY_NOW = "buy now! " * 5000
# Real documents of the default corpus (public-domain Bible chapters and an Austen chapter, a
# Brown-corpus file) and what the published thresholds decide for each: the refrains of
# Psalm 136 and Amos 1 are what the rules are for; running prose is kept.
EXPECTED = {
    "bible_web/Ps/136": "dup_line_frac",
    "bible_web/Amos/001": "dup_para_frac",
    "bible_rv1909/Ps/024": "duplicated_9_n_grams",
    "bible_web/Prov/029": None,
    "bible_web/Matt/017": None,
    "bible_rv1909/Prov/007": None,
    "brown/ck04": None,
    "austen/emma/ch017": None,
}


def _reference_reason(text: str, rules: RepetitionRules) -> str | None:
    """The rules on strings, one after another, as written: no ids, no numpy, no shortcuts."""

    def duplicates(items: list[str]) -> tuple[int, int]:
        seen: set[str] = set()
        count = chars = 0
        for item in items:
            if item in seen:
                count, chars = count + 1, chars + len(item)
            seen.add(item)
        return count, chars

    paragraphs = re.split(r"\n{2,}", text.strip())
    count, chars = duplicates(paragraphs)
    if count / len(paragraphs) > rules.dup_paragraph_fraction:
        return "dup_para_frac"
    if chars / len(text) > rules.dup_paragraph_char_fraction:
        return "dup_para_char_frac"
    lines = re.split(r"\n+", text)
    count, chars = duplicates(lines)
    if count / len(lines) > rules.dup_line_fraction:
        return "dup_line_frac"
    if chars / len(text) > rules.dup_line_char_fraction:
        return "dup_line_char_frac"
    w = words(text)
    for n, limit in zip(TOP_NGRAMS, rules.top_ngram_char_fraction, strict=True):
        grams = [" ".join(w[i : i + n]) for i in range(len(w) - n + 1)]
        if grams:
            gram, count = Counter(grams).most_common(1)[0]
            if len(gram) * count / len(text) > limit:
                return f"top_{n}_gram"
    for n, limit in zip(DUP_NGRAMS, rules.dup_ngram_char_fraction, strict=True):
        seen, i, chars = set(), 0, 0
        while i <= len(w) - n:
            gram = "".join(w[i : i + n])
            if tuple(w[i : i + n]) in seen:
                chars, i = chars + len(gram), i + n
            else:
                seen.add(tuple(w[i : i + n]))
                i += 1
        if chars / len(text) > limit:
            return f"duplicated_{n}_n_grams"
    return None


def _real_docs() -> list[dict]:
    return [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines()]


def _hostile(i: str, text: str) -> dict:
    return {"id": f"web/{i}", "source": "web", "lang": "en", "license": "x",
            "url_or_path": i, "text": text}  # fmt: skip


HOSTILE = {
    "buy_now": (BUY_NOW, "top_2_gram"),
    "same_line": ("Click here to claim your free prize today.\n" * 200, "dup_line_frac"),
    "same_paragraph": (
        "\n\n".join(["Limited offer: order before midnight and save on every item."] * 40),
        "dup_para_frac",
    ),
    # unique lines and paragraphs, one long sentence repeated through an otherwise varied text
    "repeated_sentence": (
        " ".join(
            f"Note {i} concerns item {i * 7} of the list."
            + " Our trusted partners deliver quality products to your door every single day."
            for i in range(60)
        ),
        "duplicated_5_n_grams",
    ),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_documents_fail_a_repetition_rule(name: str) -> None:
    text, reason = HOSTILE[name]
    text = normalize_text(text, "NFC")
    assert repetition_reason(text, RepetitionRules()) == reason
    assert _reference_reason(text, RepetitionRules()) == reason


def test_real_documents_decided_as_the_rules_say() -> None:
    docs = _real_docs()
    assert sorted(d["id"] for d in docs) == sorted(EXPECTED)
    for doc in docs:
        text = normalize_text(doc["text"], "NFC")
        assert repetition_reason(text, RepetitionRules()) == EXPECTED[doc["id"]], doc["id"]
        assert _reference_reason(text, RepetitionRules()) == EXPECTED[doc["id"]], doc["id"]


def test_fast_measures_equal_the_reference_on_random_repetitive_text() -> None:
    rng = random.Random(13)
    for _ in range(1500):
        vocab = rng.choice([1, 2, 3, 5, 30])
        tokens = [f"w{rng.randrange(vocab)}" * rng.randint(1, 3) for _ in range(rng.randint(1, 90))]
        text = " ".join(tokens) + rng.choice(["", " .", "\n\nend", "\nx, y!"])
        rules = RepetitionRules(
            *(rng.choice([1.0, rng.uniform(0, 0.6)]) for _ in range(4)),
            top_ngram_char_fraction=tuple(rng.uniform(0, 0.8) for _ in TOP_NGRAMS),
            dup_ngram_char_fraction=tuple(rng.uniform(0, 0.6) for _ in DUP_NGRAMS),
        )
        assert repetition_reason(text, rules) == _reference_reason(text, rules), (text, rules)


def _curate_cfg(overrides: dict | None = None) -> CurateConfig:
    """curate's config as the tiny recipe resolves it (published thresholds)."""
    view = load_recipe(PROJECT / "recipes" / "tiny.yaml", project=PROJECT).view("curate")
    cfg = {k.removeprefix("data.curation."): v for k, v in view.items()}
    cfg["repetition"] = {**cfg["repetition"], **(overrides or {})}
    return curate_config(cfg)


def _write(path: Path, docs: list[dict]) -> Path:
    path.write_text(
        "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8"
    )
    return path


def test_curate_drops_the_hostile_documents_with_their_reasons(tmp_path: Path) -> None:
    real = _real_docs()
    by_source: dict[str, list[dict]] = {}
    for doc in real:
        by_source.setdefault(doc["source"], []).append(doc)
    inputs = [(s, _write(tmp_path / f"{s}.jsonl", d)) for s, d in sorted(by_source.items())]
    hostile = [_hostile(name, text) for name, (text, _) in sorted(HOSTILE.items())]
    inputs.append(("web", _write(tmp_path / "web.jsonl", hostile)))
    kept, ledger, _ = curate(inputs, _curate_cfg())
    dropped = {d["id"]: (d["step"], d["reason"]) for d in ledger.dropped}
    for name, (_, reason) in HOSTILE.items():
        assert dropped[f"web/{name}"] == ("filter", reason)
    for doc_id, reason in EXPECTED.items():
        assert dropped.get(doc_id) == (("filter", reason) if reason else None), doc_id
    assert {d["id"] for d in kept} == {i for i, r in EXPECTED.items() if r is None}
    filter_step = ledger.report()["steps"]["filter"]
    assert filter_step["sources"]["web"]["dropped"] == Counter(r for _, r in HOSTILE.values())
    assert filter_step["total"]["dropped"]["dup_para_frac"] == 2  # Amos 1 and one hostile


def test_thresholds_are_recipe_fields(tmp_path: Path) -> None:
    source = [("web", _write(tmp_path / "web.jsonl", [_hostile("buy_now", BUY_NOW)]))]
    off = {k: None for k in default_config() if k != "exempt_sources"}
    kept, ledger, _ = curate(source, _curate_cfg(off))
    assert [d["id"] for d in kept] == ["web/buy_now"] and not ledger.dropped
    kept, _, _ = curate(source, _curate_cfg({"exempt_sources": ["web"]}))
    assert [d["id"] for d in kept] == ["web/buy_now"]
    code = [("web", _write(tmp_path / "code.jsonl", [{**_hostile("c", BUY_NOW), "lang": "code"}]))]
    assert len(curate(code, _curate_cfg())[0]) == 1  # exempt_langs: code keeps its own repeats


def test_every_recipe_gets_the_published_thresholds(project: Path) -> None:
    published = {k: v for k, v in default_config().items() if k != "exempt_sources"}
    for name in ("tiny", "default", "nemotron_h_8b_proxy"):
        resolved = load_recipe(project / "recipes" / f"{name}.yaml", project=project)
        got = dict(resolved.get("data.curation.repetition"))
        assert got.pop("exempt_sources") == ["synthetic_math"]
        assert got == published, name


def test_a_threshold_outside_zero_one_is_refused_naming_the_field(project: Path) -> None:
    bad = project / "recipes" / "bad.yaml"
    bad.write_text(
        "name: bad\nextends: tiny\ndata:\n  curation:\n    repetition:\n"
        "      dup_5gram_char_fraction: 1.5\n",
        encoding="utf-8",
    )
    with pytest.raises(RecipeError, match=r"data\.curation\.repetition\.dup_5gram_char_fraction"):
        load_recipe(bad, project=project)


def test_bidi_controls_are_stripped_counted_and_stated_in_the_card(tmp_path: Path) -> None:
    prose = normalize_text(_real_docs()[3]["text"], "NFC")  # Matthew 17, kept
    trojan = prose[:200] + "\u202e\u2066evil\u2069\u202c" + prose[200:]
    docs = [_hostile("trojan", trojan), _hostile("plain", prose.replace("Jesus", "He", 1))]
    kept, ledger, profile_in = curate(
        [("web", _write(tmp_path / "web.jsonl", docs))], _curate_cfg()
    )
    assert [d["id"] for d in kept] == ["web/trojan", "web/plain"]
    assert kept[0]["text"] == prose[:200] + "evil" + prose[200:]
    assert not any(strip_bidi(d["text"])[1] for d in kept)
    out = tmp_path / "curate"
    out.mkdir()
    summary = write_outputs(out, kept, ledger, profile_in)
    assert summary["edits"] == {"bidi_controls_stripped": {"docs": 1, "chars": 4}}
    accounting = json.loads((out / "accounting.json").read_text(encoding="utf-8"))
    edits = accounting["edits"]["normalize"]["bidi_controls_stripped"]
    assert edits == {"web": {"docs": 1, "chars": 4}}
    card, _ = data_card("t", {"curate": out})
    assert (
        "**stripped**" in card
        and "| curate | normalize | bidi_controls_stripped | web | 1 | 4 |" in card
    )
