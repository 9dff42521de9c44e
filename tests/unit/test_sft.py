"""SFT: chat encoding and loss masks, the sample mix, the schedule, and byte-identical reruns."""

from __future__ import annotations

import json

import pytest
from align_fixtures import PROJECT, make_pretrain, make_reasoning, tiny_recipe, train_tokenizer

from openrecipe.data import chat
from openrecipe.hashing import sha256_file
from openrecipe.stage import run_stage
from openrecipe.train import sft, sft_samples

SMALL = {
    # one thread: tiny kernels gain nothing from two, and two thrash on a busy CI box
    "resources": {"threads": 1},
    "sft": {
        "steps": 8,
        "lr": 2e-3,
        "batch_size": 4,
        "seq_length": 160,
        "data": {"n_train": 80, "n_heldout": 8, "min_steps": 1, "max_steps": 2, "max_value": 20},
    },
}


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    base = tmp_path_factory.mktemp("align")
    recipe = tiny_recipe(SMALL)
    reasoning_dir = make_reasoning(recipe, base / "reasoning")
    return recipe, reasoning_dir, make_pretrain(recipe, reasoning_dir, base / "pretrain")


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(["Jo has 7 stickers. Jo uses 2 stickers. 7-2=5. 5"] * 20, vocab_size=300)


def test_loss_only_on_the_assistant_reply(tokenizer) -> None:
    ids, labels = chat.encode_sft(tokenizer, "Jo has 7 stickers.", "7-2=5.", "5")
    trained = [i for i, label in zip(ids, labels, strict=True) if label != -100]
    assert tokenizer.decode(trained) == "<think>7-2=5.</think>5<|im_end|>"
    prompt = chat.encode_prompt(tokenizer, "Jo has 7 stickers.")
    assert ids[: len(prompt)] == prompt and all(label == -100 for label in labels[: len(prompt)])
    off_ids, off_labels = chat.encode_sft(
        tokenizer, "Jo has 7 stickers.", None, "5", reasoning=False
    )
    assert chat.REASONING_OFF in tokenizer.decode(off_ids)
    assert tokenizer.decode(
        [i for i, lab in zip(off_ids, off_labels, strict=True) if lab != -100]
    ) == ("<think></think>5<|im_end|>")


def test_sample_stream_mix_is_seeded() -> None:
    records = [
        {"question": f"q{i}", "thinking": f"{i}+1={i + 1}.", "answer": str(i + 1)}
        for i in range(50)
    ]

    def draw(seed: int) -> list:
        stream = sft_samples.sample_stream(records, seed, 0.2, 0.1)
        return [next(stream) for _ in range(1000)]

    first = draw(1)
    assert first == draw(1) and first != draw(2)
    modes = [mode.split(":")[0] for _, mode in first]
    assert 150 < modes.count("off") < 250 and 60 < modes.count("cut") < 140
    for record, mode in first:
        if mode.startswith("cut:"):
            assert record["thinking"].startswith(mode[4:]) and len(mode[4:]) < len(
                record["thinking"]
            )
    # each epoch visits every record once
    assert sorted(r["question"] for r, _ in first[:50]) == sorted(r["question"] for r in records)


def test_warmup_then_cosine() -> None:
    values = [sft.warmup_cosine(s, 10, 2) for s in range(10)]
    assert values[:3] == [0.5, 1.0, 1.0]
    assert all(a >= b for a, b in zip(values[1:], values[2:], strict=False))
    assert values[-1] < 0.05


def test_collate_pads_right_and_cuts() -> None:
    batch = sft.collate([([1, 2, 3], [-100, 2, 3]), ([4] * 10, [4] * 10)], 6, pad_id=0)
    assert batch["input_ids"].tolist()[0] == [1, 2, 3, 0, 0, 0]
    assert batch["labels"].tolist()[0] == [-100, 2, 3, -100, -100, -100]
    assert batch["attention_mask"].sum().item() == 3 + 6


def test_stage_trains_and_reruns_byte_identical(upstream, tmp_path) -> None:
    recipe, reasoning_dir, pretrain_dir = upstream
    inputs = {"pretrain": pretrain_dir, "reasoning": reasoning_dir}
    first = run_stage("sft", recipe, tmp_path / "a", inputs, sft.run, project=PROJECT)
    second = run_stage("sft", recipe, tmp_path / "b", inputs, sft.run, project=PROJECT)
    assert first["outputs"] == second["outputs"]
    assert "model/model.safetensors" in first["outputs"]
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        assert sha256_file(tmp_path / "a" / "model" / name) == sha256_file(
            pretrain_dir / "model" / name
        )
    rows = [
        json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["step"] for r in rows] == list(range(8)) and sorted(rows[0]) == ["loss", "lr", "step"]
    summary = first["summary"]
    assert summary["last_loss"] < summary["first_loss"]
    assert (
        summary["samples_full"] + summary["samples_reasoning_off"] + summary["samples_truncated"]
        == 32
    )
    assert sha256_file(tmp_path / "a" / "model" / "model.safetensors") != sha256_file(
        pretrain_dir / "model" / "model.safetensors"
    )
