"""The tokenizer stage: fixed special-token ids, single-token markers, offline reload,
byte-identical retraining and clear errors on a bad blend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openrecipe.data import tokenizer as stage
from openrecipe.data.chat import CHAT_TEMPLATE
from openrecipe.errors import StageInputError
from openrecipe.stage import StageContext

SPECIALS = ["<unk>", "<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]


def make_blend(root: Path) -> Path:
    """A two-source blend: prose and arithmetic with reasoning markers in the text."""
    streams = root / "blend" / "streams"
    streams.mkdir(parents=True)
    prose = [
        f"The {w} walked to the market on day {i} and bought {i % 7} apples."
        for i, w in enumerate(["farmer", "baker", "teacher", "sailor"] * 10)
    ]
    math = [
        f"What is {a} + {a + 3}? <think>{a} + {a + 3} = {2 * a + 3}</think> {2 * a + 3}"
        for a in range(30)
    ]
    for source, texts in (("prose", prose), ("math", math)):
        with open(streams / f"{source}.jsonl", "w", encoding="utf-8") as handle:
            for i, text in enumerate(texts):
                handle.write(
                    json.dumps(
                        {
                            "id": f"{source}/{i}",
                            "source": source,
                            "lang": "en",
                            "license": "CC0-1.0",
                            "url_or_path": "x",
                            "text": text,
                        }
                    )
                    + "\n"
                )
    return root / "blend"


def context(blend: Path, out: Path, specials: list[str] = SPECIALS) -> StageContext:
    out.mkdir(parents=True)
    config = {
        "seed": 1,
        "tokenizer": {"vocab_size": 320, "min_frequency": 2, "special_tokens": specials},
    }
    return StageContext("tokenizer", None, config, "", 0, {"blend": blend}, out, out)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("tok")
    summary = stage.run(context(make_blend(root), root / "out"))
    return root, summary


def test_special_tokens_have_fixed_ids_and_stay_single_tokens(trained):
    from transformers import AutoTokenizer

    root, summary = trained
    tok = AutoTokenizer.from_pretrained(str(root / "out"), local_files_only=True)
    assert [tok.convert_tokens_to_ids(t) for t in SPECIALS] == list(range(len(SPECIALS)))
    assert (tok.unk_token_id, tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (0, 1, 2, 3)
    assert tok("<think>", add_special_tokens=False).input_ids == [6]
    ids = tok("a <think>b</think> <|im_end|>", add_special_tokens=False).input_ids
    assert {6, 7, 5} <= set(ids)
    assert summary["vocab_size"] == len(tok) == 320
    assert summary["special_tokens"]["</think>"] == 7


def test_byte_level_round_trip_and_chat_template(trained):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(trained[0] / "out"), local_files_only=True)
    text = "Zürich: naïve café — 東京 \t\n x=1"  # bytes never seen in training
    ids = tok(text, add_special_tokens=False).input_ids
    assert tok.unk_token_id not in ids
    assert tok.decode(ids) == text
    assert tok.chat_template == CHAT_TEMPLATE
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert prompt == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_summary_counts_training_text(trained):
    root, summary = trained
    texts = [
        json.loads(line)["text"]
        for p in sorted((root / "blend" / "streams").glob("*.jsonl"))
        for line in p.read_text().splitlines()
    ]
    assert summary["training_docs"] == len(texts) == 70
    assert summary["training_docs_per_source"] == {"math": 30, "prose": 40}
    assert summary["training_chars"] == sum(map(len, texts))
    assert summary["chars_per_token"] == round(
        summary["training_chars"] / summary["training_tokens"], 4
    )
    assert summary["chars_per_token"] > 1.5  # BPE merges actually compress


def test_retraining_is_byte_identical(trained, tmp_path):
    root, summary = trained
    again = stage.run(context(root / "blend", tmp_path / "out"))
    assert again == summary
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        assert (tmp_path / "out" / name).read_bytes() == (root / "out" / name).read_bytes()


def test_special_token_roles_are_enforced(trained, tmp_path):
    wrong = ["<s>", "<unk>", "</s>", "<pad>"]
    with pytest.raises(StageInputError, match="must start with"):
        stage.run(context(trained[0] / "blend", tmp_path / "out", wrong))


def test_malformed_stream_line_is_named(tmp_path):
    blend = make_blend(tmp_path)
    with open(blend / "streams" / "prose.jsonl", "a", encoding="utf-8") as handle:
        handle.write("{not json\n")
    with pytest.raises(StageInputError, match=r"prose\.jsonl:41"):
        stage.run(context(blend, tmp_path / "out"))


def test_missing_streams_are_refused(tmp_path):
    (tmp_path / "blend").mkdir()
    with pytest.raises(StageInputError, match="no <source>.jsonl streams"):
        stage.run(context(tmp_path / "blend", tmp_path / "out"))
