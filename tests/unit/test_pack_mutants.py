"""What the pack stage promises beyond test_pack's checks (written against the mutants those left
alive): ``shares.json`` accounts each phase and stream exactly (requested weight, budget,
tokens, share, wraps, epochs, documents used and segments, recomputed here from the documents'
own token counts), the summary repeats it, the plan is refused by field when malformed, the
flat plan form takes its weights from ``effective_weights`` then ``weights``, and the
interleave, chop and take primitives keep their documented order."""

from __future__ import annotations

import json
import locale
from pathlib import Path

import numpy as np
import pytest
from test_pack import PHASES, ctx, doc_tokens, make_blend, packed, write_stream  # noqa: F401

from openrecipe.data import pack
from openrecipe.errors import StageInputError


@pytest.fixture
def fresh(packed, tmp_path: Path) -> tuple[Path, dict]:  # noqa: F811
    """pack run again, inside the test, on test_pack's blend and tokenizer: the output checks
    below then run the stage themselves (a module-scoped fixture's work is attributed to the
    first test that asked for it, which is all mutmut reruns for a mutant of the stage)."""
    root, _ = packed
    out = tmp_path / "fresh"
    inputs = {"blend": root / "blend", "tokenizer": root / "tok"}
    return out, pack.run(ctx("pack", tmp_path, out, inputs))


def _walk(lengths: list[int], start: int, budget: int) -> tuple[list[int], int, int]:
    """The documents a budget of tokens read from a cyclic stream of documents of ``lengths``,
    starting ``start`` tokens in: (the document of each piece, wraps, the new start)."""
    total = sum(lengths)
    pieces, position = [], start
    while budget:
        offset, doc = position % total, 0
        while offset >= lengths[doc]:
            offset -= lengths[doc]
            doc += 1
        n = min(lengths[doc] - offset, budget)
        pieces.append(doc)
        budget, position = budget - n, position + n
    return pieces, position // total - start // total, position


def test_shares_account_each_phase_and_stream_exactly(packed, fresh) -> None:  # noqa: F811
    root, _ = packed
    out, summary = fresh
    shares = json.loads((out / "shares.json").read_text())
    docs = doc_tokens(root)
    lengths = {
        source: [len(docs[f"{source}/{i}"]) for i in range(n)]
        for source, n in (("long", 12), ("short", 30), ("tiny", 2))
    }
    stream_tokens = {source: sum(v) for source, v in lengths.items()}
    position = dict.fromkeys(lengths, 0)
    wraps_total = dict.fromkeys(lengths, 0)
    for phase, (name, budgets) in zip(shares["phases"], PHASES, strict=True):
        total = sum(budgets.values())
        assert (phase["name"], phase["token_budget"], phase["tokens"]) == (name, total, total)
        expected = {}
        for source, budget in sorted(budgets.items()):
            pieces, wraps, position[source] = _walk(lengths[source], position[source], budget)
            wraps_total[source] += wraps
            expected[source] = {
                "requested_weight": budget / total,
                "token_budget": budget,
                "tokens": budget,
                "share": round(budget / total, 6),
                "wraps": wraps,
                "epochs": round(budget / stream_tokens[source], 6),
                "docs_used": len(set(pieces)),
                "doc_segments": len(pieces),
            }
        assert phase["sources"] == expected, name
    written = {s: sum(b[s] for _, b in PHASES) for s in lengths}
    assert shares["sources"] == {
        source: {
            "stream_docs": len(lengths[source]),
            "stream_tokens": stream_tokens[source],
            "tokens": written[source],
            "epochs": round(written[source] / stream_tokens[source], 6),
            "wraps": wraps_total[source],
        }
        for source in lengths
    }
    assert shares["by_source"] == written and shares["by_lang"] == {"en": 640}
    assert (shares["dropped_tokens"], shares["dropped_tokens_per_source"]) == (0, {})
    assert (shares["sequence_tokens"], shares["sequences"], shares["tokens"]) == (16, 40, 640)
    assert shares["dtype"] == summary["dtype"] == "uint16"  # a 300-token vocabulary
    assert summary["epochs"] == {s: v["epochs"] for s, v in shares["sources"].items()}
    assert summary["shares"] == {
        p["name"]: {s: v["share"] for s, v in p["sources"].items()} for p in shares["phases"]
    }
    assert (summary["sequences"], summary["sequence_tokens"], summary["tokens"]) == (40, 16, 640)


