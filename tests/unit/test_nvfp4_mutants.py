"""NVFP4 behaviours the mutation run found untested (bench/mutation.py): inputs whose last dim is
not a multiple of 16 or that have more than two dims, empty tensors, the tensors' devices and
dtypes, 2D tiles at different scales, the RHT's bf16 roundings, and the default rounding mode."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_nvfp4 import SCALE_TIES

from openrecipe.model.precision.nvfp4 import (
    dequantize,
    fake_quant_nvfp4,
    fake_quant_nvfp4_2d,
    hadamard_matrix,
    quantize_nvfp4_1d,
    quantize_nvfp4_2d_weight,
    random_hadamard_transform,
)

META = torch.device("meta")
E2M1_GRID = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_ragged_last_dim_is_zero_padded_and_leading_dims_are_kept() -> None:
    """A last dim of 20 is quantised as if padded with zeros to 32 (zeros change no amax or
    scale), and a 3D tensor exactly as its rows laid out in 2D (blocks run along the last dim,
    the amax is the whole tensor's)."""
    x = _randn(2, 3, 20) * 3
    out = fake_quant_nvfp4(x)
    assert out.shape == x.shape
    padded = fake_quant_nvfp4(F.pad(x, (0, 12)))
    assert torch.equal(out, padded[..., :20])
    assert torch.equal(out.reshape(6, 20), fake_quant_nvfp4(x.reshape(6, 20)))
    q = quantize_nvfp4_1d(x)
    assert q.scales.shape == (2, 3, 2) and q.values.shape == (2, 3, 32)


def test_empty_tensors_have_zero_amax_on_their_device() -> None:
    for device in ("cpu", META):
        q = quantize_nvfp4_1d(torch.empty(4, 0, device=device))
        assert q.amax.device.type == torch.device(device).type and q.amax.dtype == torch.float32
        w = quantize_nvfp4_2d_weight(torch.empty(0, 16, device=device))
        assert w.amax.device.type == torch.device(device).type and w.amax.dtype == torch.float32
    assert quantize_nvfp4_1d(torch.empty(4, 0)).amax.item() == 0.0
    assert quantize_nvfp4_2d_weight(torch.empty(0, 16)).amax.item() == 0.0
    assert dequantize(quantize_nvfp4_1d(torch.empty(4, 0))).shape == (4, 0)


def test_2d_tiles_at_different_scales_come_back() -> None:
    """Two 16x16 tiles of E2M1 grid values, one at amax 6 and one at half that: each tile's
    scale maps it back onto the grid, so the weight dequantises to itself (to fp32 rounding
    of the decode factors)."""
    signed = torch.cat([E2M1_GRID, -E2M1_GRID])
    tile = signed[torch.arange(256) % 16].reshape(16, 16)
    w = torch.cat([tile, tile / 2], dim=1)
    q = quantize_nvfp4_2d_weight(w)
    assert q.block == (16, 16)
    assert torch.allclose(fake_quant_nvfp4_2d(w), w, rtol=1e-6, atol=0)


def test_2d_quantisation_refuses_a_non_matrix() -> None:
    with pytest.raises(ValueError, match=r"needs a matrix, got shape \(2, 16, 16\)"):
        quantize_nvfp4_2d_weight(torch.zeros(2, 16, 16))


def test_default_rounding_is_to_nearest() -> None:
    """fake_quant_nvfp4 rounds to nearest unless asked for stochastic rounding."""
    x = _randn(8, 64)
    rne = dequantize(quantize_nvfp4_1d(x, stochastic=False))
    assert torch.equal(fake_quant_nvfp4(x), rne)
    assert torch.equal(quantize_nvfp4_1d(x).values, quantize_nvfp4_1d(x, stochastic=False).values)


def test_hadamard_matrix_is_bf16_on_the_requested_device() -> None:
    h = hadamard_matrix(META)
    assert h.device.type == "meta" and h.dtype == torch.bfloat16
    assert hadamard_matrix().dtype == torch.bfloat16
    assert random_hadamard_transform(torch.zeros(3, 32, device=META)).device.type == "meta"


def test_rht_rounds_its_input_and_output_to_bf16() -> None:
    """TE's RHT kernel reads bf16 and writes bf16: an fp32 input is rounded first, and the
    product is rounded back."""
    x = _randn(3, 2, 20, seed=1) * 5
    out = random_hadamard_transform(x)
    assert out.shape == (3, 2, 32)
    assert torch.equal(out, random_hadamard_transform(x.bfloat16().float()))
    assert torch.equal(out, out.bfloat16().float())


@pytest.mark.parametrize("amax,block_amax,te,exact", SCALE_TIES)
def test_block_scales_ignore_the_default_dtype(amax, block_amax, te, exact) -> None:
    """The scale arithmetic is fp32 whatever torch's default dtype: with float64 as default the
    midpoint cases still give TE's scale."""
    x = torch.zeros(2, 16)
    x[0, 0], x[1, 3] = amax, -block_amax
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        q = quantize_nvfp4_1d(x)
    finally:
        torch.set_default_dtype(previous)
    assert q.scales[1, 0].item() == te
