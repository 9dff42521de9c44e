"""The certificate's markdown (OUT.md), which verify-certificate compares with the JSON: its
verdict words, the phase table in training order and the files relied on."""

from __future__ import annotations

from openrecipe.lineage.certify import render_markdown


def _cert(matched: int, unknown: int, absent: bool) -> dict:
    counts = {"tokens": 0, "matched_tokens": 0, "unknown_tokens": 0, "matched_documents": 0}
    return {
        "selector": "source=x",
        "checkpoint": {"dir": "runs/rl", "stage": "rl", "manifest_sha256": "abc"},
        # JSON keys come back sorted: rl before sft, but the table follows training order
        "training": {
            "pretrain": {**counts, "tokens": 60, "matched_tokens": matched, "matched_documents": 1},
            "rl": {**counts, "tokens": 10},
            "sft": {**counts, "tokens": 30, "unknown_tokens": unknown},
        },
        "matched_tokens": matched,
        "unknown_tokens": unknown,
        "total_tokens": 100,
        "absent": absent,
        "relied_on": {"a.json": "111", "b/c.bin": "222"},
        "certificate_sha256": "fff",
    }


def test_markdown_of_a_present_selector() -> None:
    assert render_markdown(_cert(5, 0, False)) == (
        "# Data exclusion certificate: `source=x`\n"
        "\n"
        "- checkpoint: `runs/rl` (rl, manifest `abc`)\n"
        "- verdict: **PRESENT**: 5 of 100 training tokens come from matching documents "
        "(0 unattributable)\n"
        "\n"
        "| phase | tokens | matched | unknown | matching docs |\n"
        "|---|---:|---:|---:|---:|\n"
        "| pretrain | 60 | 5 | 0 | 1 |\n"
        "| sft | 30 | 0 | 0 | 0 |\n"
        "| rl | 10 | 0 | 0 | 0 |\n"
        "\n"
        "## Files relied on (sha256)\n"
        "\n"
        "- `a.json` `111`\n"
        "- `b/c.bin` `222`\n"
        "\n"
        "certificate_sha256: `fff`\n"
    )


def test_verdict_words() -> None:
    def verdict(cert: dict) -> str:
        return render_markdown(cert).splitlines()[3].split("**")[1]

    assert verdict(_cert(0, 0, True)) == "ABSENT"
    assert verdict(_cert(5, 0, False)) == "PRESENT"
    assert verdict(_cert(0, 7, False)) == "UNPROVEN"


def test_selector_description_hashes_the_id_list() -> None:
    """The certificate describes an ids selector by the sha256 and count of its sorted ids
    (the list itself may be private), and a field selector by its fields."""
    from openrecipe.hashing import hash_obj
    from openrecipe.lineage.certify import Selector

    assert Selector((("lang", "en"),)).describe() == {"lang": "en"}
    assert Selector((("lang", "en"),), frozenset({"b/2", "a/1"})).describe() == {
        "lang": "en",
        "ids_sha256": hash_obj(["a/1", "b/2"]),
        "ids_count": 2,
    }
