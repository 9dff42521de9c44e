"""GRPO: advantages, the asymmetric clipped surrogate, rollout log-probs, the update direction
and byte-identical reruns."""

from __future__ import annotations

import json
import math

import pytest
import torch
from align_fixtures import PROJECT, make_pretrain, make_reasoning, tiny_recipe

from openrecipe.data import chat
from openrecipe.errors import RecipeError
from openrecipe.evaluate.grader import Verifier
from openrecipe.hashing import sha256_file
from openrecipe.recipe import Recipe
from openrecipe.stage import StageContext, run_stage
from openrecipe.stage_config import decode_value
from openrecipe.train import grpo_loss, rl
from openrecipe.train.hf_checkpoint import load_checkpoint
from openrecipe.train.sampling import Rollout, sample_group

SMALL = {
    # one thread: tiny kernels gain nothing from two, and two thrash on a busy CI box
    "resources": {"threads": 1},
    "sft": {
        "steps": 25,
        "lr": 5e-3,
        "batch_size": 8,
        "seq_length": 160,
        "data": {"n_train": 40, "n_heldout": 4, "min_steps": 1, "max_steps": 1, "max_value": 9},
    },
    "rl": {
        "steps": 2,
        "prompts_per_step": 2,
        "generations_per_prompt": 3,
        "lr": 1e-3,
        "max_new_tokens": 16,
        "length_penalty": 0.01,
    },
}


def _params(recipe: Recipe, **change: object) -> rl.RlParams:
    """The recipe's ``rl`` section with ``change`` applied, typed as the stage reads it."""
    return decode_value(rl.RlParams, {**recipe.get("rl"), **change}, "rl")


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    from openrecipe.train import sft

    base = tmp_path_factory.mktemp("align")
    recipe = tiny_recipe(SMALL)
    reasoning_dir = make_reasoning(recipe, base / "reasoning")
    pretrain_dir = make_pretrain(recipe, reasoning_dir, base / "pretrain")
    inputs = {"pretrain": pretrain_dir, "reasoning": reasoning_dir}
    run_stage("sft", recipe, base / "sft", inputs, sft.run, project=PROJECT)
    return recipe, reasoning_dir, base / "sft"


def test_thinking_tokens() -> None:
    assert rl.thinking_tokens([5, 9, 9, 9, 6, 7, 4], 5, 6) == 3
    assert rl.thinking_tokens([5, 9, 9, 4], 5, 6) == 3  # unclosed: up to the end
    assert rl.thinking_tokens([5, 6, 7], 5, 6) == 0
    # a </think> before the <think> is not the end of the thinking
    assert rl.thinking_tokens([6, 5, 9, 6], 5, 6) == 1
    assert rl.thinking_tokens([6, 5, 9, 9], 5, 6) == 2


def test_group_advantages() -> None:
    adv = grpo_loss.group_advantages(torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]]))
    std = torch.tensor([1.0, 0.0, 0.0, 1.0]).std()
    assert torch.allclose(
        adv[0], (torch.tensor([1.0, 0.0, 0.0, 1.0]) - 0.5) / (std + grpo_loss.ADV_EPS)
    )
    assert adv[1].abs().sum() == 0  # a group with equal rewards teaches nothing


def test_clipping_is_asymmetric() -> None:
    mask = torch.ones(1, 1)
    old = torch.zeros(1, 1)
    # positive advantage: the ratio may rise to 1 + clip_high = 1.28, then the gradient stops
    for ratio, flows in ((1.2, True), (1.4, False)):
        new = torch.full((1, 1), float(torch.log(torch.tensor(ratio))), requires_grad=True)
        loss, clipped = grpo_loss.clipped_surrogate(new, old, torch.ones(1, 1), mask, 0.2, 0.28)
        loss.backward()
        assert (new.grad.abs().item() > 0) == flows and clipped.item() == (0.0 if flows else 1.0)
    # negative advantage: the ratio may fall to 1 - clip_low = 0.8
    for ratio, flows in ((0.85, True), (0.75, False)):
        new = torch.full((1, 1), float(torch.log(torch.tensor(ratio))), requires_grad=True)
        loss, _ = grpo_loss.clipped_surrogate(new, old, -torch.ones(1, 1), mask, 0.2, 0.28)
        loss.backward()
        assert (new.grad.abs().item() > 0) == flows
    # masked tokens carry no loss
    new = torch.zeros(1, 2, requires_grad=True)
    loss, _ = grpo_loss.clipped_surrogate(
        new, torch.zeros(1, 2), torch.ones(1, 1), torch.tensor([[1.0, 0.0]]), 0.2, 0.28
    )
    loss.backward()
    assert new.grad[0, 1] == 0 and new.grad[0, 0] != 0


