"""Dump the rules datatrove 0.10.1's word tokenizer and Gopher filter decide with to JSON.

Run once with the interpreter that has datatrove 0.10.1 and spaCy 3.8.18 (``pip install -c
constraints.txt "datatrove[processing]==0.10.1" spacy regex`` in a venv apart from .venv):

    /tmp/dtvenv/bin/python bench/dump_spacy_en_rules.py src/openrecipe/data/spacy_en_rules.json

Writes spaCy's English tokenizer (``spacy.blank("en").tokenizer``: prefix, suffix, infix and URL
patterns, special cases, and the special cases its phrase matcher looks for, as the tokens its
affix rules give them) and datatrove's ``PUNCTUATION_SET``; ``openrecipe.data.spacy_en`` reads it.
"""

import json
import sys

import spacy
from datatrove.utils.text import PUNCTUATION_SET
from spacy.tokenizer import Tokenizer

nlp = spacy.blank("en")
tok = nlp.tokenizer
assert tok.token_match is None
plain = Tokenizer(
    nlp.vocab,
    rules={},
    prefix_search=tok.prefix_search,
    suffix_search=tok.suffix_search,
    infix_finditer=tok.infix_finditer,
    token_match=None,
    url_match=tok.url_match,
)
rules = {
    k: [piece[65] if 65 in piece else piece["ORTH"] for piece in v] for k, v in tok.rules.items()
}
matcher = {}
for k in rules:
    if tok.find_prefix(k) or tok.find_infix(k) or tok.find_suffix(k) or " " in k:
        matcher[k] = [t.text for t in plain(k)]


def pat(f):
    r = f.__self__
    return {"pattern": r.pattern, "flags": int(r.flags)}


out = {
    "spacy": spacy.__version__,
    "prefix": pat(tok.prefix_search),
    "suffix": pat(tok.suffix_search),
    "infix": pat(tok.infix_finditer),
    "url": pat(tok.url_match),
    "faster_heuristics": tok.faster_heuristics,
    "rules": rules,
    "matcher": matcher,
    "datatrove_punctuation_set": "".join(sorted(PUNCTUATION_SET)),
}
with open(sys.argv[1], "w", encoding="utf-8") as handle:
    json.dump(out, handle, ensure_ascii=False, indent=0, sort_keys=True)
print(len(rules), len(matcher), [k for k in rules if any(c.isspace() for c in k)][:20])
