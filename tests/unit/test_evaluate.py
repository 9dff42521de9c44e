"""The evaluate stage: answer extraction, the rendered lm-eval suite, the thinking budget, and a
real lm-eval run on a random tiny NemotronH (byte-identical outputs across reruns)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from align_fixtures import PROJECT, make_pretrain, make_reasoning, tiny_recipe

from openrecipe.data.chat import THINK_CLOSE, THINK_OPEN
from openrecipe.errors import RecipeError, StageInputError
from openrecipe.evaluate import answers, evaluate, suite
from openrecipe.evaluate.hflm import ThinkingBudget, thinking_token_ids
from openrecipe.stage import run_stage

TASKS = ["openrecipe_reasoning_heldout", "openrecipe_reasoning_bpb"]


# ------------------------------------------------------------------------------------------
# answers


@pytest.mark.parametrize(
    ("generation", "expected"),
    [
        ("<think>3+4=7. 7*2=14.</think>14", "14"),
        ("<think>3+4=7.</think>The answer is 1,024.", "1,024"),  # verbatim; compared as a number
        ("<think>12</think>so \\boxed{ 42 } not 7", "42"),
        ("<think>a</think>\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("no reasoning, just 5 then -3", "-3"),
        ("<think>7 8 9</think>nothing", ""),  # numbers inside the reasoning never count
        ("<think>unclosed 12", "12"),
        ("<think>x</think>2.50", "2.50"),
    ],
)
def test_extract_answer(generation: str, expected: str) -> None:
    assert answers.extract_answer(generation) == expected


def test_is_correct_strips_and_thinking_span() -> None:
    assert answers.is_correct("<think>1+1=2.</think> 2 ", " 2")
    assert not answers.is_correct("<think>1+1=2.</think>3", "2")
    assert answers.is_correct("<think>3+4=7.</think>The answer is 1,024.", "1024")
    assert answers.is_correct("<think>x</think>2.50", "2.5")
    assert not answers.is_correct("<think>17-3=14</think>", "14")  # reasoning never counts
    assert answers.thinking_span("<think>1+1=2.</think>2") == "1+1=2."
    assert answers.thinking_span("<think>still going") == "still going"
    assert answers.thinking_span("2") is None


# ------------------------------------------------------------------------------------------
# suite rendering


def test_render_suite_hash_ignores_paths_but_not_settings(tmp_path: Path) -> None:
    def render(where: str, max_gen_toks: int, reasoning: str = "on") -> dict[str, str]:
        return suite.render_suite(
            TASKS,
            tmp_path / where,
            data_file=tmp_path / where / "h.jsonl",
            cache_dir=tmp_path / where / "c",
            max_gen_toks=max_gen_toks,
            reasoning=reasoning,
        )

    a, b = render("a", 64), render("b", 64)
    assert a == b
    assert render("c", 32)["openrecipe_reasoning_heldout"] != a["openrecipe_reasoning_heldout"]
    assert render("d", 64, "off")["openrecipe_reasoning_bpb"] != a["openrecipe_reasoning_bpb"]
    text = (tmp_path / "a" / "openrecipe_reasoning_heldout.yaml").read_text()
    assert "max_gen_toks: 64" in text and json.dumps(str(tmp_path / "a" / "h.jsonl")) in text
    assert (tmp_path / "a" / "utils.py").is_file()
    with pytest.raises(RecipeError, match="unknown task 'no_such_task'"):
        suite.render_suite(
            ["no_such_task"],
            tmp_path / "e",
            data_file=tmp_path,
            cache_dir=tmp_path,
            max_gen_toks=8,
            reasoning="on",
        )


# ------------------------------------------------------------------------------------------
# thinking budget


def test_thinking_budget_forces_close_only_when_spent() -> None:
    open_id, close_id, prompt = 5, 6, [9, 9]
    rows = [
        prompt + [1, 2, 3, 4],  # never opened: untouched
        prompt + [open_id, 1, 2, 3],  # 3 thinking tokens = budget: force </think>
        prompt + [open_id, 1, close_id, 3],  # already closed: untouched
        prompt + [1, open_id, 2, 3],  # 2 < budget: untouched
    ]
    processor = ThinkingBudget(len(prompt), open_id, close_id, budget=3)
    scores = processor(torch.tensor(rows), torch.zeros(4, 10))
    assert scores.argmax(dim=1).tolist()[1] == close_id
    assert bool((scores[1] < -1e30).sum() == 9)
    assert bool((scores[[0, 2, 3]] == 0).all())


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("upstream")
    recipe = tiny_recipe()
    reasoning_dir = make_reasoning(recipe, base / "reasoning")
    return {
        "reasoning": reasoning_dir,
        "model": make_pretrain(recipe, reasoning_dir, base / "pretrain"),
    }


def test_thinking_budget_in_generate_then_answer_continues(upstream: dict[str, Path]) -> None:
    """With a real model: once <think> is open, exactly `budget` tokens later </think> comes."""
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        LogitsProcessor,
        LogitsProcessorList,
    )

    model_dir = upstream["model"] / "model"
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    open_id, close_id = thinking_token_ids(tokenizer)
    prompt = torch.tensor([tokenizer.encode("Ava has 3 apples.", add_special_tokens=False)])

    class OpenThenNeverClose(LogitsProcessor):
        """A random model rarely opens or closes reasoning by itself: open it, and leave the
        closing to ThinkingBudget (which runs after this and overrides the whole row)."""

        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
            if input_ids.shape[1] == prompt.shape[1]:
                scores[:, :] = float("-inf")
                scores[:, open_id] = 0.0
            scores[:, close_id] = float("-inf")
            return scores

    budget = 4
    out = model.generate(
        prompt,
        max_new_tokens=10,
        do_sample=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=None,
        logits_processor=LogitsProcessorList(
            [OpenThenNeverClose(), ThinkingBudget(prompt.shape[1], open_id, close_id, budget)]
        ),
    )
    generated = out[0, prompt.shape[1] :].tolist()
    assert generated[0] == open_id
    assert generated.index(close_id) == budget + 1
    assert len(generated) == 10  # decoding went on after </think>: the answer part


# ------------------------------------------------------------------------------------------
# results cleaning and inputs


def test_clean_results_drops_volatile_fields_and_paths() -> None:
    raw = {
        "results": {"t": {"exact_match,none": 0.5}},
        "date": 1.0,
        "git_hash": "abc",
        "pretty_env_info": "host",
        "samples": {"t": []},
        "config": {"model": "/abs/ckpt/model", "model_dtype": torch.float32},
        "configs": {"t": {"fn": "<function f at 0x7f00deadbeef>", "src": "/tmp/x/tasks/t.yaml"}},
    }
    cleaned = evaluate.clean_results(raw, {"/abs/ckpt/model": "<model>", "/tmp/x": "<scratch>"})
    assert cleaned == {
        "results": {"t": {"exact_match,none": 0.5}},
        "config": {"model": "<model>", "model_dtype": "torch.float32"},
        "configs": {"t": {"fn": "<function f>", "src": "<scratch>/tasks/t.yaml"}},
    }
    assert evaluate.metric_values(
        {"exact_match,none": 0.5, "exact_match_stderr,none": "N/A", "alias": "t"}
    ) == {"exact_match": 0.5}


def test_check_heldout_names_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "heldout.jsonl"
    good = {"id": "a", "question": "q", "thinking": "t", "answer": "1"}
    path.write_text(json.dumps(good) + "\n" + json.dumps({"id": "b", "question": "q"}) + "\n")
    with pytest.raises(StageInputError, match=r"heldout.jsonl:2: fields \['thinking', 'answer'\]"):
        evaluate.check_heldout(path)
    path.write_text(json.dumps(good) + "\n")
    assert evaluate.check_heldout(path) == 1


# ------------------------------------------------------------------------------------------
# the stage, end to end through lm-eval


def _evaluate(upstream: dict[str, Path], out: Path, **eval_cfg) -> dict:
    recipe = tiny_recipe(
        {
            "eval": {
                "tasks": [
                    {"name": TASKS[0], "limit": 4, "num_fewshot": 0},
                    {"name": TASKS[1], "limit": 3, "num_fewshot": 0},
                ],
                "batch_size": 4,
                "max_new_tokens": 8,
                "reasoning": "on",  # one mode, no budget runs (tiny.yaml asks for both)
                "thinking_budgets": [],
                **eval_cfg,
            }
        }
    )
    return run_stage("evaluate", recipe, out, upstream, evaluate.run, project=PROJECT, part="base")


def test_zero_shot_tasks_log_no_fewshot_override(
    upstream: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """0 shots is lm-eval's own default for a template without ``num_fewshot``: passing it
    explicitly made lm-eval warn "Overwriting default num_fewshot" for every task of every run."""
    manifest = _evaluate(upstream, tmp_path / "out")
    assert not [r for r in caplog.records if "num_fewshot" in r.getMessage()]
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert set(results[TASKS[0]]["n-shot"].values()) == {0}
    assert manifest["summary"]["scores"]


def test_stage_is_byte_identical_and_path_free(upstream: dict[str, Path], tmp_path: Path) -> None:
    first = _evaluate(upstream, tmp_path / "a")
    second = _evaluate(upstream, tmp_path / "b")
    assert first["outputs"] == second["outputs"]
    assert first["summary"] == second["summary"]
    assert sorted(first["outputs"]) == [
        "results.json",
        *(f"samples_{t}.jsonl" for t in sorted(TASKS)),
        "scores.json",
    ]
    assert not list(tmp_path.glob(".evaluate-scratch-*"))  # datasets cache deleted

    results_text = (tmp_path / "a" / "results.json").read_text()
    for volatile in (
        str(tmp_path),
        str(upstream["model"]),
        "/tmp/",
        "pretty_env_info",
        "git_hash",
        '"date"',
        " at 0x",
    ):
        assert volatile not in results_text

    rows = [json.loads(line) for line in (tmp_path / "a" / f"samples_{TASKS[0]}.jsonl").open()]
    assert [r["doc_id"] for r in rows] == [0, 1, 2, 3]
    heldout = [json.loads(line) for line in (upstream["reasoning"] / "heldout.jsonl").open()]
    assert rows[0]["prompt"] == (
        "<|im_start|>system\nYou are a careful assistant. /think<|im_end|>\n"
        f"<|im_start|>user\n{heldout[0]['question']}<|im_end|>\n<|im_start|>assistant\n"
    )
    assert rows[0]["gold"] == heldout[0]["answer"]
    assert all(r["extracted"] == answers.extract_answer(r["generation"]) for r in rows)

    scores = json.loads((tmp_path / "a" / "scores.json").read_text())
    assert scores[TASKS[0]]["exact_match"] == sum(r["correct"] for r in rows) / 4
    assert scores[TASKS[0]]["n"] == 4 and scores[TASKS[1]]["n"] == 3
    bpb_rows = [json.loads(line) for line in (tmp_path / "a" / f"samples_{TASKS[1]}.jsonl").open()]
    assert (
        bpb_rows[0]["target"]
        == f"{THINK_OPEN}{heldout[0]['thinking']}{THINK_CLOSE}{heldout[0]['answer']}"
    )
    expected_bpb = (
        -sum(r["loglikelihood"] for r in bpb_rows)
        / sum(r["bytes"] for r in bpb_rows)
        / 0.6931471805599453
    )
    assert scores[TASKS[1]]["bits_per_byte"] == pytest.approx(expected_bpb)
    assert first["summary"]["chat_template_is_openrecipe"] is True
    assert first["summary"]["scores"] == scores