def test_rollout_logprobs_match_a_full_forward(upstream) -> None:
    _, _, sft_dir = upstream
    model, tokenizer = load_checkpoint(sft_dir)
    prompt = chat.encode_prompt(tokenizer, "Jo has 7 stickers. Jo uses 2 stickers. How many?")
    stop = tokenizer.convert_tokens_to_ids(chat.IM_END)
    rollouts = sample_group(
        model,
        prompt,
        3,
        max_new_tokens=12,
        temperature=0.8,
        stop_id=stop,
        generator=torch.Generator().manual_seed(1),
    )
    again = sample_group(
        model,
        prompt,
        3,
        max_new_tokens=12,
        temperature=0.8,
        stop_id=stop,
        generator=torch.Generator().manual_seed(1),
    )
    assert rollouts == again
    with torch.no_grad():
        logp, mask = grpo_loss.completion_logprobs(
            model, [prompt] * 3, [r.tokens for r in rollouts], tokenizer.pad_token_id, 0.8
        )
    for row, rollout in enumerate(rollouts):
        assert mask[row].sum() == len(rollout.tokens) <= 12
        assert torch.allclose(
            logp[row, : len(rollout.tokens)], torch.tensor(rollout.logprobs), atol=1e-4
        )


def _scripted_rollouts(model, tokenizer, prompt: list[int], texts: list[str]):
    """Rollouts of fixed completion ``texts``, with the model's own log-probs as the sampling
    policy's; also the tokenizer's (<think>, </think>) ids."""
    completions = [tokenizer.encode(t, add_special_tokens=False) for t in texts]
    with torch.no_grad():
        logp, _ = grpo_loss.completion_logprobs(
            model, [prompt] * len(texts), completions, tokenizer.pad_token_id, 1.0
        )
    rollouts = [Rollout(c, logp[i, : len(c)].tolist(), True) for i, c in enumerate(completions)]
    think = (
        tokenizer.convert_tokens_to_ids(chat.THINK_OPEN),
        tokenizer.convert_tokens_to_ids(chat.THINK_CLOSE),
    )
    return completions, logp, rollouts, think


def test_update_moves_toward_the_rewarded_completion(upstream) -> None:
    recipe, _, sft_dir = upstream
    model, tokenizer = load_checkpoint(sft_dir)
    record = {
        "question": "Jo has 7 stickers. Jo uses 2 stickers. How many stickers does Jo have now?",
        "answer": "5",
        "thinking": "7-2=5.",
    }
    prompt = chat.encode_prompt(tokenizer, record["question"])
    texts = [
        "<think>7-2=5.</think>5<|im_end|>",
        "<think>7-2=4.</think>4<|im_end|>",
        "<think>7+2=9.</think>9<|im_end|>",
    ]
    completions, before, rollouts, think = _scripted_rollouts(model, tokenizer, prompt, texts)
    config = _params(recipe, generations_per_prompt=3, length_penalty=0.0)
    # plain SGD, small step: checks the direction of the policy gradient itself
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    with Verifier() as verifier:
        row = rl._step(
            model,
            None,
            optimizer,
            verifier,
            tokenizer,
            config,
            [record],
            [prompt] * 3,
            rollouts,
            think,
        )
    assert row["accuracy"] == pytest.approx(1 / 3) and row["clipped_fraction"] == 0.0
    assert row["trained_fraction"] == 1.0
    with torch.no_grad():
        after, _ = grpo_loss.completion_logprobs(
            model, [prompt] * 3, completions, tokenizer.pad_token_id, 1.0
        )
    gain = (after - before).sum(dim=1)
    assert gain[0] > 0 > gain[1] and gain[2] < 0


