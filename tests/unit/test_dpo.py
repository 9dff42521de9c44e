"""DPO: the loss (by hand and against TRL's numbers), the declared post-training sequence, the
optional stage in the registry, pairs from rollouts and from a pinned dataset, byte-identical
reruns, resume after SIGKILL, and certify's count at the DPO level."""

from __future__ import annotations

import copy
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from align_fixtures import PROJECT, make_pretrain, make_reasoning
from dpo_fixtures import DPO, dpo_recipe

from openrecipe import post_training, registry
from openrecipe.data.reasoning import read_split
from openrecipe.errors import RecipeError, StageInputError
from openrecipe.evaluate.grader import Verifier
from openrecipe.hashing import sha256_file
from openrecipe.lineage import certify as certify_module
from openrecipe.lineage.certify import Chain, Selector, certify, dpo_tokens, render_markdown
from openrecipe.lineage.trace import format_tree, raw_sources, trace
from openrecipe.stage import run_stage
from openrecipe.train import dpo, dpo_loss, dpo_pairs, rl, sft
from openrecipe.train.hf_checkpoint import load_checkpoint

FIXTURE = "tests/fixtures/dpo_pairs.jsonl"
FIXTURE_SHA256 = "9bd3214bcff58adedcae6c79096f98558e64d8b97275ef5608ebfec8ce90269d"

# ---------------------------------------------------------------------------------------------
# The loss

# Four pairs (sequence log-probs and completion lengths) and TRL 1.16's per-pair losses for
# them, printed by `PYTHONPATH=src /tmp/trl/bin/python bench/dpo_loss_vs_trl.py` (TRL 1.16.0
# in a side venv; see the script's docstring): DPOTrainer._compute_loss, one pair at a time.
PC = [-12.5, -30.25, -7.0, -50.0]
PR = [-14.0, -29.0, -9.5, -48.75]
RC = [-13.0, -30.0, -7.25, -49.5]
RR = [-13.5, -29.5, -9.0, -49.0]
NC, NR = [3, 5, 2, 4], [4, 2, 6, 3]
TRL_LOSSES = {
    ("sigmoid", 0.1): [
        0.6443966600735709,
        0.7313501408267951,
        0.6563501408267951,
        0.7313501408267951,
    ],
    ("sigmoid", 0.5): [
        0.4740769841801067,
        0.8981232641398401,
        0.5231232641398401,
        0.8981232641398401,
    ],
    ("ipo", 0.1): [22.168402777777775, 28.09, 22.960069444444446, 27.126736111111107],
    ("ipo", 0.5): [0.5017361111111112, 1.6900000000000002, 0.6267361111111113, 1.4600694444444442],
}


