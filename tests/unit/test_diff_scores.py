"""``openrecipe diff`` on two runs of different recipes: every score difference with its paired
standard error from the evaluate stages' per-item samples (two synthetic runs)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from openrecipe.errors import LineageError
from openrecipe.lineage.commands import _run_dir
from openrecipe.lineage.diff import diff_runs, format_diff
from openrecipe.recipe import load_recipe
from openrecipe.stage import run_stage

HELDOUT = "openrecipe_reasoning_heldout"
CORRECT_A = [1, 0, 1, 1, 0, 0, 1, 0, 1, 1]
CORRECT_B = [1, 1, 1, 1, 0, 1, 1, 0, 0, 1]
ACC_A = [0, 1, 0, 0, 1, 1, 0, 1]
ACC_B = [0, 1, 1, 0, 1, 1, 1, 1]
BYTES = [10, 20, 5, 40, 25, 12]
LL_A = [-7.0, -15.0, -2.0, -31.0, -20.0, -8.0]
SHIFT = 0.05  # run B: every byte costs 0.05 nats less


def _evaluate(project: Path, run: str, correct, acc, ll) -> Path:
    def body(ctx) -> dict:
        def write(task: str, rows: list[dict]) -> None:
            text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)
            (ctx.out / f"samples_{task}.jsonl").write_text(text)

        write(
            HELDOUT,
            [
                {"id": f"q{i}", "correct": bool(c), "thinking_tokens": 3 * i}
                for i, c in enumerate(correct)
            ],
        )
        write("arc_easy", [{"id": f"arc{i}", "acc": float(a)} for i, a in enumerate(acc)])
        write(
            "gsm8k_bpb",
            [
                {"id": f"g{i}", "loglikelihood": x, "bytes": w}
                for i, (x, w) in enumerate(zip(ll, BYTES, strict=True))
            ],
        )
        bpb = -sum(ll) / sum(BYTES) / math.log(2)
        scores = {
            HELDOUT: {
                "exact_match": sum(correct) / len(correct),
                "exact_match_stderr": 0.1,
                "n": len(correct),
                "thinking_tokens_mean": 3 * (len(correct) - 1) / 2,
            },
            "arc_easy": {"acc": sum(acc) / len(acc), "n": len(acc)},
            "gsm8k_bpb": {"bits_per_byte": bpb, "n": len(ll)},
        }
        (ctx.out / "scores.json").write_text(json.dumps(scores))
        return {}

    recipe = load_recipe(project / "recipes" / "tiny.yaml", project=project)
    out = project / "runs" / run / "evaluate" / "base"
    run_stage("evaluate", recipe, out, {}, body, project=project, part="base")
    return project / "runs" / run


@pytest.fixture
def runs(project: Path) -> tuple[Path, Path]:
    a = _evaluate(project, "tiny", CORRECT_A, ACC_A, LL_A)
    ll_b = [x + SHIFT * w for x, w in zip(LL_A, BYTES, strict=True)]
    b = _evaluate(project, "tiny-no-austen", CORRECT_B, ACC_B, ll_b)
    return a, b


def _paired_se(a: list[float], b: list[float]) -> float:
    d = [y - x for x, y in zip(a, b, strict=True)]
    mean = sum(d) / len(d)
    return math.sqrt(sum((x - mean) ** 2 for x in d) / (len(d) - 1) / len(d))


def test_every_score_difference_has_a_paired_standard_error(runs) -> None:
    result = diff_runs(*runs)
    rows = {row["metric"]: row for row in result["scores"]}
    assert set(rows) == {
        f"base/{HELDOUT}/exact_match",
        f"base/{HELDOUT}/thinking_tokens_mean",
        "base/arc_easy/acc",
        "base/gsm8k_bpb/bits_per_byte",
    }  # stderr and counts are not scores
    em = rows[f"base/{HELDOUT}/exact_match"]
    assert em["delta"] == pytest.approx(0.1)
    assert em["paired"]["difference"] == pytest.approx(em["delta"])
    assert em["paired"]["paired_stderr"] == pytest.approx(_paired_se(CORRECT_A, CORRECT_B))
    assert em["paired"]["n"] == 10
    acc = rows["base/arc_easy/acc"]["paired"]
    assert acc["paired_stderr"] == pytest.approx(_paired_se(ACC_A, ACC_B)) and acc["n"] == 8
    assert rows[f"base/{HELDOUT}/thinking_tokens_mean"]["paired"]["paired_stderr"] == 0
    # bits per byte: B saves exactly SHIFT nats on every byte, so the difference is exact
    bpb = rows["base/gsm8k_bpb/bits_per_byte"]
    assert bpb["delta"] == pytest.approx(-SHIFT / math.log(2))
    assert bpb["paired"]["difference"] == pytest.approx(bpb["delta"])
    assert bpb["paired"]["paired_stderr"] == pytest.approx(0, abs=1e-12)
    text = format_diff(result)
    score_lines = [line for line in text.splitlines() if line.startswith("  base/")]
    assert len(score_lines) == 4 and all("paired SE" in line for line in score_lines)


def test_ratio_standard_error_matches_per_byte_means_when_bytes_are_equal() -> None:
    from openrecipe.evaluate.paired import paired_mean, paired_ratio

    a = {str(i): (x, 4.0) for i, x in enumerate([1.0, 3.0, 2.0, 5.0])}
    b = {str(i): (x, 4.0) for i, x in enumerate([2.0, 3.0, 4.0, 4.0])}
    ratio = paired_ratio(a, b)
    mean = paired_mean({k: v[0] / 4 for k, v in a.items()}, {k: v[0] / 4 for k, v in b.items()})
    assert ratio["difference"] == pytest.approx(mean["difference"])
    assert ratio["paired_stderr"] == pytest.approx(mean["paired_stderr"])


def test_an_altered_sample_file_is_refused(runs) -> None:
    samples = runs[1] / "evaluate" / "base" / f"samples_{HELDOUT}.jsonl"
    samples.write_text(samples.read_text().replace('"correct": false', '"correct": true'))
    with pytest.raises(LineageError, match=f"samples_{HELDOUT}.jsonl"):
        diff_runs(*runs)


def test_runs_are_named_or_given_as_paths(runs, monkeypatch: pytest.MonkeyPatch) -> None:
    project = runs[0].parents[1]
    monkeypatch.chdir(project)
    assert _run_dir("tiny-no-austen") == project / "runs" / "tiny-no-austen"
    assert _run_dir("runs/tiny") == Path("runs/tiny")
    with pytest.raises(LineageError, match="no such run"):
        _run_dir("../etc")
