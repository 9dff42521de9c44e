"""Throughput of the curation building blocks (langid, fuzzy dedup in both signature schemes,
quality LM, decontam) on real documents, one process (one core).

Usage: python bench/curation_blocks.py [docs.jsonl ...]
(default: the acquire outputs under runs/_h1/run1/data/raw/*/docs.jsonl). Prints docs/s and
MB/s of UTF-8 text per block. Timings are for reading only; nothing here feeds a manifest.
"""

from __future__ import annotations

import glob
import json
import sys
import time
from collections.abc import Callable

from openrecipe.data import fasttext_langid, minhash_lsh, ngram_overlap, perplexity


def _load(paths: list[str]) -> list[dict]:
    docs = []
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            docs += [json.loads(line) for line in handle]
    return docs


def _time(name: str, n_docs: int, n_bytes: int, fn: Callable[[], object]) -> None:
    start = time.perf_counter()
    fn()
    secs = time.perf_counter() - start
    print(
        f"{name:28s} {n_docs:6d} docs {secs:7.2f} s {n_docs / secs:9.0f} docs/s "
        f"{n_bytes / secs / 1e6:7.2f} MB/s"
    )


def main(paths: list[str]) -> None:
    docs = _load(paths or sorted(glob.glob("runs/_h1/run1/data/raw/*/docs.jsonl")))
    ids, texts = [d["id"] for d in docs], [d["text"] for d in docs]
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    print(f"{len(docs)} docs, {n_bytes / 1e6:.1f} MB")
    fasttext_langid.identify("warm up the model")
    prose = [d for d in docs if d["lang"] != "code"]
    _time(
        "langid (non-code docs)",
        len(prose),
        sum(len(d["text"].encode()) for d in prose),
        lambda: fasttext_langid.identify_docs(prose),
    )
    _time(
        "fuzzy_dedup datasketch p128",
        len(docs),
        n_bytes,
        lambda: minhash_lsh.fuzzy_dedup(ids, texts, minhash_lsh.MinHashParams()),
    )
    # datatrove's MinhashConfig() decisions (bench/curation.py checks them against datatrove)
    fineweb = minhash_lsh.MinHashParams(num_perm=112, bands=14, seed=1, scheme="datatrove")
    minhash_lsh.fuzzy_dedup(["warm-up"], ["Warm up the word tables. " * 20], fineweb)
    _time(
        "fuzzy_dedup datatrove 14x8",
        len(docs),
        n_bytes,
        lambda: minhash_lsh.fuzzy_dedup(ids, texts, fineweb),
    )
    ref, to_score = perplexity.split_reference(docs, ["austen", "brown"], 0.5, seed=0)
    ref_bytes = sum(len(d["text"].encode()) for d in ref)
    model = None

    def train() -> None:
        nonlocal model
        model = perplexity.BigramKN((d["id"], d["text"]) for d in ref)

    _time("quality train (reference)", len(ref), ref_bytes, train)
    _time(
        "quality score",
        len(to_score),
        sum(len(d["text"].encode()) for d in to_score),
        lambda: [model.log_perplexity(d["text"]) for d in to_score],
    )
    items = [(f"item{i}", " ".join(t.split()[:60])) for i, t in enumerate(texts[::10])]
    index = ngram_overlap.EvalIndex(items)
    _time(
        f"decontam vs {len(items)} items",
        len(docs),
        n_bytes,
        lambda: ngram_overlap.decontaminate(zip(ids, texts, strict=True), index),
    )


if __name__ == "__main__":
    main(sys.argv[1:])
