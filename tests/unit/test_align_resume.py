"""SFT and GRPO survive a real SIGKILL: the resumed run ends with the same weights as an unbroken
one (and two unbroken GRPO runs agree). Each killed run is a subprocess on tiny inputs, killed once
its first periodic checkpoint exists, then rerun to completion."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from align_fixtures import PROJECT, make_pretrain, make_reasoning, tiny_recipe

from openrecipe.hashing import sha256_file
from openrecipe.stage import run_stage
from openrecipe.train import rl, sft

SMALL = {
    "resources": {"threads": 1},
    "sft": {
        "steps": 40,
        "lr": 5e-3,
        "batch_size": 4,
        "seq_length": 128,
        "checkpoint_every": 4,
        "data": {"n_train": 40, "n_heldout": 4, "min_steps": 1, "max_steps": 1, "max_value": 9},
    },
    "rl": {
        "steps": 8,
        "prompts_per_step": 2,
        "generations_per_prompt": 3,
        "lr": 1e-3,
        "max_new_tokens": 16,
        "checkpoint_every": 1,
    },
}
# A child process runs one stage with SMALL (the recipe lives in memory, so it is rebuilt there).
_CHILD = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from align_fixtures import PROJECT, tiny_recipe
from openrecipe.stage import run_stage
from openrecipe.train import {module} as body
inputs = {{k: Path(v) for k, v in {inputs!r}.items()}}
run_stage({stage!r}, tiny_recipe({small!r}), Path({out!r}), inputs, body.run, project=PROJECT)
"""


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    base = tmp_path_factory.mktemp("resume")
    recipe = tiny_recipe(SMALL)
    reasoning_dir = make_reasoning(recipe, base / "reasoning")
    pretrain_dir = make_pretrain(recipe, reasoning_dir, base / "pretrain")
    inputs = {"pretrain": pretrain_dir, "reasoning": reasoning_dir}
    run_stage("sft", recipe, base / "sft", inputs, sft.run, project=PROJECT)
    return recipe, base


def _child(stage: str, module: str, out: Path, inputs: dict[str, Path]) -> list[str]:
    code = _CHILD.format(
        tests=str(Path(__file__).parent),
        module=module,
        stage=stage,
        small=SMALL,
        out=str(out),
        inputs={k: str(v) for k, v in inputs.items()},
    )
    return [sys.executable, "-c", code]


def _refuse_corrupt(stage: str, module: str, out: Path, inputs, found: Path, env) -> None:
    """With one byte of ``found``'s optimizer state flipped, the rerun is refused, naming the
    file and both hashes, and writes no output; then the byte is put back."""
    path = found / "optimizer.safetensors"
    clean = path.read_bytes()
    path.write_bytes(clean[:7] + bytes([clean[7] ^ 0x10]) + clean[8:])
    refused = subprocess.run(_child(stage, module, out, inputs), env=env, stderr=subprocess.PIPE)
    message = refused.stderr.decode()
    assert refused.returncode != 0 and "StageInputError" in message, message[-2000:]
    assert str(path) in message and sha256_file(path) in message, message[-2000:]
    assert hashlib.sha256(clean).hexdigest() in message
    assert not (out / "manifest.json").exists()
    path.write_bytes(clean)


def _kill_then_resume(
    stage: str, module: str, out: Path, inputs: dict[str, Path], corrupt: bool = False
) -> str:
    """Run the stage in a child, SIGKILL it once a checkpoint exists, (with ``corrupt``: check
    that a corrupted copy of that checkpoint is refused,) rerun it; stderr of the rerun (which
    must say it resumed). The rerun's run_info.json must name the checkpoint it resumed from."""
    resume_root = out.parent / f".{out.name}.resume"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    child = subprocess.Popen(_child(stage, module, out, inputs), env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not list(resume_root.glob("*/step-*")):
        assert child.poll() is None, child.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "no checkpoint within 60 s"
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL
    child.stderr.close()
    assert not (out / "manifest.json").exists()  # killed mid-run: no output that looks complete
    found = sorted(resume_root.glob("*/step-*"))[-1]  # the newest, as the rerun picks
    recorded = json.loads((found / "checksums.json").read_text())["checkpoint_sha256"]
    if corrupt:
        _refuse_corrupt(stage, module, out, inputs, found, env)
    rerun = subprocess.run(_child(stage, module, out, inputs), env=env, stderr=subprocess.PIPE)
    stderr = rerun.stderr.decode()
    assert rerun.returncode == 0, stderr[-2000:]
    assert not resume_root.exists()  # cleaned up once the output is in place
    resumed = json.loads((out / "run_info.json").read_text())["resumed"]
    step = int(found.name.removeprefix("step-"))
    assert resumed == {"step": step, "checkpoint": found.name, "checkpoint_sha256": recorded}
    return stderr


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_sft_killed_and_resumed_matches_unbroken(upstream, tmp_path) -> None:
    recipe, base = upstream
    inputs = {"pretrain": base / "pretrain", "reasoning": base / "reasoning"}
    stderr = _kill_then_resume("sft", "sft", tmp_path / "sft", inputs, corrupt=True)
    assert "sft: resuming from" in stderr
    unbroken = base / "sft"
    for name in ("model/model.safetensors", "metrics.jsonl"):
        assert sha256_file(tmp_path / "sft" / name) == sha256_file(unbroken / name), name
    assert json.loads((unbroken / "run_info.json").read_text())["resumed"] is None
    manifests = [
        json.loads((d / "manifest.json").read_text()) for d in (tmp_path / "sft", unbroken)
    ]
    assert manifests[0]["manifest_sha256"] == manifests[1]["manifest_sha256"]
    assert [r["step"] for r in _rows(tmp_path / "sft" / "metrics.jsonl")] == list(range(40))


def test_rl_reruns_and_killed_run_match(upstream, tmp_path) -> None:
    recipe, base = upstream
    inputs = {"sft": base / "sft", "reasoning": base / "reasoning"}
    first = run_stage("rl", recipe, tmp_path / "a", inputs, rl.run, project=PROJECT)
    second = run_stage("rl", recipe, tmp_path / "b", inputs, rl.run, project=PROJECT)
    assert first["outputs"] == second["outputs"]
    stderr = _kill_then_resume("rl", "rl", tmp_path / "killed", inputs)
    assert "rl: resuming from" in stderr
    for name in ("model/model.safetensors", "metrics.jsonl"):
        assert sha256_file(tmp_path / "killed" / name) == sha256_file(tmp_path / "a" / name), name
    assert sha256_file(tmp_path / "a" / "model" / "model.safetensors") != sha256_file(
        base / "sft" / "model" / "model.safetensors"
    )
