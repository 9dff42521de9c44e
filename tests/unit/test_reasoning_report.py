"""The evaluate stage's reasoning-mode and budget runs, and the report's reasoning.md / rl_curve.png."""

from __future__ import annotations

import json

import pytest
from align_fixtures import PROJECT, tiny_recipe

from openrecipe.evaluate import reasoning_report
from openrecipe.evaluate.evaluate import HELDOUT_TASK, _runs
from openrecipe.stage import run_stage

BPB = "openrecipe_reasoning_bpb"


def test_runs_add_reasoning_off_and_budgets_to_the_heldout_task_only() -> None:
    tasks = [(HELDOUT_TASK, 16, 0), (BPB, 16, 0)]
    runs = _runs(tasks, "on", True, 0, [8, 32])
    assert [(key, mode, budget) for key, _, _, _, mode, budget in runs] == [
        (HELDOUT_TASK, "on", 0),
        (f"{HELDOUT_TASK}__reasoning_off", "off", 0),
        (f"{HELDOUT_TASK}__budget_8", "on", 8),
        (f"{HELDOUT_TASK}__budget_32", "on", 32),
        (BPB, "on", 0),
    ]
    assert all(name in (HELDOUT_TASK, BPB) and limit == 16 for _, name, limit, *_ in runs)
    assert _runs(tasks, "off", False, 4, []) == [
        (HELDOUT_TASK, HELDOUT_TASK, 16, 0, "off", 4),
        (BPB, BPB, 16, 0, "off", 4),
    ]


def _fake_eval(tmp_path, part: str, scores: dict) -> object:
    def body(ctx):
        (ctx.out / "scores.json").write_text(json.dumps(scores))
        return {"sampling": {"reasoning": "both"}}

    out = tmp_path / f"eval_{part}"
    run_stage("evaluate", tiny_recipe(), out, {}, body, project=PROJECT, part=part)
    return out


def test_report_tables_and_curve(tmp_path) -> None:
    def heldout(acc: float, think: float) -> dict:
        return {"exact_match": acc, "thinking_tokens_mean": think, "n": 10}

    inputs = {
        "eval_base": _fake_eval(
            tmp_path,
            "base",
            {HELDOUT_TASK: heldout(0.0, 0.0), f"{HELDOUT_TASK}__reasoning_off": heldout(0.0, 0.0)},
        ),
        "eval_rl": _fake_eval(
            tmp_path,
            "rl",
            {
                HELDOUT_TASK: heldout(0.6, 12.0),
                f"{HELDOUT_TASK}__reasoning_off": heldout(0.3, 0.0),
                f"{HELDOUT_TASK}__budget_16": heldout(0.5, 10.0),
                f"{HELDOUT_TASK}__budget_4": heldout(0.2, 4.0),
                BPB: {"bits_per_byte": 1.0, "n": 10},
            },
        ),
    }

    def rl_body(ctx):
        rows = [
            {"step": s, "mean_reward": 0.1 * s, "accuracy": 0.1 * s, "mean_thinking_tokens": 9 - s}
            for s in range(3)
        ]
        (ctx.out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    inputs["rl"] = tmp_path / "rl"
    run_stage("rl", tiny_recipe(), inputs["rl"], {}, rl_body, project=PROJECT)
    out = tmp_path / "results"
    out.mkdir()
    table = reasoning_report.write_reasoning(out, "tiny", inputs)
    assert table["rl"]["on"]["accuracy_per_thinking_token"] == pytest.approx(0.05)
    assert table["rl"]["off"]["accuracy_per_thinking_token"] is None  # nothing thought
    assert list(table["rl"]["budgets"]) == ["4", "16"]  # numeric order
    assert table["base"]["budgets"] == {}
    text = (out / "reasoning.md").read_text()
    assert "| rl | on | 0.6000 | 12.00 | 0.0500 | 10 |" in text
    assert "| rl | off | 0.3000 | 0.00 | n/a | 10 |" in text
    assert text.index("| base | on") < text.index("| rl | on")
    assert "| rl | 4 | 0.2000 | 4.00 | 10 |" in text and "| rl | unlimited | 0.6000" in text
    assert "mean thinking tokens 9.00 -> 7.00" in text
    png = (out / "rl_curve.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    reasoning_report.write_reasoning(out, "tiny", inputs)
    assert (out / "rl_curve.png").read_bytes() == png  # byte-identical rerun


def test_evaluate_stage_runs_both_modes_and_budgets(tmp_path) -> None:
    from align_fixtures import make_pretrain, make_reasoning

    from openrecipe.evaluate import evaluate

    recipe = tiny_recipe(
        {
            "eval": {
                "tasks": [{"name": HELDOUT_TASK, "limit": 3}],
                "batch_size": 3,
                "max_new_tokens": 6,
                "reasoning": "both",
                "thinking_budgets": [2],
            }
        }
    )
    reasoning_dir = make_reasoning(tiny_recipe(), tmp_path / "reasoning")
    inputs = {
        "reasoning": reasoning_dir,
        "model": make_pretrain(tiny_recipe(), reasoning_dir, tmp_path / "pretrain"),
    }
    manifest = run_stage("evaluate", recipe, tmp_path / "ev", inputs, evaluate.run, project=PROJECT)
    keys = [HELDOUT_TASK, f"{HELDOUT_TASK}__budget_2", f"{HELDOUT_TASK}__reasoning_off"]
    assert sorted(manifest["summary"]["scores"]) == keys
    assert manifest["summary"]["sampling"]["reasoning"] == "both"
    for key, switch in zip(keys, ("/think", "/think", "/no_think"), strict=True):
        rows = [json.loads(line) for line in (tmp_path / "ev" / f"samples_{key}.jsonl").open()]
        assert len(rows) == 3 and all(f"assistant. {switch}<|im_end|>" in r["prompt"] for r in rows)


def test_paired_difference_joins_items_by_id(tmp_path) -> None:
    def samples(name: str, correct: dict[str, bool]) -> object:
        directory = tmp_path / name
        directory.mkdir()
        rows = [{"id": i, "correct": c} for i, c in correct.items()]
        (directory / f"samples_{HELDOUT_TASK}.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in rows)
        )
        return directory

    # 10 shared items: 3 only the later model gets, 1 only the earlier; "z" is not shared
    earlier = samples("sft", {f"q{i}": i in (0, 1, 9) for i in range(10)} | {"z": True})
    later = samples("rl", {f"q{i}": i in (0, 1, 2, 3, 4) for i in range(10)})
    pair = reasoning_report.paired_difference(earlier, later)
    assert pair["n"] == 10 and pair["difference"] == pytest.approx(0.2)
    assert (pair["only_later_right"], pair["only_earlier_right"]) == (3, 1)
    # per-item differences: three +1, one -1, six 0 -> sample sd sqrt((3*0.64+1.44+6*0.04)/9)
    assert pair["paired_stderr"] == pytest.approx(((3 * 0.64 + 1.44 + 6 * 0.04) / 9 / 10) ** 0.5)
    table = reasoning_report.paired_table({"eval_sft": earlier, "eval_rl": later})
    assert list(table) == ["rl - sft"]
    text = reasoning_report.reasoning_md("tiny", {}, [], table)
    assert "| rl - sft | +0.2000 |" in text
    assert reasoning_report.paired_difference(earlier, tmp_path / "missing") is None
