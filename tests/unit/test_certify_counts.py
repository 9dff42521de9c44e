"""certify's token counters against what really trained: per-source pretraining tokens on a
small real pack (tokenizer and pack stages run for real), and the SFT and RL counters on a
real SFT run and a real GRPO run."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from align_fixtures import PROJECT, make_pretrain, make_reasoning, tiny_recipe

from openrecipe.data import chat, pack, tokenizer
from openrecipe.data.indexed import IndexedDataset
from openrecipe.data.reasoning import SOURCE, read_split
from openrecipe.lineage.certify import Chain, Selector, certify, rl_tokens, sft_tokens
from openrecipe.recipe import load_recipe
from openrecipe.stage import StageContext, run_stage
from openrecipe.train import hf_checkpoint, rl, sft, sft_samples

SEQ = 15  # pretrain.seq_length: sequences of 16 tokens
STEPS, MBS, ACCUM = 3, 2, 2  # 12 of the pack's 20 sequences train
TEXTS = {
    "alpha": [" ".join(f"river stone {i} light {j}" for j in range(6)) for i in range(8)],
    "beta": [f"Winter market number {i}, silver window." for i in range(12)],
}
BUDGETS = {"alpha": 200, "beta": 120}  # 320 tokens = 20 sequences


def blend_body(ctx: StageContext) -> dict:
    """Streams and a plan in the form the pack stage reads (one phase, two sources)."""
    (ctx.out / "streams").mkdir()
    for source, texts in TEXTS.items():
        with open(ctx.out / "streams" / f"{source}.jsonl", "w", encoding="utf-8") as handle:
            for i, text in enumerate(texts):
                doc = {"id": f"{source}/{i}", "source": source, "lang": "en", "text": text}
                handle.write(json.dumps({**doc, "license": "CC0-1.0"}, sort_keys=True) + "\n")
    total = sum(BUDGETS.values())
    plan = {
        "total_tokens": total,
        "phases": [
            {
                "name": "only",
                "fraction": 1.0,
                "token_budget": total,
                "sources": {
                    s: {"weight": b / total, "token_budget": b} for s, b in BUDGETS.items()
                },
            }
        ],
        "sources": {},
    }
    (ctx.out / "plan.json").write_text(json.dumps(plan, sort_keys=True))
    return {}


def pretrain_body(ctx: StageContext) -> dict:
    """A pretrain stage that ran to its end: only the loader position certify checks."""
    consumed = ctx.cfg("pretrain.steps") * MBS * ACCUM
    (ctx.out / "checkpoint").mkdir()
    (ctx.out / "checkpoint" / "state.json").write_text(
        json.dumps({"loader": {"position": consumed}})
    )
    return {}


@pytest.fixture
def packed_run(project: Path) -> Path:
    override = project / "recipes" / "overrides" / "certify.yaml"
    override.parent.mkdir(exist_ok=True)
    override.write_text(
        f"pretrain: {{steps: {STEPS}, micro_batch_size: {MBS}, grad_accum: {ACCUM}, "
        f"seq_length: {SEQ}}}\ntokenizer: {{vocab_size: 300}}\n"
    )
    recipe = load_recipe(project / "recipes" / "tiny.yaml", [override], project=project)
    run = project / "runs" / "certify"
    run_stage("blend", recipe, run / "blend", {}, blend_body, project=project)
    inputs = {"blend": run / "blend"}
    run_stage("tokenizer", recipe, run / "tokenizer", inputs, tokenizer.run, project=project)
    inputs["tokenizer"] = run / "tokenizer"
    run_stage("pack", recipe, run / "pack", inputs, pack.run, project=project)
    run_stage(
        "pretrain", recipe, run / "pretrain", {"pack": run / "pack"}, pretrain_body, project=project
    )
    return run


def test_pretrain_tokens_by_source_match_the_packed_data(packed_run: Path) -> None:
    from transformers import AutoTokenizer

    data = IndexedDataset(packed_run / "pack" / "train")
    consumed = STEPS * MBS * ACCUM
    assert len(data) == sum(BUDGETS.values()) // (SEQ + 1) > consumed
    tok = AutoTokenizer.from_pretrained(str(packed_run / "tokenizer"), local_files_only=True)
    docs = {
        f"{source}/{i}": tok(text, add_special_tokens=False).input_ids + [tok.eos_token_id]
        for source, texts in TEXTS.items()
        for i, text in enumerate(texts)
    }
    # Recount from train.bin: every trained sequence is rebuilt from the documents its sidecar
    # names, token for token, and each document's tokens counted for its source.
    sidecar = (packed_run / "pack" / "sidecar.jsonl").read_text().splitlines()
    expect: Counter[str] = Counter()
    for index in range(consumed):
        segments = json.loads(sidecar[index])["segments"]
        rebuilt = [t for doc, _, start, n in segments for t in docs[doc][start : start + n]]
        assert rebuilt == data[index].tolist()
        for doc, _, start, n in segments:
            expect[doc.split("/")[0]] += len(docs[doc][start : start + n])
    assert sum(expect.values()) == consumed * (SEQ + 1)
    assert min(expect.values()) > len(TEXTS["beta"])  # more tokens than segments per source

    cert = certify("source=beta", packed_run / "pretrain")
    counts = cert["training"]["pretrain"]
    assert counts["tokens_by_source"] == dict(sorted(expect.items()))
    assert counts["tokens"] == consumed * (SEQ + 1) == int(data.sequence_lengths[:consumed].sum())
    assert counts["matched_tokens"] == cert["matched_tokens"] == expect["beta"]
    assert certify("source=alpha", packed_run / "pretrain")["matched_tokens"] == expect["alpha"]


# ---------------------------------------------------------------------------------------------
# SFT and RL: real (tiny) runs, so the counters replay exactly what the stages trained on.

ALIGN = {
    "resources": {"threads": 1},
    "sft": {
        "steps": 3,
        "batch_size": 4,
        "seq_length": 100,  # shorter than some samples: the collate cut is exercised
        "truncate_fraction": 0.3,
        "reasoning_off_fraction": 0.3,
        "data": {"n_train": 24, "n_heldout": 4, "min_steps": 1, "max_steps": 2, "max_value": 9},
    },
    "rl": {
        "steps": 2,
        "prompts_per_step": 3,
        "generations_per_prompt": 2,
        "max_new_tokens": 6,
    },
}


@pytest.fixture(scope="module")
def aligned(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("certify-align")
    recipe = tiny_recipe(ALIGN)
    reasoning_dir = make_reasoning(recipe, base / "reasoning")
    pretrain_dir = make_pretrain(recipe, reasoning_dir, base / "pretrain")
    inputs = {"pretrain": pretrain_dir, "reasoning": reasoning_dir}
    run_stage("sft", recipe, base / "sft", inputs, sft.run, project=PROJECT)
    inputs = {"sft": base / "sft", "reasoning": reasoning_dir}
    run_stage("rl", recipe, base / "rl", inputs, rl.run, project=PROJECT)
    return base / "sft", base / "rl"


def _sft_trained_tokens(sft_dir: Path) -> list[tuple[str, int]]:
    """(record id, tokens the model saw) per sample, from the SFT stage's own code: its sample
    stream and its collate (attention-mask ones per row)."""
    manifest = json.loads((sft_dir / "manifest.json").read_text())
    view = manifest["config_view"]
    stage_input = {i["name"]: Path(i["path"]) for i in manifest["inputs"]}
    _, tok = hf_checkpoint.load_checkpoint(stage_input["pretrain"])
    records = read_split(stage_input["reasoning"], "train")
    stream = sft_samples.sample_stream(
        records, manifest["seed"], view["sft.reasoning_off_fraction"], view["sft.truncate_fraction"]
    )
    out = []
    for _ in range(view["sft.steps"]):
        batch = [next(stream) for _ in range(view["sft.batch_size"])]
        encoded = [sft_samples.encode(tok, record, mode) for record, mode in batch]
        mask = sft.collate(encoded, view["sft.seq_length"], tok.pad_token_id)["attention_mask"]
        out += [(r["id"], int(m.sum())) for (r, _), m in zip(batch, mask, strict=True)]
    return out


def test_sft_counter_counts_each_samples_trained_tokens(aligned) -> None:
    sft_dir, _ = aligned
    trained = _sft_trained_tokens(sft_dir)
    assert len(trained) == 3 * 4
    assert len({n for _, n in trained}) > 1 and any(n == 100 for _, n in trained)  # some cut
    everything = sft_tokens(Chain(sft_dir), Selector((("source", SOURCE),)))
    total = sum(n for _, n in trained)
    assert everything["samples"] == 12
    assert everything["tokens"] == everything["matched_tokens"] == total
    assert everything["unknown_tokens"] == 0
    assert everything["matched_documents"] == len({i for i, _ in trained})
    picked = {trained[0][0], trained[5][0]}
    some = sft_tokens(Chain(sft_dir), Selector((), frozenset(picked)))
    assert some["tokens"] == total
    assert some["matched_tokens"] == sum(n for i, n in trained if i in picked)
    assert some["matched_documents"] == 2
    none = sft_tokens(Chain(sft_dir), Selector((("source", "elsewhere"),)))
    assert none["matched_tokens"] == 0 and none["tokens"] == total


def test_rl_counter_counts_prompt_tokens_per_generation(aligned) -> None:
    _, rl_dir = aligned
    manifest = json.loads((rl_dir / "manifest.json").read_text())
    stage_input = {i["name"]: Path(i["path"]) for i in manifest["inputs"]}
    _, tok = hf_checkpoint.load_checkpoint(stage_input["sft"])
    records = read_split(stage_input["reasoning"], "train")
    # rl.run's prompts: the first steps x prompts_per_step questions in file order
    prompts = [(r["id"], chat.encode_prompt(tok, r["question"])) for r in records[:6]]
    expect = {i: 2 * len(p) for i, p in prompts}  # each prompt is run once per generation
    assert min(expect.values()) > 2 * 10
    everything = rl_tokens(Chain(rl_dir), Selector((("source", SOURCE),)))
    assert everything["prompts"] == 6 and everything["generations_per_prompt"] == 2
    assert everything["matched_documents"] == 6  # six distinct questions
    assert everything["note"] == (
        "prompt tokens x generations; completions are model samples, not data"
    )
    assert everything["tokens"] == everything["matched_tokens"] == sum(expect.values())
    one = records[4]["id"]
    some = rl_tokens(Chain(rl_dir), Selector((), frozenset({one, records[-1]["id"]})))
    assert some["matched_tokens"] == expect[one] and some["matched_documents"] == 1
    # the policy's own rollouts (completions) are not data and are not counted
    assert some["tokens"] == sum(expect.values())


def test_rl_counter_refuses_a_run_whose_rollouts_do_not_match_its_config(aligned) -> None:
    """A sealed rl manifest whose summary counts a rollout more than steps x prompts x
    generations: the counts cannot be attributed, and the error names that manifest."""
    import shutil

    from openrecipe.lineage.certify import LineageError
    from openrecipe.manifest import seal, write_json_atomic

    _, rl_dir = aligned
    altered = rl_dir.with_name("rl-altered")
    shutil.copytree(rl_dir, altered)
    manifest = json.loads((altered / "manifest.json").read_text())
    manifest["summary"]["rollouts"] += 1
    write_json_atomic(altered / "manifest.json", seal(manifest))
    with pytest.raises(LineageError, match=r"rl-altered/manifest\.json: rollouts do not match"):
        rl_tokens(Chain(altered), Selector((("source", SOURCE),)))


def test_sft_counter_refuses_a_replay_that_differs_from_the_run(aligned) -> None:
    """An SFT manifest (sealed) whose recorded loss tokens the replay does not give: the
    tokens cannot be attributed, and the error names the manifest and both counts."""
    import shutil

    from openrecipe.lineage.certify import LineageError
    from openrecipe.manifest import seal, write_json_atomic

    sft_dir, _ = aligned
    replay = sft_tokens(Chain(sft_dir), Selector((("source", SOURCE),)))
    assert replay["replay_checked"] == [
        "loss_tokens",
        "samples_full",
        "samples_reasoning_off",
        "samples_truncated",
    ]
    altered = sft_dir.with_name("sft-altered")
    shutil.copytree(sft_dir, altered)
    manifest = json.loads((altered / "manifest.json").read_text())
    manifest["summary"]["loss_tokens"] += 1
    write_json_atomic(altered / "manifest.json", seal(manifest))
    with pytest.raises(
        LineageError,
        match=r"sft-altered/manifest\.json: replaying the SFT sample stream gives .*; the "
        r"training code changed since, so the tokens cannot be attributed exactly",
    ):
        sft_tokens(Chain(altered), Selector((("source", SOURCE),)))