def test_a_dropped_tail_is_counted_per_source(packed, tmp_path: Path) -> None:  # noqa: F811
    root, _ = packed
    blend = make_blend(tmp_path, [("only", {"long": 30, "short": 10, "tiny": 10})])
    pack.run(ctx("pack", tmp_path, tmp_path / "out", {"blend": blend, "tokenizer": root / "tok"}))
    shares = json.loads((tmp_path / "out" / "shares.json").read_text())
    sidecar = (tmp_path / "out" / "sidecar.jsonl").read_text().splitlines()
    budgets = {"long": 30, "short": 10, "tiny": 10}
    kept = dict.fromkeys(budgets, 0)
    for record in map(json.loads, sidecar):
        for _, source, _, n in record["segments"]:
            kept[source] += n
    dropped = {s: budgets[s] - kept[s] for s in sorted(budgets) if budgets[s] != kept[s]}
    assert shares["dropped_tokens"] == 50 - 48 == sum(dropped.values())
    assert shares["dropped_tokens_per_source"] == dropped
    assert shares["sources"]["long"]["tokens"] == kept["long"]  # written, not taken
    assert shares["sources"]["long"]["epochs"] == round(30 / 920, 6)  # taken, not written


# --------------------------------------------------------------------------------------------
# the plan


def _plan(blend: Path, phases: list[dict]) -> None:
    (blend / "plan.json").write_text(json.dumps({"phases": phases}))


@pytest.mark.parametrize(
    ("phases", "message"),
    [
        (
            [
                {
                    "name": "p",
                    "token_budget": 3,
                    "sources": {"a": {"token_budget": -1}, "b": {"token_budget": 4}},
                }
            ],
            r"phases\[0\] budgets of \['a'\]: token budget must be an int >= 0",
        ),  # fmt: skip
        (
            [
                {
                    "name": "p",
                    "token_budget": 4,
                    "sources": {"b": {"token_budget": 2.0}, "a": {"token_budget": "2"}},
                }
            ],
            r"phases\[0\] budgets of \['a', 'b'\]",
        ),  # fmt: skip
        (
            [{"name": "p", "token_budget": 4, "sources": {"a": {"weight": 1}}}],
            r"budgets of \['a'\]",
        ),  # fmt: skip
        (
            [
                {"name": "p", "token_budget": 0, "sources": {}},
                {"name": "q", "token_budget": 5, "sources": {"a": {"token_budget": 4}}},
            ],
            r"phases\[1\] \(q\): source budgets sum to 4, phase token budget is 5$",
        ),  # fmt: skip
        ([], r"phases must be non-empty with distinct names, found \[\]"),
        (
            [{"name": "p", "token_budget": 0, "sources": {}}] * 2,
            r"distinct names, found \['p', 'p'\]",
        ),  # fmt: skip
    ],
)
def test_a_malformed_plan_is_refused_by_field(tmp_path: Path, phases, message) -> None:
    _plan(tmp_path, phases)
    with pytest.raises(StageInputError, match=message) as refused:
        pack.load_plan(tmp_path)
    assert str(refused.value).startswith(f"{tmp_path / 'plan.json'}: ")


def test_zero_budgets_and_an_unreadable_plan(tmp_path: Path) -> None:
    _plan(tmp_path, [{"name": "p", "token_budget": 0, "sources": {"a": {"token_budget": 0}}}])
    assert pack.load_plan(tmp_path)["phases"][0]["sources"] == {"a": {"token_budget": 0}}
    (tmp_path / "plan.json").write_text("{not json")
    with pytest.raises(StageInputError, match=r"plan\.json: cannot read the blend plan \("):
        pack.load_plan(tmp_path)
    (tmp_path / "plan.json").unlink()
    with pytest.raises(StageInputError, match=r"plan\.json: cannot read the blend plan \("):
        pack.load_plan(tmp_path)
    (tmp_path / "plan.json").write_text("{}")  # no phases at all
    with pytest.raises(StageInputError, match=r"found \[\]"):
        pack.load_plan(tmp_path)


def test_the_flat_plan_takes_effective_weights_then_weights(tmp_path: Path) -> None:
    flat = {"name": "p", "tokens": 5, "budgets": {"a": 2, "b": 3}}
    _plan(
        tmp_path,
        [
            {**flat, "weights": {"a": 0.5, "b": 0.5}, "effective_weights": {"a": 0.4, "b": 0.6}},
            {**flat, "name": "q", "weights": {"a": 0.5, "b": 0.5}},
            {**flat, "name": "r"},
        ],
    )
    phases = pack.load_plan(tmp_path)["phases"]
    assert phases[0] == {
        "name": "p",
        "token_budget": 5,
        "sources": {
            "a": {"weight": 0.4, "token_budget": 2},
            "b": {"weight": 0.6, "token_budget": 3},
        },  # fmt: skip
    }
    assert phases[1]["sources"]["a"] == {"weight": 0.5, "token_budget": 2}
    assert phases[2]["sources"]["b"] == {"weight": None, "token_budget": 3}


