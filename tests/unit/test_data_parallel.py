"""FSDP2 data parallelism (train/data_parallel.py): 2 torchrun processes on gloo train like one.

The worker (tests/unit/data_parallel_worker.py) runs a few AdamW steps of a small NemotronH on a
fixed sequence of global batches with ragged rows; the tolerances below are what float rounding
of differently ordered gradient sums allows (measured: 5e-7 on the weights after 4 steps), far
below what one sample missing from a rank, a doubled gradient or a per-rank mean would cause.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from openrecipe.errors import RecipeError
from openrecipe.train import data_parallel as dp

WORKER = Path(__file__).with_name("data_parallel_worker.py")
TORCHRUN = Path(sys.executable).with_name("torchrun")


def test_one_process_without_torchrun() -> None:
    assert dp.world_from_env({}) == dp.World(0, 1)
    assert dp.world_from_env({"RANK": "1", "WORLD_SIZE": "2"}) == dp.World(1, 2)
    assert dp.World(0, 2).is_writer and not dp.World(1, 2).is_writer


@pytest.mark.parametrize(
    "env", [{"RANK": "x", "WORLD_SIZE": "2"}, {"WORLD_SIZE": "2"}, {"RANK": "2", "WORLD_SIZE": "2"}]
)
def test_a_malformed_torchrun_environment_is_refused_by_name(env: dict[str, str]) -> None:
    with pytest.raises(RecipeError, match="RANK"):
        dp.world_from_env(env)


def test_each_rank_takes_its_contiguous_slice_and_a_ragged_batch_is_refused() -> None:
    rows = list(range(8))
    assert dp.local_rows(rows, dp.World(0, 2)) == [0, 1, 2, 3]
    assert dp.local_rows(rows, dp.World(1, 2)) == [4, 5, 6, 7]
    assert dp.local_rows(rows, dp.World()) == rows
    with pytest.raises(RecipeError, match=r"sft\.batch_size: 8 rows do not divide over 3"):
        dp.local_rows(rows, dp.World(0, 3), field="sft.batch_size")


def test_one_process_loss_is_the_token_mean_and_no_token_is_refused() -> None:
    loss = dp.global_token_mean(torch.tensor(12.0), 4, dp.World())
    assert loss.item() == 3.0 and dp.logged_mean(loss, dp.World()) == 3.0
    with pytest.raises(RecipeError, match="no loss token"):
        dp.global_token_mean(torch.tensor(0.0), 0, dp.World())


def _train(processes: int, out: Path, batch: int = 8) -> subprocess.CompletedProcess[str]:
    out.mkdir(parents=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [str(TORCHRUN), "--standalone", f"--nproc-per-node={processes}", str(WORKER)]
    return subprocess.run(
        [*command, str(out), str(batch)], env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("dp")
    out = {name: root / name for name in ("one", "two", "two_again")}
    for name, processes in (("one", 1), ("two", 2), ("two_again", 2)):
        done = _train(processes, out[name])
        assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_two_processes_train_like_one(runs: dict[str, Path]) -> None:
    from safetensors.torch import load_file

    one = json.loads((runs["one"] / "losses.json").read_text())
    two = json.loads((runs["two"] / "losses.json").read_text())
    assert len(one) == len(two) == 4
    assert max(abs(a - b) / a for a, b in zip(one, two, strict=True)) < 1e-5
    w1 = load_file(runs["one"] / "model" / "model.safetensors")
    w2 = load_file(runs["two"] / "model" / "model.safetensors")
    assert set(w1) == set(w2)
    assert max((w1[k] - w2[k]).abs().max().item() for k in w1) < 1e-5
    # the weights moved: equal weights would pass the check above for a run that never trained
    from openrecipe.model.build import build_model, nemotronh_config

    sys.path.insert(0, str(WORKER.parent))
    import data_parallel_worker as worker

    start = build_model(nemotronh_config(worker.MODEL, worker.VOCAB, pad_id=worker.PAD), seed=7)
    moved = start.state_dict()["model.embeddings.weight"] - w2["backbone.embeddings.weight"]
    assert moved.abs().max().item() > 1e-3
    # the gathered checkpoint is the same file set a single process writes
    assert sorted(p.name for p in (runs["one"] / "model").iterdir()) == sorted(
        p.name for p in (runs["two"] / "model").iterdir()
    )


def test_a_fixed_world_size_reruns_to_the_same_bytes(runs: dict[str, Path]) -> None:
    for name in ("model/model.safetensors", "losses.json"):
        assert (runs["two"] / name).read_bytes() == (runs["two_again"] / name).read_bytes()


def test_a_global_batch_that_does_not_divide_is_refused(tmp_path: Path) -> None:
    done = _train(2, tmp_path / "ragged", batch=7)
    assert done.returncode != 0
    assert "7 rows do not divide over 2 training processes" in done.stderr