def test_update_clips_stale_ratios_at_the_recipe_bounds(upstream) -> None:
    """Rollouts sampled by an older policy (stale log-probs): the rewarded completion has ratio
    1.25 on every token, inside clip-higher's 1 + 0.28, so it is not clipped and keeps its
    gradient; the two wrong ones have ratio 0.75, below 1 - 0.2, so they are clipped and add
    none. The update's loss and clipped share are those of the recipe's [0.8, 1.28]."""
    recipe, _, sft_dir = upstream
    model, tokenizer = load_checkpoint(sft_dir)
    record = {"question": "Jo has 7 stickers. Jo uses 2 stickers. How many?", "answer": "5"}
    prompt = chat.encode_prompt(tokenizer, record["question"])
    texts = [
        "<think>7-2=5.</think>5<|im_end|>",
        "<think>7-2 is 4.</think>4<|im_end|>",  # longer: means and shares that do not
        "<think>7+2 is 9.</think>9<|im_end|>",  # end in 6 decimals (rounding shows)
    ]
    completions, now, fresh, think = _scripted_rollouts(model, tokenizer, prompt, texts)
    ratios = [1.25, 0.75, 0.75]
    # the last one ran out of tokens before <|im_end|> (its text still ends with it: the
    # stopped flag is the sampler's, the step only reports it)
    stale = [
        Rollout(r.tokens, [lp - math.log(ratio) for lp in r.logprobs], i < 2)
        for i, (r, ratio) in enumerate(zip(fresh, ratios, strict=True))
    ]
    config = _params(
        recipe, generations_per_prompt=3, length_penalty=0.0, clip_low=0.2, clip_high=0.28
    )
    n_tokens = [len(c) for c in completions]
    adv = grpo_loss.group_advantages(torch.tensor([[1.0, 0.0, 0.0]]))[0].tolist()
    # per token: -min(ratio * A, clamp(ratio, 0.8, 1.28) * A)
    clamped = [1.25, 0.8, 0.8]
    expect_loss = -sum(
        n * min(r * a, c * a) for n, r, a, c in zip(n_tokens, ratios, adv, clamped, strict=True)
    ) / sum(n_tokens)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    with Verifier() as verifier:
        row = rl._step(
            model,
            None,
            optimizer,
            verifier,
            tokenizer,
            config,
            [record],
            [prompt] * 3,
            stale,
            think,
        )
    assert row["accuracy"] == pytest.approx(1 / 3) and row["trained_fraction"] == 1.0
    assert row["clipped_fraction"] == pytest.approx(sum(n_tokens[1:]) / sum(n_tokens), abs=1e-6)
    assert row["loss"] == pytest.approx(expect_loss, rel=1e-4)
    open_id, close_id = think
    thinking = [c.index(close_id) - c.index(open_id) - 1 for c in completions]
    # metrics.jsonl's values as written (floats, 6 places, token means 4)
    shown = {k: v for k, v in row.items() if k not in ("loss", "clipped_fraction")}
    assert json.dumps(shown, sort_keys=True) == json.dumps(
        {
            "trained_fraction": 1.0,
            "accuracy": round(1 / 3, 6),
            "mean_reward": round(1 / 3, 6),
            "mean_thinking_tokens": round(sum(thinking) / 3, 4),
            "mean_completion_tokens": round(sum(n_tokens) / 3, 4),
            "stopped_fraction": round(2 / 3, 6),
        },
        sort_keys=True,
    )
    assert row["loss"] * 10**6 == pytest.approx(round(row["loss"] * 10**6), abs=1e-6)
    assert row["clipped_fraction"] == round(sum(n_tokens[1:]) / sum(n_tokens), 6)
    # only the rewarded completion carried gradient, and it moved up
    with torch.no_grad():
        after, _ = grpo_loss.completion_logprobs(
            model, [prompt] * 3, completions, tokenizer.pad_token_id, 1.0
        )
    assert (after - now).sum(dim=1)[0] > 0