def test_a_nested_phase_without_sources_has_none(tmp_path: Path) -> None:
    _plan(tmp_path, [{"name": "p", "token_budget": 0}])
    assert pack.load_plan(tmp_path) == {"phases": [{"name": "p", "token_budget": 0, "sources": {}}]}


# --------------------------------------------------------------------------------------------
# interleave, chop, take


def _seg(source: str, doc: int, length: int, start: int = 0) -> pack.Segment:
    return pack.Segment("p", source, doc, start, length)


def test_interleave_draws_from_the_source_furthest_behind_ties_by_name() -> None:
    runs = {
        "b": [_seg("b", i, 1) for i in range(4)],
        "a": [_seg("a", 0, 2), _seg("a", 1, 2)],
        "c": [],  # a source with nothing to give is skipped
    }
    merged = pack.interleave(runs, {"a": 4, "b": 4, "c": 0})
    # a 0/4 = b 0/4 -> a (name); b 0 -> b; b 1/4 -> b; a 2/4 = b 2/4 -> a; then b, b
    assert [(s.source, s.doc) for s in merged] == [
        ("a", 0),
        ("b", 0),
        ("b", 1),
        ("a", 1),
        ("b", 2),
        ("b", 3),
    ]
    # by the fraction of its budget delivered, not by tokens: a 1/2 is ahead of b 1/4
    uneven = pack.interleave(
        {"a": [_seg("a", i, 1) for i in range(2)], "b": [_seg("b", i, 1) for i in range(4)]},
        {"a": 2, "b": 4},
    )
    assert [s.source for s in uneven] == ["a", "b", "b", "a", "b", "b"]


def test_chop_cuts_sequences_of_size_tokens_and_returns_the_tail() -> None:
    segments = [_seg("a", 0, 5), _seg("b", 3, 2), _seg("a", 1, 4)]
    sequences, tail = pack.chop(segments, 4)
    assert [[(s.source, s.doc, s.start, s.length) for s in seq] for seq in sequences] == [
        [("a", 0, 0, 4)],
        [("a", 0, 4, 1), ("b", 3, 0, 2), ("a", 1, 0, 1)],
    ]
    assert [(s.source, s.doc, s.start, s.length) for s in tail] == [("a", 1, 1, 3)]
    assert pack.chop(segments, 12) == ([], segments)  # 11 tokens: all of them the tail


def test_take_of_nothing_and_from_nothing() -> None:
    empty = pack.Stream("s", [], [])
    assert empty.take("p", 0) == []
    with pytest.raises(StageInputError, match=r"^source 's': phase 'p' needs 3 tokens but its stream is empty$"):  # fmt: skip
        empty.take("p", 3)
    stream = pack.Stream("k", ["x", "y"], [np.arange(2), np.arange(2)])
    assert (stream.doc_sources, stream.doc_langs, stream.total_tokens) == (["k", "k"], ["und", "und"], 4)  # fmt: skip
    assert [(s.doc, s.start, s.length) for s in stream.take("p", 4)] == [(0, 0, 2), (1, 0, 2)]
    assert (stream.doc, stream.offset, stream.wraps) == (0, 0, 1)
    labelled = pack.Stream("lang:es", ["x"], [np.arange(1)], ["m"], ["es"])
    assert (labelled.doc_sources, labelled.doc_langs) == (["m"], ["es"])


def test_the_outputs_are_written_in_their_canonical_form(fresh) -> None:
    """Stage outputs are content-addressed: their bytes, not only their JSON, must not drift
    (sorted keys, shares.json indented by 2 with a final newline, one sidecar record a line,
    non-ASCII kept as UTF-8)."""
    out, _ = fresh
    text = (out / "shares.json").read_text(encoding="utf-8")
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"
    lines = (out / "sidecar.jsonl").read_bytes().decode("utf-8").split("\n")
    assert lines[-1] == "" and len(lines) == 41
    for index, line in enumerate(lines[:-1]):
        record = json.loads(line)
        assert line == json.dumps(record, sort_keys=True, ensure_ascii=False)
        assert list(record) == ["phase", "segments", "seq"] and record["seq"] == index


