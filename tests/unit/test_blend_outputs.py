"""blend's outputs as its docstring states them, rebuilt independently: each source's stream
order, the language streams' order, excluded.jsonl, plan.json's entries and formatting, the
stage summary, and the budget corner cases (found untested by bench/mutation.py)."""

from __future__ import annotations

import hashlib
import json
import random

import pytest

from openrecipe.data.blend import Phase, apportion, plan_phases, run
from openrecipe.errors import RecipeError, StageInputError
from openrecipe.hashing import derive_seed
from openrecipe.stage import StageContext

SEED = 7


def _doc(source: str, i: int, lang: str) -> dict:
    # keys deliberately not in sorted order, and non-ASCII text: the outputs must sort and
    # keep UTF-8 as written
    return {
        "text": f"{source} documento número {i} ",
        "source": source,
        "lang": lang,
        "id": f"{source}/{i:03d}",
        "license": "cc0",
        "url_or_path": f"{source}/{i}",
    }


DOCS = [_doc("a", i, "en") for i in range(12)] + [_doc("m", i, "es") for i in range(9)]
PHASES = [{"name": "p1", "fraction": 1.0, "weights": {"a": 0.6, "lang:es": 0.4}}]
EXCLUDE = [{"ids": ["a/003", "añadido/000"]}]
CONFIG = {
    "seed": SEED,
    "data.exclude": EXCLUDE,
    "data.phases": PHASES,
    "pretrain.steps": 10,
    "pretrain.seq_length": 15,
    "pretrain.micro_batch_size": 2,
    "pretrain.grad_accum": 3,
}


def _jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in records)


