"""The cached single-token step (``openrecipe.model.decode``) reproduces the model's full,
uncached forward: same logits at every decoded position, for hybrid, all-Mamba and
all-attention patterns, after a chunked prefill, from a mid-prefill snapshot and with the
batch widened from one prefilled row."""

from __future__ import annotations

import pytest
import torch

from openrecipe.model.build import build_model, nemotronh_config
from openrecipe.model.decode import (
    DecodeError,
    mamba_snapshot,
    prefill,
    state_from_cache,
    step,
)

VOCAB = 61
TINY = {
    "hidden_size": 32,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 8,
    "mamba_num_heads": 4,
    "mamba_head_dim": 8,
    "ssm_state_size": 8,
    "n_groups": 2,
    "chunk_size": 8,
    "intermediate_size": 48,
    "mlp_hidden_act": "relu2",
    "initializer_range": 0.2,  # large enough that every layer moves the logits
}


def tiny_model(pattern: str):
    config = nemotronh_config(
        {**TINY, "hybrid_override_pattern": pattern}, VOCAB, bos_id=1, eos_id=2, pad_id=0
    )
    config._attn_implementation = "sdpa"
    model = build_model(config, seed=3).eval()
    with torch.no_grad():  # spread dt and A so the state decays at visibly different rates
        for block in model.model.layers:
            if block.block_type == "linear_attention":
                block.mixer.dt_bias.copy_(torch.linspace(-2.0, 1.0, block.mixer.num_heads))
    return model


def full_logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(ids, use_cache=False).logits.float()  # (B, T, V): every position


def close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, atol=2e-4, rtol=2e-4)


@pytest.mark.parametrize("pattern", ["M*-M-*M-", "M-M-", "*-*-"])
def test_each_decoded_position_matches_the_full_forward(pattern: str) -> None:
    model = tiny_model(pattern)
    ids = torch.randint(3, VOCAB, (2, 24), generator=torch.Generator().manual_seed(0))
    reference = full_logits(model, ids)
    prefix = 11  # not a multiple of the prefill chunk nor of the Mamba chunk size
    last, cache = prefill(model, ids[:, :prefix], chunk=4)
    close(last, reference[:, prefix - 1])
    state = state_from_cache(model, cache, prefix, extra=ids.shape[1] - prefix)
    for position in range(prefix, ids.shape[1]):
        close(step(model, state, ids[:, position]), reference[:, position])
    assert state.length == ids.shape[1]


def test_a_mid_prefill_snapshot_decodes_from_its_own_length() -> None:
    model = tiny_model("M*-M-*M-")
    ids = torch.randint(3, VOCAB, (1, 20), generator=torch.Generator().manual_seed(1))
    reference = full_logits(model, ids)
    _, cache = prefill(model, ids[:, :8], chunk=4)
    conv, ssm = mamba_snapshot(model, cache)
    with torch.no_grad():  # carry on past the snapshot, as a longer prefill does
        model(
            ids[:, 8:16],
            past_key_values=cache,
            use_cache=True,
            position_ids=torch.arange(8, 16)[None],
        )
    stale = state_from_cache(model, cache, 8, extra=4)  # Mamba state of position 16, not 8
    assert not torch.allclose(step(model, stale, ids[:, 8]), reference[:, 8], atol=1e-3)
    state = state_from_cache(model, cache, 8, extra=12, conv=conv, ssm=ssm)
    for position in range(8, 20):
        close(step(model, state, ids[:, position]), reference[:, position])


def test_one_prefilled_row_serves_a_wider_batch() -> None:
    model = tiny_model("M*-M-*M-")
    ids = torch.randint(3, VOCAB, (1, 16), generator=torch.Generator().manual_seed(2))
    reference = full_logits(model, ids)
    _, cache = prefill(model, ids[:, :9], chunk=8)
    state = state_from_cache(model, cache, 9, extra=7, batch=3)
    assert state.keys[1].shape[0] == 3 and state.ssm[0].shape[0] == 3
    for position in range(9, 16):
        logits = step(model, state, ids[:, position].expand(3))
        close(logits, reference[:, position].expand(3, -1))


def test_the_state_refuses_to_grow_past_its_capacity() -> None:
    model = tiny_model("M*-")
    ids = torch.randint(3, VOCAB, (1, 5), generator=torch.Generator().manual_seed(3))
    _, cache = prefill(model, ids)
    state = state_from_cache(model, cache, 5, extra=1)
    step(model, state, ids[:, 0])
    with pytest.raises(DecodeError, match="full"):
        step(model, state, ids[:, 0])
    with pytest.raises(DecodeError, match="fewer than 9"):
        state_from_cache(model, cache, 9, extra=1)