def test_a_non_ascii_document_id_is_written_as_utf8_whatever_the_locale(
    packed,  # noqa: F811
    tmp_path: Path,
) -> None:
    root, _ = packed
    blend = make_blend(tmp_path, [("only", {"long": 0, "short": 0, "tiny": 32})])
    docs = [{"id": f"tiny/café{i}", "source": "tiny", "text": t} for i, t in enumerate(("one two three.", "four five."))]  # fmt: skip
    (blend / "streams" / "tiny.jsonl").write_text(
        "".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8"
    )
    saved = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")  # open() without an encoding would write ASCII
    try:
        pack.run(ctx("pack", tmp_path, tmp_path / "out", {"blend": blend, "tokenizer": root / "tok"}))  # fmt: skip
    finally:
        locale.setlocale(locale.LC_CTYPE, saved)
    sidecar = (tmp_path / "out" / "sidecar.jsonl").read_bytes()
    assert "tiny/café0".encode() in sidecar and b"\\u00e9" not in sidecar


def test_an_empty_phase_and_an_empty_stream_account_zero(packed, tmp_path: Path) -> None:  # noqa: F811
    """A phase that writes nothing has shares of 0 (not a division by zero); a stream with no
    documents, asked for nothing, has 0 epochs; a stream a phase does not draw on counts
    nothing for it."""
    root, _ = packed
    blend = make_blend(tmp_path, [("first", {"long": 32}), ("empty", {"long": 0, "void": 0})])
    write_stream(blend, "void", [])
    pack.run(ctx("pack", tmp_path, tmp_path / "out", {"blend": blend, "tokenizer": root / "tok"}))
    shares = json.loads((tmp_path / "out" / "shares.json").read_text())
    nothing = {"token_budget": 0, "tokens": 0, "share": 0.0, "wraps": 0, "epochs": 0.0}
    nothing |= {"docs_used": 0, "doc_segments": 0, "requested_weight": 0.0}
    assert shares["phases"][1] == {
        "name": "empty",
        "token_budget": 0,
        "tokens": 0,
        "sources": {"long": nothing, "void": nothing},
    }
    assert shares["sources"]["void"] == {
        "stream_docs": 0,
        "stream_tokens": 0,
        "tokens": 0,
        "epochs": 0.0,
        "wraps": 0,
    }
    assert shares["sources"]["long"]["tokens"] == 32
    assert shares["sources"]["long"]["epochs"] == round(32 / 920, 6)


def test_a_language_stream_refuses_a_document_of_another_language(
    packed,  # noqa: F811
    tmp_path: Path,
) -> None:
    root, _ = packed
    blend = make_blend(tmp_path, [("only", {"long": 16, "lang:es": 16})])
    (blend / "streams" / "lang").mkdir()
    docs = [
        {"id": "m/0", "source": "m", "lang": "es", "text": "uno dos tres."},
        {"id": "m/1", "source": "m", "lang": "fr", "text": "un deux trois."},
    ]
    path = blend / "streams" / "lang" / "es.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    inputs = {"blend": blend, "tokenizer": root / "tok"}
    with pytest.raises(StageInputError, match=r"es\.jsonl:2: document 'm/1' has lang 'fr'"):
        pack.run(ctx("pack", tmp_path, tmp_path / "out", inputs))


def test_unlabelled_documents_count_for_their_stream_and_und(packed, tmp_path: Path) -> None:  # noqa: F811
    """A document without ``source``/``lang`` is accounted to its stream's key and to "und"."""
    root, _ = packed
    blend = make_blend(tmp_path, [("only", {"long": 0, "short": 0, "tiny": 32})])
    docs = [{"id": f"tiny/{i}", "text": t} for i, t in enumerate(("one two three.", "four five."))]
    (blend / "streams" / "tiny.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    pack.run(ctx("pack", tmp_path, tmp_path / "out", {"blend": blend, "tokenizer": root / "tok"}))
    shares = json.loads((tmp_path / "out" / "shares.json").read_text())
    assert (shares["by_source"], shares["by_lang"]) == ({"tiny": 32}, {"und": 32})


def test_a_plan_smaller_than_one_sequence_is_refused_by_name(packed, tmp_path: Path) -> None:  # noqa: F811
    root, _ = packed
    blend = make_blend(tmp_path, [("only", {"long": 10, "short": 0, "tiny": 0})])
    inputs = {"blend": blend, "tokenizer": root / "tok"}
    with pytest.raises(StageInputError, match=r"plan\.json: 1 segments hold fewer than 16 tokens$"):
        pack.run(ctx("pack", tmp_path, tmp_path / "out", inputs))
