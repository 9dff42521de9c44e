"""The pretrain stage end to end on a 6-layer toy model: outputs, determinism, exact resume."""

import copy
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

from openrecipe.data.indexed import write_indexed
from openrecipe.errors import RecipeError, StageInputError
from openrecipe.paths import find_project_root
from openrecipe.recipe import Recipe, load_recipe
from openrecipe.stage import run_stage
from openrecipe.train import pretrain
from openrecipe.train.pretrain import SequentialBatches

PROJECT = find_project_root()
SEQ, MBS, GA, STEPS = 32, 2, 2, 6
TEXT = [
    "the cat sat on the mat and the dog ran to the park",
    "def add(a, b):\n    return a + b",
    "two plus three is five; five minus two is three",
] * 20


def _recipe(**pretrain_overrides) -> Recipe:
    base = load_recipe(PROJECT / "recipes/tiny.yaml", project=PROJECT)
    data = copy.deepcopy(base.data)
    shape = {"seq_length": SEQ, "micro_batch_size": MBS, "grad_accum": GA, "steps": STEPS}
    # the tiny recipe's layer pattern at half its width, to keep four training runs in seconds
    data["model"].update(
        hidden_size=32, head_dim=8, intermediate_size=64, mamba_head_dim=8, ssm_state_size=8
    )
    if "nvfp4" in pretrain_overrides:  # the schema fills the switches a recipe leaves out
        pretrain_overrides["nvfp4"] = {**data["pretrain"]["nvfp4"], **pretrain_overrides["nvfp4"]}
    data["pretrain"].update({**shape, "log_every": 2, "checkpoint_every": 2, **pretrain_overrides})
    return Recipe(data=data, files=base.files, origins=base.origins)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("inputs")
    recipe = _recipe()

    def tokenizer_body(ctx):
        tok = Tokenizer(models.BPE(unk_token=None))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        trainer = trainers.BpeTrainer(
            vocab_size=300,
            special_tokens=["<pad>", "<s>", "</s>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
        tok.train_from_iterator(TEXT, trainer)
        PreTrainedTokenizerFast(
            tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
        ).save_pretrained(ctx.out)

    def pack_body(ctx):
        tok = AutoTokenizer.from_pretrained(root / "tokenizer")
        ids = []
        for text in TEXT * 4:
            ids += [tok.bos_token_id, *tok(text)["input_ids"], tok.eos_token_id]
        n = STEPS * MBS * GA
        rows = np.array(ids[: n * (SEQ + 1)], dtype=np.uint16).reshape(n, SEQ + 1)
        write_indexed(ctx.out / "train", rows, np.uint16)
        phases = ["diversity"] * (n - 4) + ["quality"] * 4
        (ctx.out / "sidecar.jsonl").write_text(
            "".join(json.dumps({"phase": p}) + "\n" for p in phases)
        )

    run_stage("tokenizer", recipe, root / "tokenizer", {}, tokenizer_body, project=PROJECT)
    run_stage("pack", recipe, root / "pack", {}, pack_body, project=PROJECT)
    return {"pack": root / "pack", "tokenizer": root / "tokenizer"}


def _pretrain(recipe: Recipe, inputs: dict[str, Path], out: Path) -> dict:
    return run_stage("pretrain", recipe, out, inputs, pretrain.run, project=PROJECT)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def unbroken(inputs, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("unbroken") / "pretrain"
    return out, _pretrain(_recipe(), inputs, out)


def test_outputs_layout_and_summary(unbroken):
    out, manifest = unbroken
    files = set(manifest["outputs"])
    assert {
        "model/model.safetensors",
        "model/config.json",
        "model/tokenizer.json",
        "metrics.jsonl",
        "params.json",
        "checkpoint/model.safetensors",
        "checkpoint/optimizer.safetensors",
        "checkpoint/rng.safetensors",
        "checkpoint/state.json",
    } <= files
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4, 6]
    assert rows[-1]["tokens"] == STEPS * MBS * GA * SEQ
    assert rows[-1]["lr"] == pytest.approx(3.0e-4)  # last step decays to min_lr
    summary = manifest["summary"]
    assert summary["final_loss"] < summary["first_loss"]
    assert summary["tokens_by_phase"] == {
        "diversity": (STEPS * MBS * GA - 4) * SEQ,
        "quality": 4 * SEQ,
    }
    assert json.loads((out / "params.json").read_text())["total"] == summary["params"]["total"]
    assert not (out.parent / ".pretrain.resume").exists()


def test_model_dir_loads_with_auto_classes(unbroken):
    out, manifest = unbroken
    model = AutoModelForCausalLM.from_pretrained(out / "model")
    tok = AutoTokenizer.from_pretrained(out / "model")
    ids = tok("the cat sat", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    assert logits.shape == (1, ids.shape[1], len(tok))
    assert model.num_parameters() == manifest["summary"]["params"]["total"]


def test_crash_and_resume_gives_identical_outputs(unbroken, inputs, tmp_path, monkeypatch):
    out = tmp_path / "pretrain"
    real_lr = pretrain.wsd_lr

    def crash_at_step_3(step, *args):
        if step == 3:  # after the step-2 checkpoint, with step 2 already trained past it
            raise KeyboardInterrupt("simulated kill")
        return real_lr(step, *args)

    monkeypatch.setattr(pretrain, "wsd_lr", crash_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        _pretrain(_recipe(), inputs, out)
    resume = out.parent / ".pretrain.resume"
    assert [p.name for p in resume.glob("*/step-*")] == ["step-00000002"]
    assert not out.exists()

    trained = []

    def record(step, *args):
        trained.append(step)
        return real_lr(step, *args)

    monkeypatch.setattr(pretrain, "wsd_lr", record)
    manifest = _pretrain(_recipe(), inputs, out)
    assert trained == list(range(2, STEPS))  # resumed after step 2, not restarted
    assert manifest["outputs"] == unbroken[1]["outputs"]
    assert _sha(out / "model/model.safetensors") == _sha(unbroken[0] / "model/model.safetensors")
    assert not resume.exists()


def test_rerun_without_periodic_checkpoints_is_byte_identical(unbroken, inputs, tmp_path):
    # a second run in the same process that also skips the periodic saves: nothing volatile in
    # any output file, and checkpointing does not perturb training
    manifest = _pretrain(_recipe(checkpoint_every=0), inputs, tmp_path / "pretrain")
    assert manifest["outputs"] == unbroken[1]["outputs"]


# "M-M*M-": Mamba in_proj/out_proj, MLP up/down_proj, attention q/k/v/o_proj
LINEARS = {"M": 2, "-": 2, "*": 4}


@pytest.mark.parametrize(
    ("precision", "first", "last", "pattern"),
    [("fp8", 0, 0, "M-M*M-"), ("nvfp4", 1, 1, "-M*M")],
)
def test_low_precision_swaps_linears_and_is_deterministic(
    inputs, tmp_path, precision, first, last, pattern
):
    recipe = _recipe(
        precision=precision, bf16_first_layers=first, bf16_last_layers=last, checkpoint_every=0
    )
    one = _pretrain(recipe, inputs, tmp_path / "one")
    two = _pretrain(recipe, inputs, tmp_path / "two")
    summary = one["summary"]
    assert summary["precision"] == precision
    assert summary["precision_linears"] == sum(LINEARS[c] for c in pattern)
    assert summary["final_loss"] < summary["first_loss"]
    assert one["outputs"] == two["outputs"]
    assert "checkpoint/precision_rng.safetensors" in one["outputs"]


def test_nvfp4_switches_reach_the_layers(inputs, tmp_path, unbroken):
    switches = {"disable_rht": True, "disable_stochastic_rounding": True}
    default = _pretrain(_recipe(precision="nvfp4", checkpoint_every=0), inputs, tmp_path / "a")
    plain = _pretrain(
        _recipe(precision="nvfp4", nvfp4=switches, checkpoint_every=0), inputs, tmp_path / "b"
    )
    assert plain["summary"]["nvfp4"] == {**switches, "disable_2d_quantization": False}
    weights = "model/model.safetensors"
    hashes = {m["outputs"][weights]["sha256"] for m in (default, plain, unbroken[1])}
    assert len(hashes) == 3  # nvfp4 differs from bf16, and the switches change the numerics


def test_cuda_without_a_device_is_a_recipe_error(inputs, tmp_path, monkeypatch):
    recipe = _recipe()
    recipe.data["resources"]["device"] = "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RecipeError, match="resources.device: cuda, but this torch"):
        _pretrain(recipe, inputs, tmp_path / "pretrain")


def test_loader_is_sequential_and_checks_fingerprint():
    data = np.arange(10 * 5).reshape(10, 5)
    loader = SequentialBatches(data, seq_length=4, micro_batch=2, grad_accum=2, fingerprint="a")
    loader.next_step()
    second = loader.next_step()
    assert [b[:, 0].tolist() for b in second] == [[20, 25], [30, 35]]
    assert loader.state() == {"position": 8, "fingerprint": "a"}
    other = SequentialBatches(data, seq_length=4, micro_batch=2, grad_accum=2, fingerprint="b")
    with pytest.raises(StageInputError, match="other data"):
        other.restore(loader.state())


def test_loader_refuses_wrong_sequence_length():
    loader = SequentialBatches(
        np.zeros((4, 7)), seq_length=4, micro_batch=2, grad_accum=1, fingerprint="a"
    )
    with pytest.raises(StageInputError, match="expected \\(5,\\)"):
        loader.next_step()
