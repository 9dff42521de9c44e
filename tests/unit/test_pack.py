"""The pack stage: exact budgets, repetition counting, phase mixing, and a sidecar that accounts
for every token written to train.bin."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from openrecipe.data import pack, tokenizer
from openrecipe.data.indexed import IndexedDataset
from openrecipe.errors import StageInputError
from openrecipe.registry import STAGES
from openrecipe.stage import StageContext

SEQ = 15  # pretrain.seq_length; sequences hold SEQ + 1 tokens
WORDS = [
    "river",
    "stone",
    "light",
    "market",
    "garden",
    "window",
    "letter",
    "orange",
    "silver",
    "winter",
]


def write_stream(blend: Path, source: str, texts: list[str]) -> None:
    with open(blend / "streams" / f"{source}.jsonl", "w", encoding="utf-8") as handle:
        for i, text in enumerate(texts):
            handle.write(
                json.dumps(
                    {
                        "id": f"{source}/{i}",
                        "source": source,
                        "lang": "en",
                        "license": "CC0-1.0",
                        "url_or_path": "x",
                        "text": text,
                    }
                )
                + "\n"
            )


def write_plan(blend: Path, phases: list[tuple[str, dict[str, int]]]) -> None:
    weights = {
        name: {s: b / max(sum(budgets.values()), 1) for s, b in budgets.items()}
        for name, budgets in phases
    }
    plan = {
        "total_tokens": sum(sum(b.values()) for _, b in phases),
        "phases": [
            {
                "name": name,
                "fraction": 0.5,
                "token_budget": sum(budgets.values()),
                "sources": {
                    s: {"weight": weights[name][s], "token_budget": b} for s, b in budgets.items()
                },
            }
            for name, budgets in phases
        ],
        "sources": {},
    }
    (blend / "plan.json").write_text(json.dumps(plan, sort_keys=True))


# Phase budgets: 400 is not a multiple of 16 (a sequence straddles the phases); total 640 is.
PHASES = [
    ("diversity", {"long": 200, "short": 120, "tiny": 80}),
    ("quality", {"long": 60, "short": 60, "tiny": 120}),
]


def make_blend(root: Path, phases=PHASES) -> Path:
    blend = root / "blend"
    (blend / "streams").mkdir(parents=True)
    write_stream(
        blend, "long", [" ".join(WORDS[(i + j) % 10] for j in range(40)) for i in range(12)]
    )
    write_stream(blend, "short", [f"{WORDS[i % 10]} {i}." for i in range(30)])
    write_stream(blend, "tiny", ["one two three.", "four five."])
    write_plan(blend, phases)
    return blend


def ctx(stage: str, root: Path, out: Path, inputs: dict[str, Path]) -> StageContext:
    out.mkdir(parents=True)
    config = {
        "pretrain.seq_length": SEQ,
        "seed": 1,
        "tokenizer": {
            "vocab_size": 300,
            "min_frequency": 2,
            "special_tokens": [
                "<unk>",
                "<s>",
                "</s>",
                "<pad>",
                "<|im_start|>",
                "<|im_end|>",
                "<think>",
                "</think>",
            ],
        },
    }
    view = {path: config[path] for path in STAGES[stage].view}  # as the recipe gives each stage
    return StageContext(stage, None, view, "", 0, inputs, out, root)


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    root = tmp_path_factory.mktemp("pack")
    blend = make_blend(root)
    tokenizer.run(ctx("tokenizer", root, root / "tok", {"blend": blend}))
    summary = pack.run(ctx("pack", root, root / "out", {"blend": blend, "tokenizer": root / "tok"}))
    return root, summary


def read_sidecar(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "sidecar.jsonl").read_text().splitlines()]


def doc_tokens(root: Path) -> dict[str, list[int]]:
    """Each document re-tokenized independently of the stage, with </s> appended."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(root / "tok"), local_files_only=True)
    docs = {}
    for path in (root / "blend" / "streams").glob("*.jsonl"):
        for line in path.read_text().splitlines():
            doc = json.loads(line)
            docs[doc["id"]] = tok(doc["text"], add_special_tokens=False).input_ids + [
                tok.eos_token_id
            ]
    return docs


