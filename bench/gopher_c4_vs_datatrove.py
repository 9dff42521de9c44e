"""Gopher quality, Gopher repetition and C4 quality decisions: ours against datatrove 0.10.1's.

Usage: python bench/gopher_c4_vs_datatrove.py [--datatrove-python PATH] [--save-datatrove JSON |
--datatrove-json JSON] [--out JSON] [docs.jsonl ...]

Decisions only, every document (``bench/curation.py`` measures speed and checks the same
decisions too, on what its time allows). Default input: data/raw/*/docs.jsonl plus
tests/fixtures/real_docs.jsonl, each valid document normalised as curation hands it to its filters
(bidi controls removed, NFC, newlines unified). datatrove's ``GopherQualityFilter()``,
``GopherRepetitionFilter()`` and ``C4QualityFilter()`` (defaults) run in their own interpreter
(PATH, default /tmp/dtvenv/bin/python, with ``datatrove[processing]==0.10.1`` and spaCy), each on
its own ``Document``; ours (``openrecipe.data.gopher_filters``, ``openrecipe.data.c4_filter``) on
the same texts. Their reasons (None: kept) are compared document by document, filter by filter.
datatrove's half takes about 20 minutes of one core on the default corpus: ``--save-datatrove``
keeps its reasons, ``--datatrove-json`` compares against kept ones instead of running it.
Writes ``results/bench/gopher_c4_decisions.json`` (``--out``); exits 1 when any document is decided
otherwise.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

FILTERS = ("gopher_quality", "gopher_repetition", "c4_quality")

# datatrove's half: {"times": {filter: seconds}, "reasons": {filter: [reason or null]}}
DATATROVE = r"""
import json, sys, time
from datatrove.data import Document
from datatrove.pipeline.filters import C4QualityFilter, GopherQualityFilter, GopherRepetitionFilter
texts = [json.loads(line)["text"] for line in open(sys.argv[1], encoding="utf-8")]
filters = {"gopher_quality": GopherQualityFilter(), "gopher_repetition": GopherRepetitionFilter(),
           "c4_quality": C4QualityFilter()}
out = {"times": {}, "reasons": {}}
for name, f in filters.items():
    f.filter(Document(text="Warm up the word tokenizer. " * 20, id="warm-up"))
    start, reasons = time.perf_counter(), []
    for i, text in enumerate(texts):
        verdict = f.filter(Document(text=text, id=str(i)))
        reasons.append(None if verdict is True else (verdict[1] if isinstance(verdict, tuple) else "dropped"))
    out["times"][name] = time.perf_counter() - start
    out["reasons"][name] = reasons
with open(sys.argv[2], "w", encoding="utf-8") as handle:
    json.dump(out, handle)
"""


def _texts(paths: list[str]) -> tuple[list[str], list[str]]:
    """(ids, normalised texts) of the valid documents of ``paths``."""
    sys.path.insert(0, str(Path(__file__).parent))
    from curation import _load, _normalised  # bench/curation.py

    docs = _load(paths)
    return [d["id"] for d in docs], _normalised(docs)


def ours(texts: list[str]) -> tuple[float, dict[str, list[str | None]]]:
    from openrecipe.data.c4_filter import c4_reason
    from openrecipe.data.gopher_filters import GopherFilters

    start = time.perf_counter()
    gopher = GopherFilters()
    out: dict[str, list[str | None]] = {name: [] for name in FILTERS}
    for text in texts:
        quality, repetition = gopher.reasons(text)
        out["gopher_quality"].append(quality)
        out["gopher_repetition"].append(repetition)
        out["c4_quality"].append(c4_reason(text, gopher.tok))
    return time.perf_counter() - start, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datatrove-python", default="/tmp/dtvenv/bin/python")
    parser.add_argument("--save-datatrove", help="write datatrove's reasons here")
    parser.add_argument("--datatrove-json", help="datatrove's reasons, saved by --save-datatrove")
    parser.add_argument("--out", default="results/bench/gopher_c4_decisions.json")
    parser.add_argument("paths", nargs="*")
    args = parser.parse_args()
    paths = args.paths or [
        *sorted(glob.glob("data/raw/*/docs.jsonl")),
        "tests/fixtures/real_docs.jsonl",
    ]
    ids, texts = _texts(paths)
    if args.datatrove_json:
        theirs = json.loads(Path(args.datatrove_json).read_text("utf-8"))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            clean, result = Path(tmp) / "texts.jsonl", Path(tmp) / "reasons.json"
            clean.write_text(
                "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), "utf-8"
            )
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
            done = subprocess.run(
                [args.datatrove_python, "-c", DATATROVE, str(clean), str(result)],
                capture_output=True,
                text=True,
                env=env,
            )
            if done.returncode != 0:
                print(done.stderr[-3000:], file=sys.stderr)
                return 1
            theirs = json.loads(result.read_text("utf-8"))
        if args.save_datatrove:
            Path(args.save_datatrove).write_text(json.dumps(theirs), "utf-8")
    if any(len(theirs["reasons"][name]) != len(texts) for name in FILTERS):
        print("datatrove's reasons are for other documents (count differs)", file=sys.stderr)
        return 1
    _, mine = ours(texts)  # speed is bench/curation.py's (both sides in one run, same load)
    n = len(texts)
    per_filter = {}
    for name in FILTERS:
        differ = [
            {"id": i, "ours": a, "datatrove": b}
            for i, a, b in zip(ids, mine[name], theirs["reasons"][name], strict=True)
            if a != b
        ]
        per_filter[name] = {
            "agreement": 1 - len(differ) / n,
            "datatrove_dropped": dict(
                sorted(Counter(r for r in theirs["reasons"][name] if r).items())
            ),
            "differing": len(differ),
            "differ": differ[:50],
            "identical": not differ,
        }
        print(f"{name}: same decision and reason on {n - len(differ)} of {n} documents")
    result = {
        "input": {"files": paths, "docs": n},
        "datatrove": "0.10.1",
        "decisions": per_filter,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return 0 if all(r["identical"] for r in per_filter.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