def test_clipped_surrogate_gradient_at_stale_ratios() -> None:
    """Per token: a positive advantage stops its gradient only above 1 + clip_high, a negative
    one only below 1 - clip_low; with (clip_low, clip_high) = (0.2, 0.28), ratio 1.25 and 0.75
    are on opposite sides of that asymmetry."""
    ratios = torch.tensor([[1.25, 1.25, 0.75, 0.75]])
    new = torch.log(ratios).clone().requires_grad_(True)
    adv = torch.tensor([[1.0]])
    for sign, live in ((1.0, [True, True, True, True]), (-1.0, [True, True, False, False])):
        new.grad = None
        loss, clipped = grpo_loss.clipped_surrogate(
            new, torch.zeros_like(new), sign * adv, torch.ones_like(new), 0.2, 0.28
        )
        loss.backward()
        assert (new.grad[0] != 0).tolist() == live
        assert clipped.item() == live.count(False) / 4


def test_stage_reruns_byte_identical(upstream, tmp_path, monkeypatch) -> None:
    recipe, reasoning_dir, sft_dir = upstream
    inputs = {"sft": sft_dir, "reasoning": reasoning_dir}
    groups: list[tuple] = []  # what each sampled group was given, in call order

    def sample_group_spy(model, prompt, n, *, generator, **kwargs):
        groups.append((prompt, n, generator.initial_seed(), kwargs))
        return sample_group(model, prompt, n, generator=generator, **kwargs)

    monkeypatch.setattr(rl, "sample_group", sample_group_spy)
    first = run_stage("rl", recipe, tmp_path / "a", inputs, rl.run, project=PROJECT)
    second = run_stage("rl", recipe, tmp_path / "b", inputs, rl.run, project=PROJECT)
    assert first["outputs"] == second["outputs"]
    assert sha256_file(tmp_path / "a" / "model" / "model.safetensors") != sha256_file(
        sft_dir / "model" / "model.safetensors"
    )
    lines = (tmp_path / "a" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines]
    # canonical JSON lines (sorted keys), so equal metrics are equal bytes
    assert lines == [json.dumps(r, sort_keys=True) for r in rows]
    assert [r["step"] for r in rows] == [0, 1]
    for r in rows:
        assert {
            "mean_reward",
            "accuracy",
            "mean_thinking_tokens",
            "loss",
            "clipped_fraction",
        } <= set(r)
        assert 0 <= r["mean_thinking_tokens"] <= 16
        # with no right answers the reward is the length penalty alone
        assert r["mean_reward"] == pytest.approx(
            r["accuracy"] - 0.01 * r["mean_thinking_tokens"], abs=1e-5
        )
        assert "kl" not in r  # kl_coef 0: no reference model, no KL term
    summary = first["summary"]
    assert summary["rollouts"] == 12 and summary["steps"] == 2
    assert summary["first_accuracy"] == rows[0]["accuracy"]
    assert summary["last_accuracy"] == rows[-1]["accuracy"]
    assert summary["mean_accuracy"] == round((rows[0]["accuracy"] + rows[1]["accuracy"]) / 2, 6)
    assert summary["last_mean_reward"] == rows[-1]["mean_reward"]
    assert summary["last_mean_thinking_tokens"] == rows[-1]["mean_thinking_tokens"]
    _assert_rollouts_follow_the_docstring(recipe, reasoning_dir, sft_dir, tmp_path, groups[:4])


def _assert_rollouts_follow_the_docstring(recipe, reasoning_dir, sft_dir, out, groups) -> None:
    """The first run's sampled groups: the train questions in file order, prompts_per_step a
    step, reasoning on, each group seeded by (stage seed, step, prompt index), generating with
    the recipe's sampling settings and stopping at <|im_end|>."""
    from openrecipe.data.reasoning import read_split
    from openrecipe.hashing import derive_seed

    _, tokenizer = load_checkpoint(sft_dir)
    records = read_split(reasoning_dir, "train")
    seed = json.loads((out / "a" / "manifest.json").read_text())["seed"]
    params = recipe.get("rl")
    expect = []
    for step in range(2):
        for i in range(2):
            question = records[step * 2 + i]["question"]
            kwargs = {
                "max_new_tokens": 16,
                "temperature": params["temperature"],
                "stop_id": tokenizer.convert_tokens_to_ids(chat.IM_END),
            }
            prompt = chat.encode_prompt(tokenizer, question, reasoning=True)
            expect.append((prompt, 3, derive_seed(seed, "rollout", str(step), str(i)), kwargs))
    assert groups == expect