def test_sidecar_accounts_for_every_token_in_bin(packed):
    root, summary = packed
    data = IndexedDataset(root / "out" / "train")
    sidecar = read_sidecar(root / "out")
    docs = doc_tokens(root)
    assert len(data) == len(sidecar) == summary["sequences"] == 640 // (SEQ + 1)
    per_source = Counter()
    for i, record in enumerate(sidecar):
        assert record["seq"] == i
        rebuilt = [
            t for doc_id, _, start, n in record["segments"] for t in docs[doc_id][start : start + n]
        ]
        assert rebuilt == data[i].tolist()
        assert len(data[i]) == SEQ + 1
        for _, source, _, n in record["segments"]:
            per_source[source] += n
    shares = json.loads((root / "out" / "shares.json").read_text())
    assert {s: v["tokens"] for s, v in shares["sources"].items()} == dict(per_source)
    assert sum(per_source.values()) == int(data.sequence_lengths.sum()) == summary["tokens"]


def test_budgets_are_met_exactly(packed):
    root, summary = packed
    shares = json.loads((root / "out" / "shares.json").read_text())
    assert summary["dropped_tokens"] == shares["dropped_tokens"] == 0
    for phase, (name, budgets) in zip(shares["phases"], PHASES, strict=True):
        assert phase["name"] == name
        assert {s: v["tokens"] for s, v in phase["sources"].items()} == budgets
        for source, row in phase["sources"].items():
            assert row["share"] == round(budgets[source] / sum(budgets.values()), 6)
    # A sequence straddling the phase boundary is labelled by its first token's phase.
    assert Counter(r["phase"] for r in read_sidecar(root / "out")) == {
        "diversity": 25,
        "quality": 15,
    }


def test_short_stream_repeats_and_counts_wraps(packed):
    root, _ = packed
    shares = json.loads((root / "out" / "shares.json").read_text())
    docs = doc_tokens(root)
    tiny_tokens = len(docs["tiny/0"]) + len(docs["tiny/1"])
    assert shares["sources"]["tiny"]["stream_tokens"] == tiny_tokens
    assert shares["sources"]["tiny"]["wraps"] == 200 // tiny_tokens
    assert shares["sources"]["tiny"]["epochs"] == round(200 / tiny_tokens, 6)
    assert shares["phases"][0]["sources"]["tiny"]["wraps"] == 80 // tiny_tokens
    assert shares["phases"][0]["sources"]["tiny"]["docs_used"] == 2
    assert shares["sources"]["long"]["wraps"] == 0


def test_each_stream_is_read_contiguously_across_phases(packed):
    """A source's segments, in consumption order, walk its stream without gaps or rereads."""
    root, _ = packed
    docs = doc_tokens(root)
    for source in ("long", "short", "tiny"):
        ids = [f"{source}/{i}" for i in range(sum(d.startswith(source + "/") for d in docs))]
        doc, offset = 0, 0
        for record in read_sidecar(root / "out"):
            for doc_id, seg_source, start, n in record["segments"]:
                if seg_source != source:
                    continue
                assert (doc_id, start) == (ids[doc], offset)
                offset += n
                if offset == len(docs[ids[doc]]):
                    doc, offset = (doc + 1) % len(ids), 0


def test_phase_is_mixed_not_source_blocked(packed):
    root, _ = packed
    docs = doc_tokens(root)
    longest = max(len(t) for t in docs.values())
    budgets = dict(PHASES[0][1])
    seen, total = Counter(), 0
    for record in read_sidecar(root / "out")[:12]:  # the first 192 of the phase's 400 tokens
        for _, source, _, n in record["segments"]:
            seen[source] += n
            total += n
    for source, budget in budgets.items():
        assert abs(seen[source] - total * budget / 400) <= longest


def test_packing_is_byte_identical(packed, tmp_path):
    root, summary = packed
    again = pack.run(
        ctx("pack", root, tmp_path / "out", {"blend": root / "blend", "tokenizer": root / "tok"})
    )
    assert again == summary
    for name in ("train.bin", "train.idx", "sidecar.jsonl", "shares.json"):
        assert (tmp_path / "out" / name).read_bytes() == (root / "out" / name).read_bytes()


