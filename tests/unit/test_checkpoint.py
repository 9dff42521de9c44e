"""Resume checkpoints carry the sha256 of every file, written with them, and a checkpoint whose
bytes changed since is refused before any of it is loaded (naming the file and both hashes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from openrecipe.errors import StageInputError
from openrecipe.hashing import hash_obj, sha256_file
from openrecipe.train import checkpoint


def _model_and_optimizer(seed: int = 0) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = torch.nn.Linear(8, 4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(torch.randn(3, 8)).sum().backward()
    optimizer.step()
    return model, optimizer


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, str]:
    model, optimizer = _model_and_optimizer()
    target = checkpoint.step_dir(tmp_path / "resume", 4)
    digest = checkpoint.save(target, model=model, optimizer=optimizer, state={"step": 4})
    return target, digest


def test_save_records_every_file_and_the_checkpoint_hash(saved: tuple[Path, str]) -> None:
    target, digest = saved
    listing = json.loads((target / checkpoint.CHECKSUMS).read_text())
    files = sorted(p.name for p in target.iterdir() if p.name != checkpoint.CHECKSUMS)
    assert sorted(listing["files"]) == files
    assert all(listing["files"][n] == sha256_file(target / n) for n in files)
    assert listing["checkpoint_sha256"] == digest == hash_obj(listing["files"])
    assert checkpoint.verify(target) == digest == checkpoint.recorded_sha256(target)
    assert not list(target.parent.glob(".*tmp*"))  # written under a temporary name, renamed


def test_a_clean_checkpoint_loads_back(saved: tuple[Path, str]) -> None:
    target, _ = saved
    original, _ = _model_and_optimizer()
    model, optimizer = _model_and_optimizer(seed=1)
    assert checkpoint.load(target, model=model, optimizer=optimizer)["step"] == 4
    for name, tensor in original.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor)


@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.safetensors", "state.json"])
def test_one_flipped_byte_is_refused_naming_file_and_hashes(saved, name) -> None:
    target, _ = saved
    path = target / name
    recorded = sha256_file(path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    model, optimizer = _model_and_optimizer(seed=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(StageInputError) as err:
        checkpoint.load(target, model=model, optimizer=optimizer)
    message = str(err.value)
    assert str(path) in message and recorded in message and sha256_file(path) in message
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())  # untouched


def test_missing_extra_or_unrecorded_files_are_refused(saved, tmp_path: Path) -> None:
    target, _ = saved
    (target / "rng.safetensors").rename(tmp_path / "rng.safetensors")
    with pytest.raises(StageInputError, match=r"rng\.safetensors: sha256 missing does not match"):
        checkpoint.verify(target)
    (tmp_path / "rng.safetensors").rename(target / "rng.safetensors")
    (target / "extra.bin").write_bytes(b"x")
    with pytest.raises(StageInputError, match=r"extra\.bin: not listed in"):
        checkpoint.verify(target)
    (target / "extra.bin").unlink()
    listing = json.loads((target / checkpoint.CHECKSUMS).read_text())
    listing["files"]["state.json"] = "0" * 64
    (target / checkpoint.CHECKSUMS).write_text(json.dumps(listing))
    with pytest.raises(StageInputError, match="the checksums were altered"):
        checkpoint.verify(target)
    (target / checkpoint.CHECKSUMS).unlink()
    with pytest.raises(StageInputError, match="has no recorded hashes"):
        checkpoint.verify(target)