def test_kl_term_runs_when_enabled(upstream, tmp_path) -> None:
    """One step with the KL term on. It is also AdamW's first step at the recipe's lr with no
    weight decay, which moves every weight by lr * g / (|g| + eps): at most lr, about lr for
    any weight with a real gradient, and nothing else (a decayed weight would move further)."""
    _, reasoning_dir, sft_dir = upstream
    lr = 4e-3  # not torch's AdamW default (1e-3), so the optimizer must be given the recipe's
    recipe = tiny_recipe({**SMALL, "rl": {**SMALL["rl"], "kl_coef": 0.1, "steps": 1, "lr": lr}})
    inputs = {"sft": sft_dir, "reasoning": reasoning_dir}
    run_stage("rl", recipe, tmp_path / "kl", inputs, rl.run, project=PROJECT)
    row = json.loads((tmp_path / "kl" / "metrics.jsonl").read_text().splitlines()[0])
    assert row["kl"] == pytest.approx(0.0, abs=1e-6)  # the first step's policy is the reference
    assert row["trained_fraction"] > 0  # the step made an update
    before, _ = load_checkpoint(sft_dir)
    after, _ = load_checkpoint(tmp_path / "kl")
    moved = max(
        (b - a).abs().max().item()
        for a, b in zip(before.parameters(), after.parameters(), strict=True)
    )
    assert 0.9 * lr < moved <= lr * (1 + 1e-4)


