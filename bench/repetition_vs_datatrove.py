"""Gopher repetition decisions: ours (``openrecipe.data.repetition``) against datatrove's
``GopherRepetitionFilter`` on the same normalised texts.

Usage: python bench/repetition_vs_datatrove.py [--datatrove-python PATH] [--every K] [docs.jsonl ...]
(default input: data/raw/*/docs.jsonl plus tests/fixtures/real_docs.jsonl and the hostile documents
of tests/unit/test_repetition.py; PATH: an interpreter with ``datatrove==0.10.1`` and ``spacy``,
default /tmp/dtvenv/bin/python, installed apart from .venv with ``pip install -c constraints.txt
datatrove==0.10.1 spacy regex``). ``--every K`` keeps every K-th document of each file.

The rules and thresholds are the same on both sides; the word split is not (datatrove tokenises
every language with spaCy's English tokenizer, ours is a regex), so decisions can differ on
documents near a threshold. Prints the agreement per source and every disagreement (id, ours,
datatrove's); exits 1 when a hostile document is decided differently.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
# The datatrove side, in its own interpreter: one JSON line, {id: reason or null}.
DATATROVE = r"""
import json, sys
from datatrove.data import Document
from datatrove.pipeline.filters import GopherRepetitionFilter
gopher = GopherRepetitionFilter()
out = {}
with open(sys.argv[1], encoding="utf-8") as handle:
    for line in handle:
        d = json.loads(line)
        verdict = gopher.filter(Document(text=d["text"], id=d["id"], metadata={}))
        out[d["id"]] = None if verdict is True else verdict[1]
print(json.dumps(out))
"""


def _docs(paths: list[str], every: int) -> list[dict]:
    from openrecipe.data.curate import normalize_text, strip_bidi

    docs = []
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            for i, line in enumerate(handle):
                if i % every:
                    continue
                doc = json.loads(line)
                text = normalize_text(strip_bidi(doc["text"])[0], "NFC")
                if text.strip() and doc["lang"] != "code":
                    docs.append({"id": doc["id"], "source": doc["source"], "text": text})
    return docs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datatrove-python", default="/tmp/dtvenv/bin/python")
    parser.add_argument("--every", type=int, default=1)
    parser.add_argument("paths", nargs="*")
    args = parser.parse_args()
    sys.path.insert(0, str(PROJECT / "tests" / "unit"))
    from test_repetition import HOSTILE

    from openrecipe.data.repetition import RepetitionRules, repetition_reason

    paths = args.paths or [
        *sorted(str(p) for p in PROJECT.glob("data/raw/*/docs.jsonl")),
        str(PROJECT / "tests" / "fixtures" / "real_docs.jsonl"),
    ]
    docs = _docs(paths, args.every)
    docs += [
        {"id": f"hostile/{name}", "source": "hostile", "text": text}
        for name, (text, _) in sorted(HOSTILE.items())
    ]
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", encoding="utf-8") as handle:
        for doc in docs:
            handle.write(json.dumps(doc, ensure_ascii=False) + "\n")
        handle.flush()
        done = subprocess.run(
            [args.datatrove_python, "-c", DATATROVE, handle.name],
            capture_output=True,
            text=True,
            check=True,
        )
    theirs = json.loads(done.stdout.strip().splitlines()[-1])
    rules, hostile_ok = RepetitionRules(), True
    same_reason, same_fate, total, dropped = Counter(), Counter(), Counter(), Counter()
    for doc in docs:
        ours, other = repetition_reason(doc["text"], rules), theirs[doc["id"]]
        source = doc["source"]
        total[source] += 1
        dropped[source, "ours"] += ours is not None
        dropped[source, "datatrove"] += other is not None
        same_reason[source] += ours == other
        same_fate[source] += (ours is None) == (other is None)
        if ours != other:
            print(f"  {doc['id']}: ours {ours}, datatrove {other}")
            hostile_ok &= source != "hostile"
    print("source: docs, same keep/drop, same reason, dropped by ours / by datatrove")
    for source in [*sorted(total), None]:
        keys = [source] if source else list(total)
        n = sum(total[k] for k in keys)
        fate, reason = sum(same_fate[k] for k in keys), sum(same_reason[k] for k in keys)
        ours_n = sum(dropped[k, "ours"] for k in keys)
        theirs_n = sum(dropped[k, "datatrove"] for k in keys)
        print(
            f"{source or 'all':16s} {n:6d} {fate / n:8.1%} {reason / n:8.1%} {ours_n:6d} {theirs_n:6d}"
        )
    return 0 if hostile_ok else 1


if __name__ == "__main__":
    sys.exit(main())