def test_tail_shorter_than_a_sequence_is_dropped_and_counted(packed, tmp_path):
    root, _ = packed
    blend = make_blend(tmp_path, [("only", {"long": 50, "short": 0, "tiny": 0})])
    summary = pack.run(
        ctx("pack", tmp_path, tmp_path / "out", {"blend": blend, "tokenizer": root / "tok"})
    )
    assert (summary["sequences"], summary["dropped_tokens"]) == (3, 50 - 48)
    assert summary["shares"] == {"only": {"long": 1.0, "short": 0.0, "tiny": 0.0}}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: write_plan(b, [("p", {"nowhere": 32})]), r"nowhere\.jsonl: missing"),
        (lambda b: write_stream(b, "tiny", []), "'tiny'.*stream is empty"),
        (
            lambda b: (b / "plan.json").write_text(
                (b / "plan.json").read_text().replace('"token_budget": 400', '"token_budget": 401')
            ),
            r"phases\[0\].*sum to 400",
        ),
    ],
)
def test_bad_blend_is_refused(packed, tmp_path, mutate, message):
    root, _ = packed
    blend = make_blend(tmp_path)
    mutate(blend)
    with pytest.raises(StageInputError, match=message):
        pack.run(
            ctx("pack", tmp_path, tmp_path / "out", {"blend": blend, "tokenizer": root / "tok"})
        )


def test_stream_take_cuts_the_last_document():
    stream = pack.Stream("s", ["a", "b"], [np.arange(3), np.arange(2)])
    first = stream.take("p", 4)
    assert [(s.doc, s.start, s.length) for s in first] == [(0, 0, 3), (1, 0, 1)]
    second = stream.take("p", 5)
    assert [(s.doc, s.start, s.length) for s in second] == [(1, 1, 1), (0, 0, 3), (1, 0, 1)]
    assert stream.wraps == 1


def test_blend_stage_flat_plan_form_packs_the_same(packed, tmp_path):
    """plan.json as openrecipe.data.blend writes it (tokens / budgets / effective_weights)."""
    root, summary = packed
    blend = make_blend(tmp_path)
    nested = json.loads((blend / "plan.json").read_text())
    flat = [
        {
            "name": p["name"],
            "fraction": p["fraction"],
            "tokens": p["token_budget"],
            "weights": {s: v["weight"] for s, v in p["sources"].items()},
            "effective_weights": {s: v["weight"] for s, v in p["sources"].items()},
            "renormalised": None,
            "budgets": {s: v["token_budget"] for s, v in p["sources"].items()},
        }
        for p in nested["phases"]
    ]
    (blend / "plan.json").write_text(json.dumps({**nested, "phases": flat}))
    out = tmp_path / "out"
    again = pack.run(ctx("pack", tmp_path, out, {"blend": blend, "tokenizer": root / "tok"}))
    assert again == summary
    for name in ("train.bin", "sidecar.jsonl", "shares.json"):
        assert (out / name).read_bytes() == (root / "out" / name).read_bytes()


def test_language_stream_keeps_each_documents_own_source(tmp_path):
    """A ``lang:<code>`` key's stream mixes sources; the sidecar and ``by_source``/``by_lang``
    account each token to its document's own source and language."""
    blend = tmp_path / "blend"
    (blend / "streams" / "lang").mkdir(parents=True)
    write_stream(
        blend, "named", [" ".join(WORDS[(i + j) % 10] for j in range(12)) for i in range(8)]
    )
    docs = [
        {"id": f"{source}/{i}", "source": source, "lang": "es", "license": "CC0-1.0",
         "url_or_path": "x", "text": f"{WORDS[i % 10]} y {WORDS[(i + 3) % 10]} {i}."}
        for source in ("m", "n") for i in range(6)
    ]  # fmt: skip
    with open(blend / "streams" / "lang" / "es.jsonl", "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(d) + "\n" for d in docs)
    write_plan(blend, [("only", {"named": 96, "lang:es": 64})])
    tokenizer.run(ctx("tokenizer", tmp_path, tmp_path / "tok", {"blend": blend}))
    inputs = {"blend": blend, "tokenizer": tmp_path / "tok"}
    pack.run(ctx("pack", tmp_path, tmp_path / "out", inputs))
    shares = json.loads((tmp_path / "out" / "shares.json").read_text())
    assert shares["phases"][0]["sources"]["lang:es"]["tokens"] == 64
    assert set(shares["by_source"]) == {"named", "m", "n"}
    assert shares["by_source"]["m"] + shares["by_source"]["n"] == 64
    assert shares["by_lang"] == {"en": 96, "es": 64}
    segment_sources = {
        seg[1] for record in read_sidecar(tmp_path / "out") for seg in record["segments"]
    }
    assert segment_sources == {"named", "m", "n"}  # never the key "lang:es"
