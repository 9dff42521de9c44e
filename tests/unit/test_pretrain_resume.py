"""Pretraining survives a real SIGKILL: ``python -m openrecipe pretrain`` is killed once its first
periodic checkpoint exists, rerun to completion, and ends with the same weights as an unbroken run,
in bf16 and in emulated NVFP4 (whose stochastic-rounding generators are part of the checkpoint).
Before that rerun, the same checkpoint with one byte flipped is refused (exit 2, naming the file and
both hashes); the rerun records in ``run_info.json`` the step and checkpoint sha256 it resumed from.

The unbroken run is in-process; the killed one and its rerun go through the CLI, which only
writes inside a project, so the module builds a throwaway one in ``tmp_path``: a Snakefile, the
schema, ``recipes/tiny.yaml`` and per-precision overrides that shrink the run."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from openrecipe.data.indexed import write_indexed
from openrecipe.hashing import sha256_file
from openrecipe.paths import SCHEMA_RELPATH, find_project_root
from openrecipe.recipe import load_recipe
from openrecipe.stage import run_stage
from openrecipe.train import pretrain

SOURCE = find_project_root(Path(__file__).parent)
SEQ, MBS, STEPS, EVERY = 32, 2, 40, 4
TEXT = [
    "the cat sat on the mat and the dog ran to the park",
    "def add(a, b):\n    return a + b",
    "two plus three is five; five minus two is three",
] * 20
OVERRIDE = {
    "model": {
        "hidden_size": 32,
        "head_dim": 8,
        "intermediate_size": 64,
        "mamba_head_dim": 8,
        "ssm_state_size": 8,
    },
    "pretrain": {
        "seq_length": SEQ,
        "micro_batch_size": MBS,
        "steps": STEPS,
        "log_every": 10,
        "checkpoint_every": EVERY,
    },
    "resources": {"threads": 1},
}
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A minimal project holding the recipe and, under runs/, real tokenizer and pack stages."""
    root = tmp_path_factory.mktemp("project")
    (root / "Snakefile").write_text("")
    (root / SCHEMA_RELPATH).parent.mkdir(parents=True)
    shutil.copy(SOURCE / SCHEMA_RELPATH, root / SCHEMA_RELPATH)
    (root / "recipes").mkdir()
    shutil.copy(SOURCE / "recipes" / "tiny.yaml", root / "recipes" / "tiny.yaml")
    for precision in ("bf16", "nvfp4"):
        override = {**OVERRIDE, "pretrain": {**OVERRIDE["pretrain"], "precision": precision}}
        # JSON is YAML: no extra writer needed
        (root / "recipes" / f"{precision}.yaml").write_text(json.dumps(override))
    recipe = load_recipe(root / "recipes" / "tiny.yaml", [root / "recipes/bf16.yaml"], root)

    def tokenizer_body(ctx) -> None:
        tok = Tokenizer(models.BPE(unk_token=None))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        trainer = trainers.BpeTrainer(
            vocab_size=300,
            special_tokens=["<pad>", "<s>", "</s>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(TEXT, trainer)
        PreTrainedTokenizerFast(
            tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
        ).save_pretrained(ctx.out)

    def pack_body(ctx) -> None:
        tok = AutoTokenizer.from_pretrained(root / "runs" / "tokenizer")
        ids: list[int] = []
        while len(ids) < STEPS * MBS * (SEQ + 1):
            for text in TEXT:
                ids += [tok.bos_token_id, *tok(text)["input_ids"], tok.eos_token_id]
        n = STEPS * MBS
        rows = np.array(ids[: n * (SEQ + 1)], dtype=np.uint16).reshape(n, SEQ + 1)
        write_indexed(ctx.out / "train", rows, np.uint16)
        (ctx.out / "sidecar.jsonl").write_text('{"phase": "diversity"}\n' * n)

    run_stage("tokenizer", recipe, root / "runs" / "tokenizer", {}, tokenizer_body, project=root)
    run_stage("pack", recipe, root / "runs" / "pack", {}, pack_body, project=root)
    return root


def _command(project: Path, precision: str, out: str) -> list[str]:
    return [
        *(sys.executable, "-m", "openrecipe", "pretrain"),
        *("--recipe", "recipes/tiny.yaml", "--override", f"recipes/{precision}.yaml"),
        *("--out", out, "--input", "pack=runs/pack", "--input", "tokenizer=runs/tokenizer"),
    ]


def _run(project: Path, precision: str, out: str) -> str:
    done = subprocess.run(
        _command(project, precision, out), cwd=project, env=ENV, stderr=subprocess.PIPE
    )
    stderr = done.stderr.decode()
    assert done.returncode == 0, stderr[-2000:]
    return stderr


@pytest.mark.parametrize("precision", ["bf16", "nvfp4"])
def test_sigkill_and_resume_matches_unbroken(project, precision) -> None:
    # the unbroken run in this process (saves a torch import): also checks that the weights do
    # not depend on the process they were trained in
    recipe = load_recipe(
        project / "recipes" / "tiny.yaml", [project / f"recipes/{precision}.yaml"], project
    )
    unbroken = project / "runs" / f"{precision}-unbroken"
    inputs = {"pack": project / "runs" / "pack", "tokenizer": project / "runs" / "tokenizer"}
    run_stage("pretrain", recipe, unbroken, inputs, pretrain.run, project=project)

    out = project / "runs" / "tiny" / f"{precision}-killed"  # --out: inside the run directory
    resume_root = out.parent / f".{out.name}.resume"
    child = subprocess.Popen(
        _command(project, precision, str(out.relative_to(project))),
        cwd=project,
        env=ENV,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while not list(resume_root.glob("*/step-*")):
        assert child.poll() is None, child.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "no checkpoint within 60 s"
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL, "finished before the kill: make the run longer"
    child.stderr.close()
    assert not out.exists()  # killed mid-run: no output directory at all
    assert [p.name for p in out.parent.glob(f".{out.name}.tmp-*")] == [
        f".{out.name}.tmp-{child.pid}"
    ]
    found = sorted(resume_root.glob("*/step-*"))[-1]  # the newest, as a rerun picks
    recorded = json.loads((found / "checksums.json").read_text())["checkpoint_sha256"]

    # one flipped byte in the checkpoint: refused (exit 2, file and both hashes named), no output
    weights = found / "model.safetensors"
    clean = weights.read_bytes()
    weights.write_bytes(clean[:-1] + bytes([clean[-1] ^ 0x01]))
    refused = subprocess.run(
        _command(project, precision, str(out.relative_to(project))),
        cwd=project,
        env=ENV,
        stderr=subprocess.PIPE,
    )
    message = refused.stderr.decode()
    assert refused.returncode == 2, message[-2000:]
    assert "openrecipe pretrain: error:" in message and str(weights) in message
    assert sha256_file(weights) in message and hashlib.sha256(clean).hexdigest() in message
    assert not out.exists()
    weights.write_bytes(clean)

    stderr = _run(project, precision, str(out.relative_to(project)))
    assert f"pretrain: resuming from {found}" in stderr, stderr[-2000:]
    assert not resume_root.exists()
    assert not list(out.parent.glob(f".{out.name}.*-*"))  # the killed run's temp dir is gone
    for name in ("model/model.safetensors", "checkpoint/optimizer.safetensors", "metrics.jsonl"):
        assert sha256_file(out / name) == sha256_file(unbroken / name), name
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["summary"]["precision"] == precision
    assert (manifest["summary"]["precision_linears"] > 0) == (precision == "nvfp4")
    # the resume is recorded beside the manifest, and the manifest hashes as an unbroken run's
    step = int(found.name.removeprefix("step-"))
    resumed = {"step": step, "checkpoint": found.name, "checkpoint_sha256": recorded}
    assert json.loads((out / "run_info.json").read_text())["resumed"] == resumed
    assert json.loads((unbroken / "run_info.json").read_text())["resumed"] is None
    unbroken_manifest = json.loads((unbroken / "manifest.json").read_text())
    assert manifest["manifest_sha256"] == unbroken_manifest["manifest_sha256"]
