"""What the Megatron plan hands Megatron, checked with Megatron's own code where it is installed.

megatron-core's GPTDataset (0.16.1) and Megatron-LM's argument parser run from a side
environment (tests/unit/megatron_side.py); those tests skip where it is missing. The others
check the plan itself for every full-size recipe.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from megatron_side import flag_values, gpt_dataset, mcore_python
from test_pack import ctx, make_blend

from openrecipe.data import pack, tokenizer
from openrecipe.lineage.verify import NOT_STAGE_DIRS, unsealed_dirs
from openrecipe.model.megatron_plan import compile_plan
from openrecipe.recipe import load_recipe
from openrecipe.registry import STAGES
from openrecipe.releases import release_rows

PROJECT = Path(__file__).resolve().parents[2]
FULL = [row["recipe"] for row in release_rows(PROJECT)]
SEQ = 15  # test_pack's pretrain.seq_length


def _recipe(name: str) -> dict:
    return load_recipe(PROJECT / "recipes" / f"{name}.yaml", project=PROJECT).data


def _small_recipe(name: str = "nemotron_nano_9b_v2") -> dict:
    """A full-size recipe shrunk to test_pack's tiny pack: its sequence length and few steps."""
    recipe = json.loads(json.dumps(_recipe(name)))
    recipe["pretrain"].update(seq_length=SEQ, steps=4)
    return recipe


@pytest.fixture(scope="module")
def small_pack(tmp_path_factory) -> Path:
    """A project root whose runs/nemotron_nano_9b_v2/pack is a real (small) pack."""
    root = tmp_path_factory.mktemp("project")
    build = root / "build"
    blend = make_blend(build)
    tokenizer.run(ctx("tokenizer", build, build / "tok", {"blend": blend}))
    out = root / "runs" / "nemotron_nano_9b_v2" / "pack"
    out.parent.mkdir(parents=True)
    pack.run(ctx("pack", build, out, {"blend": blend, "tokenizer": build / "tok"}))
    return root


@pytest.mark.parametrize("name", FULL)
def test_data_cache_path_is_outside_every_verified_directory(name: str) -> None:
    args = flag_values(compile_plan(_recipe(name))["args"])
    cache = Path(args.get("--data-cache-path") or "")
    assert cache.parts[:2] == ("runs", name), cache
    top = cache.parts[2]
    assert top in NOT_STAGE_DIRS and top not in STAGES, cache  # verify walks past it
    data = args["--data-path"]
    for prefix in data if isinstance(data, list) else [data]:
        assert not cache.is_relative_to(Path(prefix).parent), (cache, prefix)


def test_megatron_writes_its_index_cache_outside_the_pack(small_pack: Path) -> None:
    python = mcore_python()
    if python is None:
        pytest.skip("megatron-core not importable (set OPENRECIPE_MCORE_PYTHON to a venv with it)")
    run = small_pack / "runs" / "nemotron_nano_9b_v2"
    before = sorted(p.relative_to(run) for p in (run / "pack").rglob("*"))
    args = flag_values(compile_plan(_small_recipe())["args"])
    gpt_dataset(python, {**args, "vocab_size": 300, "samples": 8}, small_pack)
    assert sorted(p.relative_to(run) for p in (run / "pack").rglob("*")) == before
    cache = small_pack / args["--data-cache-path"]
    assert any(p.name.endswith("shuffle_index.npy") for p in cache.iterdir())
    assert not [p for p in unsealed_dirs(run) if p.is_relative_to(run / "pretrain_megatron")]