def _context(tmp_path, config=CONFIG) -> StageContext:
    curated = tmp_path / "curated"
    curated.mkdir()
    with open(curated / "docs.jsonl", "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(d, ensure_ascii=False) + "\n" for d in DOCS)
    out = tmp_path / "blend"
    out.mkdir()
    return StageContext("blend", None, config, "h", 0, {"curated": curated}, out, tmp_path)


def test_outputs_are_the_documented_streams_and_plan(tmp_path) -> None:
    ctx = _context(tmp_path)
    summary = run(ctx)
    out = ctx.out
    kept = {s: [d for d in DOCS if d["source"] == s and d["id"] != "a/003"] for s in "am"}
    for source, docs in kept.items():
        stream = list(docs)  # curated order, shuffled by the source's own seed
        random.Random(derive_seed(SEED, "blend", source)).shuffle(stream)
        assert (out / "streams" / f"{source}.jsonl").read_text(encoding="utf-8") == _jsonl(stream)
    # lang:es draws m (no phase names m), ordered by a hash of (seed, key, id)
    es = sorted(
        kept["m"],
        key=lambda d: hashlib.sha256(f"{SEED}\0lang:es\0{d['id']}".encode()).digest(),
    )
    assert (out / "streams" / "lang" / "es.jsonl").read_text(encoding="utf-8") == _jsonl(es)
    assert (out / "excluded.jsonl").read_text(encoding="utf-8") == _jsonl(
        [{"id": "a/003", "source": "a", "rule": 0}]
    )
    text = (out / "plan.json").read_text(encoding="utf-8")
    plan = json.loads(text)
    assert text == json.dumps(plan, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    total = 10 * 2 * 3 * 16
    assert plan["total_tokens"] == total
    assert plan["token_formula"] == (
        "steps 10 * micro_batch_size 2 * grad_accum 3 * (seq_length 15 + 1)"
    )
    assert plan["exclude_rules"] == EXCLUDE
    assert plan["unweighted_docs"] == {}
    for source, docs in kept.items():
        assert plan["sources"][source] == {
            "stream": f"streams/{source}.jsonl",
            "docs": len(docs),
            "chars": sum(len(d["text"]) for d in docs),
            "excluded_docs": 1 if source == "a" else 0,
            "seed": derive_seed(SEED, "blend", source),
        }
    assert plan["lang_streams"] == {
        "lang:es": {
            "stream": "streams/lang/es.jsonl",
            "docs": 9,
            "chars": sum(len(d["text"]) for d in kept["m"]),
            "docs_per_source": {"m": 9},
        }
    }
    weights = {"a": 0.6, "lang:es": 0.4}
    assert plan["phases"] == [
        {
            "name": "p1",
            "fraction": 1.0,
            "tokens": total,
            "weights": weights,
            "effective_weights": weights,
            "renormalised": None,
            "budgets": apportion(total, weights),
        }
    ]
    assert summary == {
        "docs": {"a": 11, "m": 9},
        "lang_streams": {"lang:es": 9},
        "unweighted_docs": {},
        "excluded": 1,
        "total_tokens": total,
        "renormalised_phases": [],
    }


def test_a_source_named_by_a_phase_but_without_documents_gets_an_empty_stream(tmp_path) -> None:
    config = {**CONFIG, "data.phases": [{**PHASES[0], "weights": {"a": 0.5, "z": 0.5}}]}
    ctx = _context(tmp_path, config)
    summary = run(ctx)
    assert summary["docs"] == {"a": 11, "m": 9, "z": 0}
    assert summary["renormalised_phases"] == ["p1"]
    assert (ctx.out / "streams" / "z.jsonl").read_text(encoding="utf-8") == ""


def test_missing_input_and_misfit_view_are_refused(tmp_path) -> None:
    ctx = _context(tmp_path)
    (tmp_path / "curated" / "docs.jsonl").unlink()
    with pytest.raises(StageInputError, match=r"docs\.jsonl missing \(is the input a curate"):
        run(ctx)
    bad = {k: v for k, v in CONFIG.items() if k != "seed"}
    ctx = StageContext("blend", None, bad, "h", 0, {}, tmp_path, tmp_path)
    with pytest.raises(RecipeError, match="^stage blend: view paths"):
        run(ctx)


def test_zero_weights_get_zero_tokens() -> None:
    assert apportion(10, {"a": 0.0, "b": 0.0}) == {"a": 0, "b": 0}
    assert apportion(0, {"a": 1.0}) == {"a": 0}


def test_renormalisation_only_for_positive_weights_without_documents() -> None:
    """A positive weight on a source with no documents (absent from ``available`` or at 0) is
    shared among the others; a zero weight on such a source changes nothing."""
    quiet = plan_phases((Phase("p", 1.0, {"a": 1.0, "z": 0.0}),), 100, {"a": 5, "z": 0})[0]
    assert quiet["renormalised"] is None and quiet["effective_weights"] == {"a": 1.0, "z": 0.0}
    moved = plan_phases((Phase("p", 1.0, {"a": 0.5, "z": 0.5}),), 100, {"a": 5})[0]
    assert moved["effective_weights"] == {"a": 1.0, "z": 0.0}
    assert moved["budgets"] == {"a": 100, "z": 0} and "['z']" in moved["renormalised"]


def test_files_are_utf8_whatever_the_locale(tmp_path) -> None:
    """blend reads and writes UTF-8 explicitly: under an ASCII locale (C, no UTF-8 coercion)
    the non-ASCII documents still go through, and the outputs are those of a UTF-8 run."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import openrecipe

    ctx = _context(tmp_path)
    run(ctx)
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from openrecipe.data.blend import run\n"
        "from openrecipe.stage import StageContext\n"
        "base, config = Path(sys.argv[1]), json.loads(sys.argv[2])\n"
        "out = base / 'ascii'\n"
        "out.mkdir()\n"
        "run(StageContext('blend', None, config, 'h', 0, {'curated': base / 'curated'}, out, base))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG", "PYTHON"))}
    env |= {"LC_ALL": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"}
    env["PYTHONPATH"] = str(Path(openrecipe.__file__).resolve().parents[1])
    subprocess.run(
        [sys.executable, "-c", script, str(tmp_path), json.dumps(CONFIG)],
        env=env,
        check=True,
        timeout=60,
    )
    for rel in ("plan.json", "excluded.jsonl", "streams/a.jsonl", "streams/lang/es.jsonl"):
        assert (tmp_path / "ascii" / rel).read_bytes() == (ctx.out / rel).read_bytes(), rel