def test_groups_without_reward_variance_are_not_trained(upstream) -> None:
    """Equal rewards in a group mean zero advantages: the update skips those rollouts, and a
    step where every group is uniform leaves the weights as they were."""
    recipe, _, sft_dir = upstream
    model, tokenizer = load_checkpoint(sft_dir)
    record = {"question": "Jo has 7 stickers. How many stickers does Jo have now?", "answer": "7"}
    prompt = chat.encode_prompt(tokenizer, record["question"])
    wrong = ["<think>7-2=5.</think>5<|im_end|>", "<think>7+1=8.</think>8<|im_end|>"]
    _, _, rollouts, think = _scripted_rollouts(model, tokenizer, prompt, wrong)
    config = _params(recipe, generations_per_prompt=2, length_penalty=0.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    with Verifier() as verifier:
        row = rl._step(
            model,
            None,
            optimizer,
            verifier,
            tokenizer,
            config,
            [record],
            [prompt] * 2,
            rollouts,
            think,
        )
    assert row["accuracy"] == 0.0 and row["trained_fraction"] == 0.0 and row["loss"] == 0.0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


class _Interrupted(Exception):
    """Stands in for the kill of an rl run (test_align_resume.py kills a real process)."""


def test_interrupted_run_resumes_after_its_checkpoint(upstream, tmp_path, monkeypatch) -> None:
    """An rl run stopped during step 1, after the checkpoint of step 0: rerun, it restores the
    policy, optimizer and metric rows from that checkpoint, runs only step 1, records the
    resume in run_info.json and ends with the bytes of an unbroken run."""
    _, reasoning_dir, sft_dir = upstream
    recipe = tiny_recipe({**SMALL, "rl": {**SMALL["rl"], "checkpoint_every": 1}})
    inputs = {"sft": sft_dir, "reasoning": reasoning_dir}
    run_stage("rl", recipe, tmp_path / "unbroken", inputs, rl.run, project=PROJECT)
    real_step, calls = rl._step, []

    def step_spy(*args):
        calls.append(len(calls))
        if stop_at is not None and len(calls) > stop_at:
            raise _Interrupted
        return real_step(*args)

    monkeypatch.setattr(rl, "_step", step_spy)
    stop_at = 1
    with pytest.raises(_Interrupted):
        run_stage("rl", recipe, tmp_path / "resumed", inputs, rl.run, project=PROJECT)
    calls.clear()
    stop_at = None
    run_stage("rl", recipe, tmp_path / "resumed", inputs, rl.run, project=PROJECT)
    assert calls == [0]  # step 1 only
    assert json.loads((tmp_path / "resumed" / "run_info.json").read_text())["resumed"]["step"] == 1
    for name in ("model/model.safetensors", "metrics.jsonl"):
        assert sha256_file(tmp_path / "resumed" / name) == sha256_file(
            tmp_path / "unbroken" / name
        ), name


def test_a_view_that_does_not_fit_is_refused_naming_the_stage(tmp_path) -> None:
    recipe = tiny_recipe(SMALL)
    view = {k: v for k, v in recipe.view("rl").items() if k != "resources.threads"}
    ctx = StageContext("rl", recipe, view, "0" * 64, 0, {}, tmp_path, PROJECT)
    with pytest.raises(RecipeError, match="^stage rl: view paths"):
        rl.run(ctx)


def test_kl_term_against_a_different_reference(upstream) -> None:
    """With a reference that differs from the policy, the update's loss is the clipped
    surrogate plus kl_coef times the k3 estimate mean(exp(d) - d - 1), d = ref - new, over the
    completion tokens, and the row records that estimate."""
    recipe, _, sft_dir = upstream
    policy, tokenizer = load_checkpoint(sft_dir)
    reference, _ = load_checkpoint(sft_dir)
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    prompt = chat.encode_prompt(tokenizer, "Jo has 7 stickers. Jo uses 2 stickers. How many?")
    texts = ["<think>7-2=5.</think>5<|im_end|>", "<think>7-2 is 4.</think>4<|im_end|>"]
    completions, _, rollouts, _ = _scripted_rollouts(policy, tokenizer, prompt, texts)
    prompts = [prompt] * 2
    with torch.no_grad():
        new, mask = grpo_loss.completion_logprobs(
            policy, prompts, completions, tokenizer.pad_token_id, 1.0
        )
        ref, _ = grpo_loss.completion_logprobs(
            reference, prompts, completions, tokenizer.pad_token_id, 1.0
        )
    d = ref - new
    kl = (((torch.exp(d) - d - 1) * mask).sum() / mask.sum()).item()
    advantages = torch.tensor([[1.0], [-1.0]])
    surrogate, _ = grpo_loss.clipped_surrogate(new, new, advantages, mask, 0.2, 0.28)
    config = _params(recipe, kl_coef=0.5, temperature=1.0, generations_per_prompt=2)
    row: dict = {}
    loss, _ = rl._update(
        policy,
        reference.eval().requires_grad_(False),
        torch.optim.SGD(policy.parameters(), lr=0.0),
        tokenizer,
        config,
        row,
        prompts,
        rollouts,
        advantages,
    )
    assert kl > 1e-3  # the reference really differs
    assert row == {"kl": round(kl, 6)}
    assert loss.item() == pytest.approx(surrogate.item() + 0.5 * kl, rel=1e-5, abs=1e-6)


def test_a_step_trains_only_its_groups_with_reward_variance(upstream) -> None:
    """Three groups of two, only the first with a right and a wrong answer: a third of the
    rollouts are trained, and metrics.jsonl gets the share as a float rounded to 6 places."""
    recipe, _, sft_dir = upstream
    model, tokenizer = load_checkpoint(sft_dir)
    question = "Jo has 7 stickers. Jo uses 2 stickers. How many?"
    batch = [{"question": question, "answer": a} for a in ("5", "7", "7")]
    prompt = chat.encode_prompt(tokenizer, question)
    texts = ["<think>7-2=5.</think>5<|im_end|>", "<think>7-2=4.</think>4<|im_end|>"] * 3
    _, _, rollouts, think = _scripted_rollouts(model, tokenizer, prompt, texts)
    config = _params(recipe, generations_per_prompt=2, length_penalty=0.0)
    with Verifier() as verifier:
        row = rl._step(
            model,
            None,
            torch.optim.SGD(model.parameters(), lr=0.05),
            verifier,
            tokenizer,
            config,
            batch,
            [prompt] * 6,
            rollouts,
            think,
        )
    assert json.dumps(row["trained_fraction"]) == "0.333333"
    assert (
        json.dumps(row["accuracy"]) == "0.166667" and json.dumps(row["stopped_fraction"]) == "1.0"
    )
