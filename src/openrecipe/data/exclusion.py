"""An exclusion rule (``data.exclude``): its fields, defined once, and how a rule matches.

The recipe schema lists the same fields (``tests/unit/test_exclusion.py`` checks them one by
one); the blend stage applies the rules, ``openrecipe rerun --exclude`` writes them and
``openrecipe certify --absent`` selects documents with the same metadata fields.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

# A document's own metadata, matched by equality.
METADATA_FIELDS = ("source", "license", "lang")
# What `openrecipe rerun --exclude FIELD=VALUE` accepts (ids: "a|b|c").
CLI_FIELDS = (*METADATA_FIELDS, "path_glob", "ids")
# What `openrecipe certify --absent KEY=VALUE` selects on (ids: a file, one id a line).
SELECTOR_FIELDS = (*METADATA_FIELDS, "ids")
# The quality stage's bucket of a document (unscored documents never match).
BUCKET_FIELDS = ("quality_bucket_below", "buckets")
# Every field of a data.exclude rule.
FIELDS = (*CLI_FIELDS, *BUCKET_FIELDS)


def rule_matches(rule: dict[str, Any], doc: dict[str, Any]) -> bool:
    """A rule matches when every field it names matches (``path_glob``: fnmatch on url_or_path,
    case-sensitive on every OS; ``ids``: membership; ``quality_bucket_below`` / ``buckets``: the
    ``quality`` stage's bucket, which documents it did not score never match)."""
    for name in METADATA_FIELDS:
        if name in rule and doc[name] != rule[name]:
            return False
    if "path_glob" in rule and not fnmatchcase(doc["url_or_path"], rule["path_glob"]):
        return False
    if "ids" in rule and doc["id"] not in rule["ids"]:
        return False
    bucket = doc.get("quality_bucket")  # None: not scored (code), never matched by bucket
    if "quality_bucket_below" in rule and (
        bucket is None or bucket >= rule["quality_bucket_below"]
    ):
        return False
    return not ("buckets" in rule and bucket not in rule["buckets"])
