"""scores.md / scores.png: ours beside the release, envelope flags, decontamination findings."""

from __future__ import annotations

import json
from pathlib import Path

from openrecipe.evaluate import compare

SCORES = {
    "rl": {"gsm8k": {"exact_match": 0.1, "exact_match_stderr": 0.05, "n": 40}},
    "base": {
        "gsm8k": {"exact_match": 0.0, "exact_match_stderr": 0.0, "n": 40},
        "arc_easy": {"acc": 0.3, "acc_norm": 0.35, "n": 20},
        "openrecipe_reasoning_bpb": {"bits_per_byte": 2.5, "n": 16},
    },
}
RELEASE = {
    "name": "some-release",
    "published_scores": [
        {"task": "gsm8k", "value": 87.0, "source": "model card", "setting": "8-shot"},
        {"task": "humaneval", "value": 60.0, "source": "paper"},
    ],
    "envelope": [
        {"task": "arc_easy", "metric": "acc", "low": 0.4, "high": 0.9},
        {"task": "gsm8k", "metric": "exact_match", "low": 0.05, "high": 1.0, "checkpoint": "rl"},
    ],
}
PINS = {
    "base": {
        "lm_eval_version": "0.4.13",
        "chat_template_sha256": "ab" * 32,
        "task_config_sha256": {"gsm8k": "cd" * 32},
        "dataset_sha256": {"gsm8k": {"gsm8k.jsonl": "ef" * 32}},
    }
}


def test_scores_md_flags_envelope_and_quotes_release(tmp_path: Path) -> None:
    decontam = tmp_path / "decontam"
    decontam.mkdir()
    (decontam / "eval_items.json").write_text(
        json.dumps(
            {
                "reasoning": {"items": 48, "too_short": [], "matched": {"reasoning:h1": ["d"]}},
                "eval_data": {"items": 9, "too_short": [], "matched": {"eval_data:gsm8k:3": ["d"]}},
            }
        )
    )
    verdict = compare.write_scores(tmp_path, "proxy", RELEASE, SCORES, PINS, decontam)
    text = (tmp_path / "scores.md").read_text()
    lines = {
        line.split(" | ")[0] + "|" + line.split(" | ")[1]: line
        for line in text.splitlines()
        if line.startswith("| ")
    }
    # base arc_easy acc 0.3 is below [0.4, 0.9]; acc_norm has no envelope; rl gsm8k is inside.
    assert "0.3000 **OUTSIDE**" in lines["| arc_easy|acc"]
    assert "OUTSIDE" not in lines["| arc_easy|acc_norm"]
    assert "0.1000 ± 0.0500 |" in lines["| gsm8k|exact_match"]
    assert "87 (model card, 8-shot)" in lines["| gsm8k|exact_match"]
    assert "[0.05, 1] (rl)" in lines["| gsm8k|exact_match"]
    assert lines["| gsm8k|exact_match"].endswith("| 1 matched |")
    assert lines["| openrecipe_reasoning_bpb|bits_per_byte"].endswith("| 1 of 48 items matched |")
    assert lines["| arc_easy|acc"].endswith("| 0 matched |")
    # Each figure says which answer format and split it measured.
    assert lines["| arc_easy|acc"].startswith("| arc_easy | acc | rc | test | 0.3000")
    assert lines["| gsm8k|exact_match"].startswith("| gsm8k | exact_match | gen | test |")
    assert "| openrecipe_reasoning_bpb | bits_per_byte | bpb | held-out |" in text
    assert "Published scores with no task of ours: humaneval" in text
    assert "1 value(s) outside the envelope." in text
    assert verdict == {"outside_envelope": ["base:arc_easy:acc"]}
    assert "| base | 0.4.13 | `abababababab` | gsm8k `cdcdcdcd` | gsm8k.jsonl `efefefef` |" in text

    # Without a decontam output the column is empty; the chart is byte-identical on rerun.
    png = (tmp_path / "scores.png").read_bytes()
    again = tmp_path / "again"
    again.mkdir()
    compare.write_scores(again, "proxy", RELEASE, SCORES, PINS, None)
    assert (again / "scores.png").read_bytes() == png
    assert "not checked" not in (again / "scores.md").read_text()


def test_findings_read_the_decontam_stage_set_names(tmp_path: Path) -> None:
    """The decontam stage keys benchmark sets by their input name, ``eval_data.<set>``."""
    decontam = tmp_path / "decontam"
    decontam.mkdir()
    report = {
        "eval_data.gsm8k": {
            "items": 1319,
            "too_short": [],
            "matched": {"eval_data:gsm8k:3": ["d"]},
        },
        "reasoning": {"items": 48, "too_short": [], "matched": {}},
    }
    (decontam / "eval_items.json").write_text(json.dumps(report))
    findings = compare.decontam_findings(
        decontam, ["gsm8k", "openrecipe_reasoning_heldout", "piqa"]
    )
    assert findings == {
        "gsm8k": "1 of 1319 items matched",
        "openrecipe_reasoning_heldout": "0 of 48 items matched",
        "piqa": "not checked",
    }