def _t(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def _ours(loss_type: str, beta: float, smoothing: float = 0.0) -> dpo_loss.DpoLoss:
    return dpo_loss.dpo_loss(
        _t(PC),
        _t(PR),
        _t(RC),
        _t(RR),
        beta=beta,
        loss_type=loss_type,
        label_smoothing=smoothing,
        chosen_tokens=_t(NC),
        rejected_tokens=_t(NR),
    )


def test_loss_by_hand() -> None:
    # pair 0: h = (-12.5 + 14) - (-13 + 13.5) = 1
    out = _ours("sigmoid", 0.1)
    assert out.losses[0].item() == pytest.approx(math.log(1 + math.exp(-0.1)), abs=1e-12)
    assert out.chosen_rewards[0].item() == pytest.approx(0.1 * 0.5)
    assert out.rejected_rewards[0].item() == pytest.approx(0.1 * -0.5)
    # cDPO: (1 - eps) * -log s(beta h) + eps * -log s(-beta h)
    smoothed = _ours("sigmoid", 0.5, 0.2).losses[0].item()
    expect = 0.8 * math.log(1 + math.exp(-0.5)) + 0.2 * math.log(1 + math.exp(0.5))
    assert smoothed == pytest.approx(expect, abs=1e-12)
    # IPO on per-token log-ratios: h' = 0.5 / 3 - (-0.5) / 4
    ipo = _ours("ipo", 0.1).losses[0].item()
    assert ipo == pytest.approx((0.5 / 3 + 0.5 / 4 - 1 / 0.2) ** 2, abs=1e-12)
    # pair 1 prefers the rejected completion: h = (-30.25 + 29) - (-30 + 29.5) = -0.75
    assert _ours("sigmoid", 0.1).losses[1].item() > math.log(2)


@pytest.mark.parametrize("case", sorted(TRL_LOSSES))
def test_loss_matches_trl(case: tuple[str, float]) -> None:
    loss_type, beta = case
    assert _ours(loss_type, beta).losses.tolist() == pytest.approx(TRL_LOSSES[case], abs=1e-12)


def test_loss_refusals() -> None:
    with pytest.raises(ValueError, match="token counts"):
        dpo_loss.dpo_loss(_t(PC), _t(PR), _t(RC), _t(RR), beta=0.1, loss_type="ipo")
    with pytest.raises(ValueError, match="sigmoid loss only"):
        _ours("ipo", 0.1, 0.1)
    with pytest.raises(ValueError, match="beta"):
        _ours("sigmoid", 0.0)


# ---------------------------------------------------------------------------------------------
# The declared sequence and the registry


def _data(**fields: object) -> dict:
    data = {"eval": {"checkpoints": ["base", "sft", "rl"]}}
    data.update(fields)
    return data


def test_post_training_sequence() -> None:
    assert post_training.sequence(_data()) == ("sft", "rl")
    with_dpo = _data(dpo=DPO, post_training=["sft", "rl", "dpo"])
    assert post_training.sequence(with_dpo) == ("sft", "rl", "dpo")
    assert post_training.policy_stage(with_dpo, "dpo") == "rl"
    refusals = {
        "unknown step 'rlhf'": _data(post_training=["sft", "rl", "rlhf"]),
        "step dpo is not enabled": _data(post_training=["sft", "rl", "dpo"]),
        "dpo: is set but post_training is not": _data(dpo=DPO),
        "leaves out dpo": _data(dpo=DPO, post_training=["sft", "rl"]),
        "cannot run in this order": _data(dpo=DPO, post_training=["sft", "dpo", "rl"]),
        "listed twice": _data(post_training=["sft", "rl", "rl"]),
    }
    for message, data in refusals.items():
        with pytest.raises(RecipeError, match=message):
            post_training.sequence(data)
    with pytest.raises(RecipeError, match="post_training"):
        post_training.check_eval_checkpoints(_data(dpo=DPO, post_training=["sft", "dpo"]))


def test_eval_checkpoints_naming_dpo() -> None:
    # eval.checkpoints: dpo without a dpo step is refused by name; with one, this version's
    # evaluate stage (EvalParams.checkpoints, which this task may not edit) would refuse it at
    # evaluation, after the training, so the workflow refuses it up front and names the target
    # that evaluates the dpo checkpoint instead.
    plain = _data()
    plain["eval"]["checkpoints"] = ["rl", "dpo"]
    with pytest.raises(RecipeError, match=r"eval.checkpoints\[1\]: dpo is not a post-training"):
        post_training.check_eval_checkpoints(plain)
    listed = _data(dpo=DPO, post_training=["sft", "rl", "dpo"])
    listed["eval"]["checkpoints"] = ["rl", "dpo"]
    assert post_training.evaluable_checkpoints() == ("base", "sft", "rl")
    with pytest.raises(RecipeError, match="evaluate/dpo/manifest.json"):
        post_training.check_eval_checkpoints(listed)
    post_training.check_eval_checkpoints(_data(dpo=DPO, post_training=["sft", "rl", "dpo"]))


def test_dpo_is_an_optional_stage() -> None:
    entry = registry.stage("dpo")
    assert (entry.checkpoint, entry.family, entry.threads) == ("dpo", "align", True)
    assert entry.active_when == "dpo" and entry.stands_in_for is None
    assert registry.optional_stages() == ["dpo"]
    assert "dpo" not in registry.stand_in_stages()
    assert registry.inactive_stages(dpo_recipe(post_training=("sft", "rl")).data) == []
    tiny = dpo_recipe()
    del tiny.data["dpo"]
    assert registry.inactive_stages(tiny.data) == ["dpo"]
    assert registry.stand_ins(dpo_recipe().data) == {}
    assert list(registry.checkpoint_stages()) == ["base", "sft", "rl", "dpo"]


# ---------------------------------------------------------------------------------------------
# The stage


@pytest.fixture(scope="module")
def upstream(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("dpo")
    recipe = dpo_recipe()
    reasoning_dir = make_reasoning(recipe, base / "reasoning")
    pretrain_dir = make_pretrain(recipe, reasoning_dir, base / "pretrain")
    inputs = {"pretrain": pretrain_dir, "reasoning": reasoning_dir}
    run_stage("sft", recipe, base / "sft", inputs, sft.run, project=PROJECT)
    inputs = {"sft": base / "sft", "reasoning": reasoning_dir}
    run_stage("rl", recipe, base / "rl", inputs, rl.run, project=PROJECT)
    return base


def _inputs(base: Path, policy: str = "rl") -> dict[str, Path]:
    return {"policy": base / policy, "reasoning": base / "reasoning"}


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_rollout_pairs_train_deterministically(upstream: Path, tmp_path: Path) -> None:
    recipe = dpo_recipe()
    first = run_stage("dpo", recipe, tmp_path / "a", _inputs(upstream), dpo.run, project=PROJECT)
    second = run_stage("dpo", recipe, tmp_path / "b", _inputs(upstream), dpo.run, project=PROJECT)
    assert first["outputs"] == second["outputs"]
    assert first["manifest_sha256"] == second["manifest_sha256"]
    weights = sha256_file(tmp_path / "a" / "model" / "model.safetensors")
    assert weights != sha256_file(upstream / "rl" / "model" / "model.safetensors")

    summary = first["summary"]
    pairs = _rows(tmp_path / "a" / "pairs.jsonl")
    assert summary["policy_stage"] == "rl" and summary["pairs"] == len(pairs) >= 1
    skipped = summary["skipped_no_correct"] + summary["skipped_no_incorrect"]
    assert summary["prompts_sampled"] == DPO["pairs"]["prompts"] == len(pairs) + skipped
    # chosen: graded right (answer after a closed think block) and stopped; rejected: wrong
    records = {r["id"]: r for r in read_split(upstream / "reasoning", "train")}
    with Verifier() as verifier:
        for pair in pairs:
            gold = records[pair["id"]]["answer"]
            right = verifier.score([pair["chosen"], pair["rejected"]], [gold, gold])
            assert (
                right[0] and "</think>" in pair["chosen"] and pair["chosen"].endswith("<|im_end|>")
            )
            assert not (right[1] and "</think>" in pair["rejected"])
            assert pair["chosen_sample"] != pair["rejected_sample"]
            assert isinstance(pair["ref_chosen_logp"], float) and pair["ref_chosen_logp"] < 0

    metrics = _rows(tmp_path / "a" / "metrics.jsonl")
    assert [m["step"] for m in metrics] == list(range(DPO["steps"]))
    keys = {"loss", "chosen_reward", "rejected_reward", "reward_margin", "reward_accuracy", "step"}
    assert all(set(m) == keys for m in metrics)
    # step 0: the policy is the reference, so every implicit reward is 0 and the loss log 2
    assert metrics[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert abs(metrics[0]["reward_margin"]) < 1e-4
    assert metrics[-1]["reward_margin"] > 0 and metrics[-1]["loss"] < metrics[0]["loss"]
    # the checkpoint loads as a model with the policy's tokenizer files
    model, tokenizer = load_checkpoint(tmp_path / "a")
    assert tokenizer.chat_template


def test_dpo_refuses_a_policy_that_is_not_the_step_before_it(upstream: Path, tmp_path) -> None:
    with pytest.raises(StageInputError, match="is a sft stage, but post_training"):
        run_stage(
            "dpo", dpo_recipe(), tmp_path / "x", _inputs(upstream, "sft"), dpo.run, project=PROJECT
        )
    assert not (tmp_path / "x").exists()


def _dataset_recipe(sha256: str = FIXTURE_SHA256, path: str = FIXTURE, loss: str = "ipo"):
    spec = copy.deepcopy(DPO)
    spec.update(loss=loss, steps=3, pairs={"source": "dataset", "path": path, "sha256": sha256})
    return dpo_recipe(spec)


def test_dataset_pairs(upstream: Path, tmp_path: Path) -> None:
    assert sha256_file(PROJECT / FIXTURE) == FIXTURE_SHA256
    done = run_stage(
        "dpo", _dataset_recipe(), tmp_path / "d", _inputs(upstream), dpo.run, project=PROJECT
    )
    pairs = _rows(tmp_path / "d" / "pairs.jsonl")
    assert [p["id"] for p in pairs] == [f"pref-{i}" for i in range(5)]
    assert pairs[0]["file"] == FIXTURE and pairs[0]["line"] == 1 and pairs[0]["lang"] == "en"
    _, tokenizer = load_checkpoint(upstream / "rl")
    assert tokenizer.decode(pairs[0]["chosen_tokens"]) == "<think>2+3=5.</think>5<|im_end|>"
    [pinned] = [i for i in done["inputs"] if i.get("kind") == "preference_dataset"]
    assert pinned == {
        "name": FIXTURE,
        "kind": "preference_dataset",
        "path": FIXTURE,
        "sha256": FIXTURE_SHA256,
    }
    assert done["summary"]["pairs_read"] == 5 and done["summary"]["pairs_source"] == "dataset"
    # trace lists the pinned file among the raw inputs of the dpo checkpoint, with the text
    raw = raw_sources(trace(tmp_path / "d" / "model" / "model.safetensors"))
    assert pinned in raw
    text = format_tree(trace(tmp_path / "d" / "model" / "model.safetensors"))
    assert f"{FIXTURE}: kind=preference_dataset sha256 {FIXTURE_SHA256}" in text

    wrong = "0" * 64
    with pytest.raises(
        StageInputError, match=f"has sha256 {FIXTURE_SHA256}, the recipe pins {wrong}"
    ):
        run_stage(
            "dpo",
            _dataset_recipe(wrong),
            tmp_path / "w",
            _inputs(upstream),
            dpo.run,
            project=PROJECT,
        )
    with pytest.raises(RecipeError, match="dpo.pairs.path: path '../outside.jsonl'"):
        run_stage(
            "dpo",
            _dataset_recipe(path="../outside.jsonl"),
            tmp_path / "o",
            _inputs(upstream),
            dpo.run,
            project=PROJECT,
        )
    short = _dataset_recipe()
    short.data["dpo"]["max_length"] = 20
    with pytest.raises(
        StageInputError, match=f"pair 0 \\({FIXTURE} line 1\\) is .* over dpo.max_length 20"
    ):
        run_stage("dpo", short, tmp_path / "s", _inputs(upstream), dpo.run, project=PROJECT)
    assert not (tmp_path / "w").exists() and not (tmp_path / "o").exists()
    assert not (tmp_path / "s").exists()


def test_dataset_lines_are_checked_by_line(upstream: Path) -> None:
    _, tokenizer = load_checkpoint(upstream / "rl")
    good = (PROJECT / FIXTURE).read_text().splitlines()[0]
    row = json.loads(good)
    bad = {
        "not JSON": "{",
        "needs the keys prompt, chosen, rejected": json.dumps({"prompt": row["prompt"]}),
        r"chosen must be one assistant message": json.dumps(
            {**row, "chosen": [{"role": "user", "content": "x"}]}
        ),
        r"prompt\[0\]: a message is": json.dumps(
            {**row, "prompt": [{"role": "bot", "content": "x"}]}
        ),
        "prompt ends with an assistant turn": json.dumps(
            {**row, "prompt": row["prompt"] + row["chosen"]}
        ),
    }
    for message, line in bad.items():
        with pytest.raises(StageInputError, match=f"pairs.jsonl line 7: .*{message}"):
            dpo_pairs.dataset_pair(tokenizer, "pairs.jsonl", 7, line)


_CHILD = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from align_fixtures import PROJECT
from dpo_fixtures import dpo_recipe
from openrecipe.stage import run_stage
from openrecipe.train import dpo
inputs = {{k: Path(v) for k, v in {inputs!r}.items()}}
run_stage("dpo", dpo_recipe(), Path({out!r}), inputs, dpo.run, project=PROJECT)
"""


def test_killed_and_resumed_matches_unbroken(upstream: Path, tmp_path: Path) -> None:
    """A real SIGKILL once the first periodic checkpoint exists; the rerun resumes from it and
    ends with the bytes of an unbroken run."""
    inputs = _inputs(upstream)
    run_stage("dpo", dpo_recipe(), tmp_path / "unbroken", inputs, dpo.run, project=PROJECT)
    out = tmp_path / "killed"
    code = _CHILD.format(
        tests=str(Path(__file__).parent),
        inputs={k: str(v) for k, v in inputs.items()},
        out=str(out),
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    resume_root = out.parent / f".{out.name}.resume"
    child = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(resume_root.glob("*/step-*")):
        assert child.poll() is None, child.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL
    child.stderr.close()
    assert not (out / "manifest.json").exists()
    found = sorted(resume_root.glob("*/step-*"))[-1]
    rerun = subprocess.run([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE)
    stderr = rerun.stderr.decode()
    assert rerun.returncode == 0, stderr[-2000:]
    assert "dpo: resuming from" in stderr
    assert not resume_root.exists()
    resumed = json.loads((out / "run_info.json").read_text())["resumed"]
    assert resumed["step"] == int(found.name.removeprefix("step-")) >= 1
    for name in ("model/model.safetensors", "metrics.jsonl", "pairs.jsonl", "manifest.json"):
        assert sha256_file(out / name) == sha256_file(tmp_path / "unbroken" / name), name


# ---------------------------------------------------------------------------------------------
# Lineage


def test_certify_counts_dpo_prompts(upstream: Path, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "dpo"
    run_stage("dpo", dpo_recipe(), out, _inputs(upstream), dpo.run, project=PROJECT)
    pairs = _rows(out / "pairs.jsonl")
    per_step = DPO["batch_size"]
    used = [
        pairs[(s * per_step + i) % len(pairs)] for s in range(DPO["steps"]) for i in range(per_step)
    ]
    expect = sum(2 * len(p["prompt_tokens"]) for p in used)
    everything = dpo_tokens(Chain(out), Selector((("lang", "en"),)))
    assert everything["tokens"] == everything["matched_tokens"] == expect
    assert everything["pairs"] == len(pairs) and everything["pairs_trained"] == len(used)
    one = pairs[0]["id"]
    some = dpo_tokens(Chain(out), Selector((), frozenset({one})))
    assert some["matched_tokens"] == sum(
        2 * len(p["prompt_tokens"]) for p in used if p["id"] == one
    )
    assert some["matched_documents"] == 1
    # the certificate has a dpo phase after sft and rl (the fixture's pretrain stage has no
    # pack to replay, so its counter, tested in test_certify_counts, is left out here)
    zero = {"tokens": 0, "matched_tokens": 0, "unknown_tokens": 0, "matched_documents": 0}
    monkeypatch.setattr(certify_module, "pretrain_tokens", lambda chain, selector: zero)
    cert = certify("lang=en", out)
    assert list(cert["training"]) == ["pretrain", "sft", "rl", "dpo"]
    assert cert["training"]["dpo"]["matched_tokens"] == expect
    assert cert["checkpoint"]["stage"] == "dpo" and not cert["absent"]
    assert certify("lang=xx", out)["training"]["dpo"]["matched_tokens"] == 0
    assert "| dpo |" in render_markdown(cert)


def test_certify_counts_dataset_pairs(upstream: Path, tmp_path: Path) -> None:
    out = tmp_path / "dpo"
    run_stage("dpo", _dataset_recipe(), out, _inputs(upstream), dpo.run, project=PROJECT)
    pairs = _rows(out / "pairs.jsonl")
    sizes = [
        2 * len(p["prompt_tokens"]) + len(p["chosen_tokens"]) + len(p["rejected_tokens"])
        for p in pairs
    ]
    used = [
        (s * DPO["batch_size"] + i) % len(pairs) for s in range(3) for i in range(DPO["batch_size"])
    ]
    counted = dpo_tokens(Chain(out), Selector((("lang", "en"),)))
    assert counted["tokens"] == counted["matched_tokens"] == sum(sizes[i] for i in used)
    # a field the dataset's lines do not carry cannot prove absence: unknown
    unknown = dpo_tokens(Chain(out), Selector((("source", "brown"),)))
    assert unknown["unknown_tokens"] == counted["tokens"] and unknown["matched_tokens"] == 0


def test_the_schema_lists_the_registry_steps() -> None:
    import yaml

    schema = yaml.safe_load((PROJECT / "workflow/schemas/recipe.schema.yaml").read_text())
    assert tuple(schema["properties"]["post_training"]["items"]["enum"]) == post_training.STEPS
    checkpoints = schema["properties"]["eval"]["properties"]["checkpoints"]
    assert checkpoints["items"]["enum"] == ["base", *post_training.STEPS]
    assert checkpoints["default"] == ["base", "sft", "rl"]  # existing recipes resolve as before
    assert "default" not in schema["properties"]["post_training"]
    assert "default" not in schema["properties"]["dpo"]


def test_fidelity_shows_the_declared_sequence() -> None:
    from openrecipe import fidelity

    assert fidelity.post_training(dpo_recipe().data) == "SFT -> GRPO -> DPO"
    assert fidelity.post_training({"sft": {"steps": 1}, "rl": {"steps": 1}}) == "SFT -> GRPO"
