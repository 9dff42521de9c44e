"""The sft stage's reported figures recomputed independently (found by ``bench/mutation.py
--only train/sft.py``: ``test_sft.py`` checks them only loosely, through a module fixture whose
work mutmut credits to one test). Runs the stage inside the test: the summary's counts equal a
replay of the sample stream, every metrics row's learning rate is the schedule's, first and last
loss are the first and last rows, metrics.jsonl is canonical JSON lines, and collate's tensors
are integer tensors."""

from __future__ import annotations

import json

import pytest
import torch
from align_fixtures import PROJECT, make_pretrain, make_reasoning, tiny_recipe
from test_sft import SMALL

from openrecipe.data.reasoning import read_split
from openrecipe.hashing import derive_seed
from openrecipe.stage import run_stage
from openrecipe.train import sft
from openrecipe.train.hf_checkpoint import load_checkpoint
from openrecipe.train.sft_samples import encode, sample_stream

# short sequences, so some samples are cut (samples_over_seq_length > 0)
CUT = {**SMALL, "sft": {**SMALL["sft"], "seq_length": 96, "steps": 6, "warmup_fraction": 0.34}}


def test_the_summary_and_metrics_are_what_the_stream_and_schedule_give(tmp_path) -> None:
    recipe = tiny_recipe(CUT)
    reasoning = make_reasoning(recipe, tmp_path / "reasoning")
    pretrain = make_pretrain(recipe, reasoning, tmp_path / "pretrain")
    manifest = run_stage(
        "sft", recipe, tmp_path / "sft", {"pretrain": pretrain, "reasoning": reasoning}, sft.run,
        project=PROJECT,
    )  # fmt: skip
    summary = manifest["summary"]
    cfg = CUT["sft"]
    steps, batch, length = cfg["steps"], cfg["batch_size"], cfg["seq_length"]
    # replay the stream the stage drew from, with the seed the stage derives
    _, tokenizer = load_checkpoint(pretrain)
    stream = sample_stream(
        read_split(reasoning, "train"),
        derive_seed(recipe.data["seed"], "sft"),
        recipe.get("sft.reasoning_off_fraction"),
        recipe.get("sft.truncate_fraction"),
    )
    over = loss_tokens = 0
    modes = {"off": 0, "cut": 0, "full": 0}
    for _ in range(steps):
        samples = []
        for record, mode in (next(stream) for _ in range(batch)):
            modes[mode.split(":")[0]] += 1
            ids, labels = encode(tokenizer, record, mode)
            over += len(ids) > length
            samples.append((ids, labels))
        collated = sft.collate(samples, length, tokenizer.pad_token_id)
        loss_tokens += int((collated["labels"][:, 1:] != -100).sum())
    assert over > 0
    assert summary["steps"] == steps
    assert summary["samples_over_seq_length"] == over
    assert summary["loss_tokens"] == loss_tokens
    assert (summary["samples_reasoning_off"], summary["samples_truncated"]) == (
        modes["off"],
        modes["cut"],
    )
    text = (tmp_path / "sft" / "metrics.jsonl").read_bytes()
    rows = [json.loads(line) for line in text.decode("utf-8").splitlines()]
    assert text == "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode("utf-8")
    warmup = round(cfg["warmup_fraction"] * steps)
    assert warmup == 2
    assert [r["step"] for r in rows] == list(range(steps))
    assert [r["lr"] for r in rows] == [
        cfg["lr"] * sft.warmup_cosine(s, steps, warmup) for s in range(steps)
    ]
    assert all(r["loss"] == round(r["loss"], 6) and r["loss"] != round(r["loss"]) for r in rows)
    assert summary["first_loss"] == rows[0]["loss"] and summary["last_loss"] == rows[-1]["loss"]
    assert len({r["loss"] for r in rows}) == steps  # every step trained: the losses all differ


def test_collate_gives_integer_tensors() -> None:
    batch = sft.collate([([1, 2], [-100, 2])], 4, pad_id=0)
    assert {k: v.dtype for k, v in batch.items()} == dict.fromkeys(batch, torch.long)


@pytest.mark.xfail(
    strict=True,
    reason="bug: a batch whose every reply is cut away at sft.seq_length has no loss token; its "
    "loss is NaN, the NaN gradient reaches the weights, and the stage dies sealing the manifest "
    "with json's 'Out of range float values' instead of refusing sft.seq_length by name "
    "(train/sft.py is in the committed results' code closure: fixed at the next regeneration)",
)
def test_a_seq_length_that_cuts_away_every_reply_is_refused_by_name(tmp_path) -> None:
    short = {**SMALL, "sft": {**SMALL["sft"], "seq_length": 40, "steps": 6}}
    recipe = tiny_recipe(short)
    reasoning = make_reasoning(recipe, tmp_path / "reasoning")
    pretrain = make_pretrain(recipe, reasoning, tmp_path / "pretrain")
    with pytest.raises(Exception, match="sft.seq_length") as raised:
        run_stage(
            "sft", recipe, tmp_path / "sft", {"pretrain": pretrain, "reasoning": reasoning},
            sft.run, project=PROJECT,
        )  # fmt: skip
    assert not isinstance(raised.value, ValueError) or "sft.seq_length" in str(raised.value)
